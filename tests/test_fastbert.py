"""FastBERT's contract: speed 0 is the full model, speed 1 exits at layer 1, results do not depend
on the batch or the padding, entropy lies in [0, 1], stage 2 trains only the students, and the
analytic FLOPs match PyTorch's FlopCounterMode."""
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tests.helpers import TINY, tiny_config
from uer import build_model
from uer.checkpoint import CheckpointError, load_backbone, save_checkpoint
from uer.fastbert.flops import FlopModel
from uer.fastbert.inference import EarlyExit, exits_for_speeds, normalized_entropy
from uer.exit.training import distillation_loss_fn, set_trainable, split_parameters

LABELS = 3
SPEEDS = (0.0, 0.25, 0.5, 0.75, 1.0)


def fastbert_model(layers=4, pooling="first", seed=0):
    torch.manual_seed(seed)
    cfg = tiny_config(targets=[{"name": "fastbert", "branch_size": 16, "branch_heads_num": 2, "pooling": pooling}],
                      encoder={"layers_num": layers})
    model = build_model(cfg, vocab_size=TINY["vocab"], labels_num=LABELS)
    with torch.no_grad():  # confident, varied branches: exits spread over the layers
        for module in model.target.components["fastbert"].modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.5)
    return model.eval()


def batch(n=8, t=13, seed=1):
    """Rows of different real lengths (3 .. t), right-padded with segment 0."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, TINY["vocab"], (n, t), generator=g)
    lengths = torch.randint(3, t + 1, (n,), generator=g)
    lengths[0] = t
    seg = (torch.arange(t)[None] < lengths[:, None]).long()
    seg[:, 5:] *= 2  # a second segment where long enough
    seg[seg > 0] = seg[seg > 0].clamp(1, 2)
    src[seg == 0] = 0
    return src, seg


def test_normalized_entropy_in_unit_interval():
    probs = torch.softmax(torch.randn(200, LABELS, generator=torch.Generator().manual_seed(0)) * 5, -1)
    probs = torch.cat([probs, torch.eye(LABELS), torch.full((1, LABELS), 1 / LABELS)])
    e = normalized_entropy(probs)
    assert bool(((e >= 0) & (e <= 1)).all())
    torch.testing.assert_close(e[-1], torch.tensor(1.0))  # uniform
    assert torch.equal(e[-1 - LABELS:-1], torch.zeros(LABELS))  # one-hot
    assert e[:200].std() > 0.1


@pytest.mark.parametrize("runtime", ["eager", "fused", "onnxruntime"])
def test_speed_0_is_the_full_model(runtime):
    model = fastbert_model()
    src, seg = batch()
    runner = EarlyExit(model, runtime=runtime)
    assert runner.name == runtime, runner.reason
    fused = runtime != "eager"
    out = runner.predict(src, seg, speed=0.0)
    assert (out.exit_layer == 4).all()
    torch.testing.assert_close(out.probs, runner.full_model_probs(src, seg), rtol=0, atol=0)
    with torch.no_grad():  # the training forward (stage 1's teacher logits), eager
        logits = model({"src": src, "seg": seg, "tgt_cls": torch.zeros(len(src), dtype=torch.long)})["fastbert_logits"]
    teacher = torch.softmax(logits.float(), -1)
    # the inference branch folds two linears into one: equal up to float rounding
    torch.testing.assert_close(out.probs, teacher, rtol=1e-4, atol=1e-5 if fused else 1e-6)
    assert torch.equal(out.probs.argmax(-1), teacher.argmax(-1))


def test_speed_1_exits_at_layer_1():
    model = fastbert_model()
    src, seg = batch()
    runner = EarlyExit(model, runtime="eager")
    out = runner.predict(src, seg, speed=1.0)
    assert (out.exit_layer == 1).all()
    first = runner.layer_probs(src, seg)[:, 0]
    torch.testing.assert_close(out.probs, first)


@pytest.mark.parametrize("runtime", ["eager", "fused", "onnxruntime"])
def test_batch_and_padding_invariance_and_sweep(runtime):
    model = fastbert_model()
    src, seg = batch(n=10)
    runner = EarlyExit(model, runtime=runtime)
    lengths = (seg > 0).sum(1)
    swept = exits_for_speeds(runner.layer_probs(src, seg), SPEEDS)
    spread = set()
    for speed, expected in zip(SPEEDS, swept):
        together = runner.predict(src, seg, speed)
        spread |= set(together.exit_layer.tolist())
        assert torch.equal(together.exit_layer, expected.exit_layer), speed
        torch.testing.assert_close(together.probs, expected.probs, rtol=1e-4, atol=1e-5)
        for i in range(len(src)):
            n = int(lengths[i])
            alone = runner.predict(src[i:i + 1, :n], seg[i:i + 1, :n], speed)  # no padding at all
            padded = runner.predict(torch.nn.functional.pad(src[i:i + 1, :n], (0, 9)),
                                    torch.nn.functional.pad(seg[i:i + 1, :n], (0, 9)), speed)
            for other in (alone, padded):
                assert int(other.exit_layer) == int(together.exit_layer[i]), (speed, i)
                torch.testing.assert_close(other.probs[0], together.probs[i], rtol=1e-4, atol=1e-5)
    assert len(spread) >= 3  # the test exercises shrinking batches, not only all-or-nothing exits


@pytest.mark.parametrize("pooling", ["first", "mean", "max"])
def test_branch_pooling_ignores_padding(pooling):
    model = fastbert_model(pooling=pooling)
    target = model.target.components["fastbert"]
    src, seg = batch(n=4)
    with torch.no_grad():
        hidden = model.encoder(model.embed(src, seg), seg)
        logits = target.branches[0](hidden, seg > 0)
        garbage = hidden.masked_fill((seg == 0)[..., None], 1e4)  # what sits at padding must not matter
        torch.testing.assert_close(target.branches[0](garbage, seg > 0), logits)
        if pooling == "first":  # computing only the pooled query equals full self-attention at position 0
            from uer.targets.fastbert import MODULES

            branch = target.branches[0]
            x = branch.projection(hidden)
            full = MODULES.attend(branch.self_attn, x, seg > 0)[:, 0]
            torch.testing.assert_close(MODULES.attend_first(branch.self_attn, x, seg > 0), full)


@pytest.mark.parametrize("pooling", ["first", "mean", "max"])
def test_frozen_branch_equals_the_module(pooling):
    """One definition (Branch.compute), two executions: the modules and the folded snapshot."""
    from uer.targets.fastbert import FrozenBranch

    model = fastbert_model(pooling=pooling)
    branch = model.target.components["fastbert"].branches[1]
    src, seg = batch(n=5)
    with torch.no_grad():
        hidden = model.encoder(model.embed(src, seg), seg)
        torch.testing.assert_close(FrozenBranch(branch)(hidden, seg > 0), branch(hidden, seg > 0), rtol=1e-4, atol=1e-5)
        full = seg[:1, :13] > 0  # the 13-token row: no padding, so no mask at all
        torch.testing.assert_close(FrozenBranch(branch)(hidden[:1], None), branch(hidden[:1], full), rtol=1e-4, atol=1e-5)


def test_stage_2_gives_gradients_to_students_only():
    model = fastbert_model()
    model.train()
    set_trainable(model, 2)
    src, seg = batch()
    out = distillation_loss_fn(model)(model, {"src": src, "seg": seg})
    out["loss"].backward()
    assert out["loss"] > 0
    for name, p in split_parameters(model)[0]:
        assert p.grad is None, name
    for name, p in split_parameters(model)[1]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n.split(".")[4] for n, _ in split_parameters(model)[1]} == {"0", "1", "2"}  # branches 0..2; 3 = teacher


def test_flops_match_flop_counter():
    model = fastbert_model(layers=3).requires_grad_(False)  # FlopCounterMode's module hooks vs inference mode
    runner = EarlyExit(model, runtime="eager")
    flops = FlopModel.of(model)
    src, seg = batch(n=1, t=11)

    def counted(fn):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # MATH: attention as bmm, counted
            fn()
        return counter.get_total_flops()

    assert counted(lambda: runner.full_model_probs(src, seg)) == flops.full(11)
    for speed in (0.0, 1.0) + SPEEDS[1:-1]:
        layer = int(runner.predict(src, seg, speed).exit_layer)
        expected = flops.full(11) if speed == 0 else flops.early_exit(11, layer)  # speed 0 runs the full model
        assert counted(lambda: runner.predict(src, seg, speed)) == expected, speed
    # mean pooling: every query of the branch's attention is computed
    mean_model = fastbert_model(layers=3, pooling="mean").requires_grad_(False)
    mean = FlopModel.of(mean_model)
    mean_runner = EarlyExit(mean_model, runtime="eager")
    assert counted(lambda: mean_runner.full_model_probs(src, seg)) == mean.full(11)
    assert flops.full(128) > 11 * flops.full(11)  # padding to 128 costs more than linear in length (attention)


def test_backbone_loading_is_strict_about_the_backbone(tmp_path):
    torch.manual_seed(0)
    mlm_cfg = tiny_config(targets=["mlm"])
    pretrained = build_model(mlm_cfg, vocab_size=TINY["vocab"])
    save_checkpoint(tmp_path / "mlm.pt", pretrained, mlm_cfg)
    model = build_model(mlm_cfg.with_target({"name": "fastbert"}), vocab_size=TINY["vocab"], labels_num=LABELS)
    loaded = load_backbone(model, tmp_path / "mlm.pt", "tiny", heads=False)
    assert loaded.fresh and all(k.startswith("target.components.fastbert.") for k in loaded.fresh)
    assert loaded.ignored and all(k.startswith("target.components.mlm.") for k in loaded.ignored)
    torch.testing.assert_close(model.encoder.state_dict(), pretrained.encoder.state_dict())
    deeper = build_model(tiny_config(encoder={"layers_num": 3}).with_target({"name": "fastbert"}), vocab_size=TINY["vocab"], labels_num=LABELS)
    with pytest.raises(CheckpointError, match="missing keys .*encoder.transformer.2"):
        load_backbone(deeper, tmp_path / "mlm.pt", "tiny", heads=False)
    wider = build_model(tiny_config(encoder={"feedforward_size": 40}).with_target({"name": "fastbert"}), vocab_size=TINY["vocab"], labels_num=LABELS)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_backbone(wider, tmp_path / "mlm.pt", "tiny", heads=False)


def test_fastbert_target_sizes():
    model = fastbert_model(layers=3)
    target = model.target.components["fastbert"]
    assert len(target.branches) == 3 and target.labels_num == LABELS and target.needs_layers
    with pytest.raises(ValueError, match="labels_num"):
        build_model(tiny_config().with_target({"name": "fastbert"}), vocab_size=TINY["vocab"])
    src, seg = batch(n=3)
    out = model({"src": src, "seg": seg, "tgt_cls": torch.tensor([0, 1, 2])})
    assert out["fastbert_logits"].shape == (3, LABELS) and math.isfinite(float(out["loss"].detach()))


def test_encode_single_and_pair_in_uer_layout():
    from uer.config import TokenizerConfig
    from uer.data.tsv import read_tsv
    from uer.fastbert.data import collate, encode_tsv
    from uer.tokenizers import build_tokenizer

    tok = build_tokenizer(TokenizerConfig(name="bert"), vocab_path="tests/data/fastbert_vocab.txt")
    v = tok.vocab
    pair = encode_tsv(tok, read_tsv("tests/data/fastbert_pair.tsv"), seq_length=16)
    ids, segs = pair.ids[0], pair.segs[0]  # "the movie was good" / "my movie is okay"
    assert ids[0] == v.cls_id and ids.count(v.sep_id) == 2 and ids[-1] == v.sep_id
    assert segs == [1] * 6 + [2] * 5 and pair.labels[:2] == [1, 0]
    short = encode_tsv(tok, read_tsv("tests/data/fastbert_pair.tsv"), seq_length=7)  # longer text cut first
    assert short.segs[0] == [1, 1, 1, 1, 2, 2, 2]
    single = encode_tsv(tok, read_tsv("tests/data/fastbert_train.tsv"), seq_length=16)
    assert set(single.segs[0]) == {1} and single.ids[0][-1] == v.sep_id
    batch = collate(single, [0, 2], v.pad_id)
    assert batch["src"].shape[0] == 2 and (batch["seg"] == 0).any() and batch["tgt_cls"].tolist() == [0, 1]
