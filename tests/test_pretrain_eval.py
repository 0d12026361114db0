"""Held-out evaluation in pre-training (issue 26 item 5): ``--dev_dataset_path`` / ``--dev_fraction``,
``--eval_steps``, the best checkpoint, ``--tensorboard_dir``, and an interrupted run that resumes to
the same held-out numbers and the same best checkpoint as an uninterrupted one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import pretrain
from tests.test_bad_inputs_pretrain import one_error
from tests.test_preprocess import VOCAB_ZH, peoples_daily, run_preprocess
from uer.checkpoint import read_checkpoint
from uer.config import TokenizerConfig, load_config
from uer.data.batches import PretrainDataset
from uer.model_builder import build_model
from uer.trainer import evaluate

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "data" / "pretrain_mlm.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pretrain_eval")
    corpus = peoples_daily(tmp / "pd.txt", lines=240)
    dev = peoples_daily(tmp / "dev.txt", lines=40)  # other text would be better; these lines suffice for the mechanics
    return {"train": run_preprocess(tmp, corpus, "mlm", seq_length=32),
            "dev": run_preprocess(tmp, dev, "mlm", "dev", seq_length=32),
            "static": run_preprocess(tmp, dev, "mlm", "static", "--static_masking", seq_length=32),
            "bert": run_preprocess(tmp, dev, "bert", seq_length=32)}


def pt(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset_path", str(dataset), "--config_path", str(CONFIG), "--vocab_path", str(VOCAB_ZH),
            "--output_model_path", str(out / "model.pt"), "--no_progress", "--device", "cpu", "--batch_size", "4",
            "--report_steps", "1", "--learning_rate", "3e-3", "--seed", "3", *extra]


def lines(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "model.metrics.jsonl").read_text().splitlines()]


def held_out_lines(out: Path) -> list[dict]:
    return [l for l in lines(out) if "dev_loss" in l]


def same_weights(a: Path, b: Path) -> None:
    wa, wb = read_checkpoint(a)["model"], read_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------------------------------- evaluate()
def test_evaluate_is_a_mean_over_the_set_not_over_batches(data):
    """Static masks: the same held-out tokens however they are batched; eval mode (dropout on in the
    config changes nothing), no gradients, and the model's train mode is given back."""
    from uer.tokenizers import build_tokenizer

    vocab = build_tokenizer(TokenizerConfig(name="bert"), vocab_path=VOCAB_ZH).vocab
    ds = PretrainDataset(data["static"], vocab)
    config = load_config(CONFIG)
    torch.manual_seed(0)
    model = build_model(config, vocab_size=len(vocab))
    model.train()
    index = torch.arange(min(len(ds), 30))
    g = torch.Generator()

    def batches(size: int):
        for start in range(0, len(index), size):
            yield ds.collate(index[start:start + size], g)

    one = evaluate(model, batches(1), parts=["mlm"])
    seven = evaluate(model, batches(7), parts=["mlm"])
    assert model.training and all(p.grad is None for p in model.parameters())
    assert set(one) == {"loss", "mlm_loss", "mlm_acc"}
    for key in one:
        assert seven[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    # ... and the token-weighted mean: recomputed from per-token losses of the whole set at once
    with torch.no_grad():
        model.eval()
        total, count, right = 0.0, 0, 0
        for batch in batches(len(index)):
            out = model(batch)
            total += float(out["mlm_loss"]) * float(out["mlm_denominator"])
            count += int(out["mlm_denominator"])
            right += float(out["mlm_acc"]) * float(out["mlm_denominator"])
    assert one["mlm_loss"] == pytest.approx(total / count, rel=1e-5) and one["loss"] == one["mlm_loss"]
    assert one["mlm_acc"] == pytest.approx(right / count, abs=1e-6)


# ------------------------------------------------------------------------------------------ the CLI
def test_held_out_fraction_is_never_trained_on_and_the_best_is_kept(tmp_path, data, monkeypatch, capsys):
    seen: list[int] = []
    evaluating = []
    real_collate, real_evaluate = PretrainDataset.collate, pretrain.evaluate

    def collate(self, index, g):
        if not evaluating:
            seen.extend(index.tolist())
        return real_collate(self, index, g)

    def evaluate_(*a, **k):
        evaluating.append(True)
        try:
            return real_evaluate(*a, **k)
        finally:
            evaluating.pop()

    monkeypatch.setattr(PretrainDataset, "collate", collate)
    monkeypatch.setattr(pretrain, "evaluate", evaluate_)
    out = tmp_path / "run"
    torch.set_num_threads(1)
    assert pretrain.main(pt(data["train"], out, "--total_steps", "7", "--eval_steps", "3", "--dev_fraction", "0.25")) == 0
    size = len(read_meta_instances(data["train"]))
    train_index, dev_index = pretrain.split_held_out(size, 0.25, 3)
    assert len(dev_index) == round(0.25 * size) and not set(train_index.tolist()) & set(dev_index.tolist())
    assert seen and not set(seen) & set(dev_index.tolist())  # 7 x 4 training rows, none held out
    held = held_out_lines(out)
    assert [l["step"] for l in held] == [3, 6, 7]  # every 3 steps and at the end
    best = min(held, key=lambda l: l["dev_loss"])
    assert all(l["dev_best_loss"] == min(h["dev_loss"] for h in held[:i + 1]) for i, l in enumerate(held))
    stored = read_checkpoint(out / "model.best.pt")
    assert stored["extra"]["held_out"]["step"] == best["step"]
    assert stored["extra"]["held_out"]["loss"] == best["dev_loss"] and stored["extra"]["vocab_size"] == 21128
    out_lines = capsys.readouterr().out.splitlines()
    assert f"held-out step 3: loss {held[0]['dev_loss']:.4f} mlm_acc {held[0]['dev_mlm_acc']:.4f} " \
           f"mlm_loss {held[0]['dev_mlm_loss']:.4f} | best loss {held[0]['dev_loss']:.4f} at step 3, " \
           f"saved {out / 'model.best.pt'}" in out_lines


def read_meta_instances(dataset: Path) -> range:
    return range(json.loads((dataset / "meta.json").read_text())["instances"])


def test_evaluating_does_not_change_training(tmp_path, data):
    """The held-out pass draws no training RNG: with a separate held-out dataset the trained weights
    are bit-identical to a run without one (dropout on)."""
    torch.set_num_threads(1)
    assert pretrain.main(pt(data["train"], tmp_path / "plain", "--total_steps", "4")) == 0
    assert pretrain.main(pt(data["train"], tmp_path / "eval", "--total_steps", "4", "--eval_steps", "1",
                            "--dev_dataset_path", str(data["dev"]))) == 0
    same_weights(tmp_path / "plain" / "model.pt", tmp_path / "eval" / "model.pt")
    assert [l["step"] for l in held_out_lines(tmp_path / "eval")] == [1, 2, 3, 4]
    # the held-out numbers are those of the saved best model, recomputed outside the run
    best = read_checkpoint(tmp_path / "eval" / "model.best.pt")["extra"]["held_out"]
    assert min(l["dev_loss"] for l in held_out_lines(tmp_path / "eval")) == best["loss"]


def test_interrupted_and_resumed_gives_the_same_held_out_numbers_and_best(tmp_path, data, monkeypatch):
    """Ctrl-C in step 6: the checkpoint of step 4 holds the best so far (step 3) and the eval
    schedule; the resumed run evaluates at 6 and 7 exactly as the uninterrupted one did, and ends
    with the same best checkpoint, the same model and TensorBoard curves without the redone steps twice."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.helpers import ctrl_c_at_step

    torch.set_num_threads(1)
    flags = ("--total_steps", "7", "--save_checkpoint_steps", "2", "--eval_steps", "3", "--dev_fraction", "0.2")
    full, part, tb = tmp_path / "full", tmp_path / "part", tmp_path / "tb"
    assert pretrain.main(pt(data["train"], full, *flags)) == 0
    ctrl_c_at_step(monkeypatch, 5)  # in step 6: after the checkpoint of step 4 and the report of step 5
    assert pretrain.main(pt(data["train"], part, *flags, "--tensorboard_dir", str(tb))) == 130
    monkeypatch.undo()
    state = read_checkpoint(part / "model.pt.resume")["extra"]["trainer"]
    assert state["step"] == 4 and state["user_state"]["best"]["step"] == 3
    assert pretrain.main(pt(data["train"], part, *flags, "--tensorboard_dir", str(tb), "--resume")) == 0
    assert held_out_lines(part) == held_out_lines(full)
    timeless = [[{k: v for k, v in l.items() if k != "tokens_per_s"} for l in lines(d)] for d in (full, part)]
    assert timeless[0] == timeless[1]  # every line once, training and held-out alike
    assert [l["step"] for l in held_out_lines(full)] == [3, 6, 7]
    same_weights(full / "model.best.pt", part / "model.best.pt")
    same_weights(full / "model.pt", part / "model.pt")
    assert read_checkpoint(part / "model.best.pt")["extra"]["held_out"] == read_checkpoint(full / "model.best.pt")["extra"]["held_out"]
    events = EventAccumulator(str(tb))
    events.Reload()
    held = [(e.step, e.value) for e in events.Scalars("held_out/loss")]
    assert held == [(l["step"], pytest.approx(l["dev_loss"], rel=1e-6)) for l in held_out_lines(full)]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 8))


def test_the_best_so_far_survives_a_resume(tmp_path, data, monkeypatch):
    """Held-out losses 5, 7, 6 at steps 2, 4, 6 with a Ctrl-C in step 5: the resumed run compares
    step 6 with the best it restored (5 at step 2), so model.best.pt stays the step-2 model."""
    from tests.helpers import ctrl_c_at_step

    scripted = iter([5.0, 7.0, 6.0])

    def script(monkeypatch) -> None:
        monkeypatch.setattr(pretrain, "evaluate", lambda *a, **k: {"loss": next(scripted)})

    flags = ("--total_steps", "6", "--save_checkpoint_steps", "2", "--eval_steps", "2", "--dev_fraction", "0.2")
    out = tmp_path / "run"
    script(monkeypatch)
    ctrl_c_at_step(monkeypatch, 4)
    assert pretrain.main(pt(data["train"], out, *flags)) == 130
    best_at_2 = read_checkpoint(out / "model.best.pt")["model"]
    monkeypatch.undo()
    script(monkeypatch)
    assert pretrain.main(pt(data["train"], out, *flags, "--resume")) == 0
    held = held_out_lines(out)
    assert [(l["step"], l["dev_loss"], l["dev_best_step"]) for l in held] == [(2, 5.0, 2), (4, 7.0, 2), (6, 6.0, 2)]
    assert read_checkpoint(out / "model.best.pt")["extra"]["held_out"] == {"step": 2, "loss": 5.0}
    for name, value in read_checkpoint(out / "model.best.pt")["model"].items():
        assert torch.equal(value, best_at_2[name]), name


# --------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("extra, expected", [
    (("--eval_steps", "2"), "pretrain.py: error: --eval_steps needs a held-out set: --dev_dataset_path or --dev_fraction"),
    (("--dev_fraction", "1"), "pretrain.py: error: argument --dev_fraction: expected a number in (0, 1), got '1'"),
    (("--dev_fraction", "0"), "pretrain.py: error: argument --dev_fraction: expected a number in (0, 1), got '0'"),
    (("--dev_fraction", "0.0001"), "pretrain.py: error: --dev_fraction 0.0001 of {n} instances holds out 0: "
                                   "it must leave at least one instance on each side"),
    (("--dev_fraction", "0.5", "--dev_dataset_path", "{dev}"),
     "pretrain.py: error: argument --dev_dataset_path: not allowed with argument --dev_fraction"),
    (("--dev_dataset_path", "{train}"), "pretrain.py: error: --dev_dataset_path {train} is the training dataset: a "
                                        "held-out set must not be trained on (preprocess another corpus, or pass --dev_fraction)"),
    (("--dev_dataset_path", "{bert}"), "pretrain.py: error: --dev_dataset_path {bert} was made by the 'bert' processor, "
                                       "the training dataset by 'mlm': preprocess both alike"),
    (("--dev_dataset_path", "{missing}"), "pretrain.py: error: --dev_dataset_path {missing} does not exist"),
])
def test_held_out_flags_that_cannot_work_get_one_line(tmp_path, data, capsys, extra, expected):
    n = len(read_meta_instances(data["train"]))
    fill = {"dev": data["dev"], "train": data["train"], "bert": data["bert"], "missing": tmp_path / "nope", "n": n}
    extra = tuple(e.format(**fill) for e in extra)
    out = tmp_path / "run"
    assert pretrain.main(pt(data["train"], out, "--total_steps", "1", *extra)) == 2
    assert one_error(capsys.readouterr().err) == expected.format(**fill)
    assert not (out / "model.pt").exists() and not (out / "model.best.pt").exists()


def test_resume_with_another_held_out_set_is_refused(tmp_path, data, capsys):
    """The held-out set and its schedule belong to the run: the best checkpoint compares like with like."""
    out = tmp_path / "run"
    flags = ("--save_checkpoint_steps", "1", "--dev_fraction", "0.2")
    assert pretrain.main(pt(data["train"], out, "--total_steps", "1", *flags)) == 0
    capsys.readouterr()
    assert pretrain.main(pt(data["train"], out, "--total_steps", "2", "--resume", "--save_checkpoint_steps", "1",
                            "--dev_fraction", "0.3")) == 2
    line = one_error(capsys.readouterr().err)
    assert "held_out.fraction is 0.2 there, 0.3 now (--dev_fraction)" in line


def test_tensorboard_missing_is_one_line(tmp_path, data, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    out = tmp_path / "run"
    assert pretrain.main(pt(data["train"], out, "--total_steps", "1", "--tensorboard_dir", str(tmp_path / "tb"))) == 2
    assert one_error(capsys.readouterr().err) == ("pretrain.py: error: --tensorboard_dir needs the tensorboard package: "
                                                  "pip install tensorboard")
    assert not out.exists() and not (tmp_path / "tb").exists()
