"""Branch training: ``joint`` (PABEE: backbone + every branch, CE of layer i weighted by i) beside
FastBERT's ``distill`` (stage 2 trains the students only: tests/test_fastbert.py)."""
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import TINY, tiny_config
from uer import build_model
from uer.checkpoint import read_checkpoint
from uer.fastbert.data import Encoded
from uer.exit.training import StageOptions, set_trainable, split_parameters
from uer.fastbert.training import finetune, joint_loss_fn, layer_weights, needs_distillation
from uer.targets.fastbert import fastbert_target

LABELS = 3
PAD = 0


def model_of(layers=3, seed=0):
    torch.manual_seed(seed)
    cfg = tiny_config(targets=[{"name": "fastbert", "branch_size": 16, "branch_heads_num": 2}], encoder={"layers_num": layers})
    return cfg, build_model(cfg, vocab_size=TINY["vocab"], labels_num=LABELS)


def dataset(n, seed):
    """Label = which third of the vocabulary the tokens come from: learnable by every layer."""
    g = torch.Generator().manual_seed(seed)
    ids, segs, labels = [], [], []
    for _ in range(n):
        length = int(torch.randint(3, 10, (1,), generator=g))
        label = int(torch.randint(0, LABELS, (1,), generator=g))
        row = [1, *(5 + label * 30 + torch.randint(0, 30, (length - 2,), generator=g)).tolist(), 2]
        ids.append(row)
        segs.append([1] * len(row))
        labels.append(label)
    return Encoded(ids, segs, labels)


def options(tmp_path, epochs=2, log=None):
    return StageOptions(epochs=epochs, batch_size=8, learning_rate=3e-3, warmup=0.1, weight_decay=0.01, seed=5,
                        report_steps=2, checkpoint_path=str(tmp_path / "stage1.pt"), best_path=str(tmp_path / "stage1_best.pt"),
                        metrics_path=str(tmp_path / "stage1.jsonl"), progress=False, log=log)


def test_layer_weights_are_pabees():
    torch.testing.assert_close(layer_weights(4), torch.tensor([1.0, 2.0, 3.0, 4.0]) / 10)


def test_joint_loss_gives_gradients_to_backbone_and_every_branch():
    _, model = model_of(layers=3)
    model.train()
    set_trainable(model, "joint")
    data = dataset(6, seed=1)
    batch = {"src": torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in data.ids], batch_first=True),
             "tgt_cls": torch.tensor(data.labels)}
    batch["seg"] = (batch["src"] != PAD).long()
    torch.manual_seed(3)
    out = joint_loss_fn(model)(model, batch)
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    branches = {n.split(".")[4] for n, p in model.named_parameters() if n.startswith("target.") and p.grad is not None}
    assert branches == {"0", "1", "2"}  # the students 0, 1 and the teacher 2
    # the loss is PABEE's weighted mean of the branches' cross-entropies
    model.eval()
    with torch.no_grad():
        out = joint_loss_fn(model)(model, batch)
        target = fastbert_target(model)
        layers = model.encoder.forward_layers(model.embed(batch["src"], batch["seg"]), batch["seg"])
        ce = torch.stack([F.cross_entropy(target.branches[i](layers[i], batch["seg"] > 0), batch["tgt_cls"]) for i in range(3)])
    torch.testing.assert_close(out["loss"], (ce * torch.tensor([1.0, 2.0, 3.0])).sum() / 6)


def test_joint_is_one_stage_that_trains_every_branch(tmp_path):
    cfg, model = model_of(layers=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lines = []  # the library does not print: the dev lines go to the caller's log
    result = finetune(model, cfg, dataset(48, 1), dataset(24, 2), PAD, options(tmp_path, epochs=4, log=lines.append), {},
                      branch_training="joint")
    assert not needs_distillation("joint") and needs_distillation("distill")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == set(before)  # backbone, teacher and every student moved
    dev = result["dev"]
    assert [d["epoch"] for d in dev] == [1, 2, 3, 4] and all("joint_accuracy" in d for d in dev)
    assert result["best"] == max(d["joint_accuracy"] for d in dev) > 0.6  # chance is 1/3
    assert any(line.startswith("stage 1 joint epoch 4: dev") for line in lines)
    assert all(p.requires_grad for _, p in split_parameters(model)[1])


def test_joint_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    import uer.fastbert.training as training

    cfg, model = model_of(layers=3)
    finetune(model, cfg, dataset(32, 1), dataset(16, 2), PAD, options(tmp_path / "a", epochs=3), {}, branch_training="joint")
    real, calls = training.dev_scores, []

    def crash_at_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "dev_scores", crash_at_second_epoch)
    cfg, crashed = model_of(layers=3)
    with pytest.raises(KeyboardInterrupt):
        finetune(crashed, cfg, dataset(32, 1), dataset(16, 2), PAD, options(tmp_path / "b", epochs=3), {}, branch_training="joint")
    assert read_checkpoint(tmp_path / "b" / "stage1.pt")["extra"]["trainer"]["step"] == 4  # epoch 1 of 3 (4 batches each)
    monkeypatch.setattr(training, "dev_scores", real)
    torch.manual_seed(123)  # a fresh process: nothing but the resume state may matter
    cfg, resumed = model_of(layers=3, seed=9)
    result = finetune(resumed, cfg, dataset(32, 1), dataset(16, 2), PAD, options(tmp_path / "b", epochs=3), {}, branch_training="joint")
    assert [d["epoch"] for d in result["dev"]] == [1, 2, 3]
    a, b = model.state_dict(), resumed.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_a_distill_resume_state_is_not_resumed_as_joint(tmp_path):
    cfg, model = model_of(layers=2)
    finetune(model, cfg, dataset(16, 1), dataset(8, 2), PAD, options(tmp_path, epochs=1), {})
    cfg, model = model_of(layers=2)
    with pytest.raises(ValueError, match="different run"):
        finetune(model, cfg, dataset(16, 1), dataset(8, 2), PAD, options(tmp_path, epochs=1), {}, branch_training="joint")


def test_unknown_branch_training_is_an_error(tmp_path):
    cfg, model = model_of(layers=2)
    with pytest.raises(ValueError, match="branch_training 'pabee': expected one of distill, joint"):
        finetune(model, cfg, dataset(8, 1), dataset(8, 2), PAD, options(tmp_path), {}, branch_training="pabee")


def test_run_fastbert_branch_training_joint(tmp_path, capsys):
    """The command line: ``--branch_training joint`` trains one stage and no stage 2, then sweeps."""
    import json

    from run_fastbert import main
    from tests.test_fastbert_cli import DATA, TINY_YAML, args
    from uer.checkpoint import save_checkpoint

    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    torch.manual_seed(0)
    cfg = tiny_config(targets=["mlm"])
    vocab_size = len((DATA / "fastbert_vocab.txt").read_text().splitlines())
    save_checkpoint(tmp_path / "pretrained.pt", build_model(cfg, vocab_size=vocab_size), cfg)
    assert main(args(tmp_path, "--speed", "0,1", "--branch_training", "joint")) == 0
    out = capsys.readouterr().out
    assert "stage 1 joint epoch 6: dev" in out and "stage 2" not in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stage2"] is None and len(report["stage1"]["dev"]) == 6
    assert not (tmp_path / "out" / "model.stage2.pt").exists()
    final = read_checkpoint(tmp_path / "out" / "model.pt")["model"]
    initial = read_checkpoint(tmp_path / "pretrained.pt")["model"]
    moved = [k for k in initial if k.startswith("encoder.") and not torch.equal(final[k], initial[k])]
    assert len(moved) > len([k for k in initial if k.startswith("encoder.")]) // 2  # the backbone learnt too
