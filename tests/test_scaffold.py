"""uer.scaffold: the position scaffold's initial values, what it applies to, the hold while
training, and pretrain.py's use of it (on by default where it applies, off on request, resumed
exactly, a changed choice refused on --resume)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import pretrain
from tests.test_preprocess import VOCAB_ZH, peoples_daily, run_preprocess
from uer.checkpoint import read_checkpoint
from uer.config import config_from_dict, load_config
from uer.model_builder import build_model
from uer.scaffold import DIMS, apply_scaffold, beta_for, held_entries, position_table, scaffold_refusal

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "bert" / "tiny.yaml"
VOCAB = 300  # the unit tests need no real vocabulary


def tiny_model(config=None, seed: int = 7):
    config = config or load_config(TINY)
    torch.manual_seed(seed)
    return build_model(config, vocab_size=VOCAB), config


def mean_reach(model, length: int = 64) -> list[float]:
    """Layer 0's attention-weighted |i - j| per head on random tokens of one segment."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(5, VOCAB, (4, length), generator=g)
    seg = torch.ones_like(src)
    with torch.no_grad():
        x = model.embedding(src, seg)
        attn = model.encoder.block(0).self_attn
        heads, hidden = attn.heads_num, x.shape[-1]
        q, k, _ = attn.qkv(x).view(4, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
        p = (q @ k.transpose(-1, -2) / math.sqrt(hidden // heads)).softmax(-1)
    pos = torch.arange(length, dtype=torch.float32)
    distance = (pos[None, :] - pos[:, None]).abs()
    return [(p[:, h] * distance).sum(-1).mean().item() for h in range(heads)]


def test_the_scaffold_makes_every_head_prefer_its_neighbours_at_init():
    plain, _ = tiny_model()
    uniform = sum(abs(i - j) for i in range(64) for j in range(64)) / 64 ** 2  # 21.3
    assert min(mean_reach(plain)) > 0.8 * uniform  # BERT's init: as broad as uniform attention
    model, config = tiny_model()
    apply_scaffold(model, config)
    reach = mean_reach(model)
    assert max(reach) < 8, reach  # ALiBi-like: a few tokens
    assert reach[1] > reach[0]  # the second head skips the fastest frequencies: it reaches farther


def test_the_scaffold_values():
    model, config = tiny_model()
    words = model.embedding.components["word"].embedding.weight[:, : 128 - DIMS].clone()
    scaffold = apply_scaffold(model, config)
    emb = model.embedding.components
    table = emb["pos"].embedding.weight
    assert torch.equal(table, position_table(512, 128))
    assert torch.count_nonzero(table[:, : 128 - DIMS]) == 0
    # rows of cos/sin pairs: norm AMPLITUDE / sqrt(2) x a word row's (std 0.02 over 96 columns)
    assert table.norm(dim=1).mean().item() == pytest.approx(4 / math.sqrt(2) * 0.02 * math.sqrt(96), rel=1e-4)
    for name in ("word", "seg"):
        assert torch.count_nonzero(emb[name].embedding.weight[:, 128 - DIMS:]) == 0
    assert torch.equal(emb["word"].embedding.weight[:, : 128 - DIMS], words)  # the rest: untouched
    qkv = model.encoder.block(1).self_attn.qkv.weight
    assert beta_for(128, 64) == pytest.approx(0.8)
    beta = torch.tensor(beta_for(128, 64)).item()  # as float32 holds it
    assert qkv[0, 128 - DIMS].item() == beta and qkv[128, 128 - DIMS].item() == beta  # query and key, head 0
    assert qkv[64, 128 - DIMS].item() != beta and qkv[64, 128 - DIMS + 8].item() == beta  # head 1 starts 4 pairs on
    # held: 3 tables' entries (pos whole, word and seg in the sub-space) and Q/K columns of 2 layers
    assert scaffold.size == 512 * 128 + VOCAB * DIMS + 3 * DIMS + 2 * 2 * 128 * DIMS


def encode(model, src):
    seg = torch.ones_like(src)
    hidden, ctx = model.embedding(src, seg), model.encoder.context(seg)
    for i in range(model.encoder.layers_num):
        hidden = model.encoder.layer(i, hidden, ctx)
    return hidden


def test_held_entries_stay_exactly_while_the_rest_trains():
    model, config = tiny_model()
    scaffold = apply_scaffold(model, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # decay would shrink them
    scaffold.attach(optimizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    src = torch.randint(5, VOCAB, (2, 16))
    for _ in range(3):
        optimizer.zero_grad()
        encode(model, src).pow(3).mean().backward()
        for held in scaffold.held:
            assert torch.count_nonzero(held.param.grad[held.mask]) == 0  # clipping and Adam never see them
        optimizer.step()
    names = {id(p): n for n, p in model.named_parameters()}
    for held in scaffold.held:
        name = names[id(held.param)]
        assert torch.equal(held.param[held.mask], before[name][held.mask]), name
    word = model.embedding.components["word"].embedding.weight
    assert not torch.equal(word[:, :96], before["embedding.components.word.embedding.weight"][:, :96])
    scaffold.detach()
    optimizer.zero_grad()
    encode(model, src).pow(3).mean().backward()
    optimizer.step()
    assert not torch.equal(word[:, 96:], before["embedding.components.word.embedding.weight"][:, 96:])


@pytest.mark.parametrize("change, why", [
    ({"encoder": {"position_bias": "alibi"}}, "already has a position bias (alibi)"),
    ({"encoder": {"mask": "causal"}}, "attention is causal"),
    ({"encoder": {"hidden_size": 64, "heads_num": 2, "feedforward_size": 128}}, "hidden_size 64"),
    ({"encoder": {"heads_num": 8}}, "head size 16"),
    ({"embedding": {"emb_size": 64}}, "factorised"),
    ({"embedding": {"components": ["word", "sinusoidal", "seg"]}}, "not learned word + pos"),
])
def test_what_the_scaffold_does_not_apply_to(change, why):
    import yaml

    data = yaml.safe_load(TINY.read_text())
    for section, values in change.items():
        data[section].update(values)
    config = config_from_dict(data, "x.yaml")
    assert why in scaffold_refusal(config)
    if config.embedding.components[1].name == "pos" and config.emb_size == config.encoder.cfg.hidden_size:
        with pytest.raises(ValueError, match="position scaffold: "):
            held_entries(build_model(config, vocab_size=VOCAB), config)


def test_the_zoo_bert_configs_take_it():
    for name in ("tiny", "mini", "small", "medium", "base"):
        path = ROOT / "models" / "bert" / f"{name}.yaml"
        if path.exists():
            assert scaffold_refusal(load_config(path)) is None, name
    assert "position bias" in scaffold_refusal(load_config(ROOT / "models" / "bert" / "tiny_alibi.yaml"))


# ------------------------------------------------------------------------------------ pretrain.py
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("scaffold")
    return run_preprocess(tmp, peoples_daily(tmp / "pd.txt", lines=200), "mlm", seq_length=32)


def tiny_mlm(tmp: Path) -> Path:
    """BERT-tiny's encoder with the mlm target and short positions (a small checkpoint)."""
    import yaml

    data = yaml.safe_load(TINY.read_text())
    data["embedding"]["components"][1] = {"name": "pos", "max_seq_length": 64}
    data["target"]["components"] = ["mlm"]
    path = tmp / "tiny_mlm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(dataset: Path, config: Path, out: Path, *extra: str) -> int:
    return pretrain.main([
        "--dataset_path", str(dataset), "--config_path", str(config), "--vocab_path", str(VOCAB_ZH),
        "--output_model_path", str(out / "model.pt"), "--no_progress", "--batch_size", "4", "--report_steps", "1",
        *extra,
    ])


def test_pretrain_holds_the_scaffold_by_default_and_drops_it_on_request(tmp_path, dataset, capsys):
    torch.set_num_threads(1)
    config = tiny_mlm(tmp_path)
    assert run(dataset, config, tmp_path / "on", "--total_steps", "3") == 0
    err = capsys.readouterr().err
    assert "position scaffold: sin/cos positions in the last 32 of 128 columns" in err
    assert "note: from scratch with learned positions" not in err  # no plateau advice: the scaffold is the fix
    saved = read_checkpoint(tmp_path / "on" / "model.pt")
    assert saved["extra"]["position_scaffold"] == "on"  # the checkpoint says what was held
    state = saved["model"]
    assert torch.equal(state["embedding.components.pos.embedding.weight"], position_table(64, 128))  # held
    assert torch.count_nonzero(state["embedding.components.word.embedding.weight"][:, 96:]) == 0
    assert run(dataset, config, tmp_path / "off", "--total_steps", "3", "--position_scaffold", "off") == 0
    err = capsys.readouterr().err
    assert "position scaffold:" not in err and "note: from scratch with learned positions only" in err
    plain_saved = read_checkpoint(tmp_path / "off" / "model.pt")
    assert plain_saved["extra"]["position_scaffold"] == "off"
    plain = plain_saved["model"]
    assert torch.count_nonzero(plain["embedding.components.word.embedding.weight"][:, 96:]) > 0
    # a trained model continues as it is: nothing initialised, nothing held
    assert run(dataset, config, tmp_path / "more", "--total_steps", "2",
               "--pretrained_model_path", str(tmp_path / "off" / "model.pt")) == 0
    assert "position scaffold:" not in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "more" / "model.pt")["extra"]["position_scaffold"] == "off"


def test_position_scaffold_on_where_it_cannot_apply_is_one_line(tmp_path, dataset, capsys):
    config = tiny_mlm(tmp_path)
    rc = run(dataset, config, tmp_path / "a", "--total_steps", "1", "--position_scaffold", "on",
             "--set", "encoder.position_bias=alibi")
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"pretrain.py: error: --position_scaffold on: the encoder already has a "
                                            f"position bias (alibi) in {config}")
    assert {p.name for p in (tmp_path / "a").iterdir()} <= {"model.pt.lock"}  # nothing written but the lock


def test_a_scaffolded_run_resumes_exactly_and_refuses_another_choice(tmp_path, dataset, capsys, monkeypatch):
    from tests.helpers import ctrl_c_at_step

    torch.set_num_threads(1)
    config = tiny_mlm(tmp_path)
    args = ("--total_steps", "5", "--save_checkpoint_steps", "2")
    assert run(dataset, config, tmp_path / "full", *args) == 0
    ctrl_c_at_step(monkeypatch, 3)
    assert run(dataset, config, tmp_path / "part", *args) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert run(dataset, config, tmp_path / "part", *args, "--resume", "--position_scaffold", "off") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "position_scaffold is 'on' there, None now (--position_scaffold)" in line
    assert run(dataset, config, tmp_path / "part", *args, "--resume") == 0
    a = read_checkpoint(tmp_path / "full" / "model.pt")["model"]
    b = read_checkpoint(tmp_path / "part" / "model.pt")["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
