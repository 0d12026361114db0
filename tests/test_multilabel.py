"""FastBERT with ``--task multi_label``: the TSV format, the sigmoid branches and their Bernoulli
self-distillation, the ``multi_label_entropy`` exit rule, the sweep's report and the predictor."""
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from run_fastbert import main
from tests.exit_task_data import multi_label, run_args, write_sets
from uer import build_model
from uer.checkpoint import read_checkpoint
from uer.data.tsv import TsvError, read_tsv
from uer.exit.policies import resolve
from uer.fastbert.inference import EarlyExit, exits_for_speeds
from uer.fastbert.predictor import FastBertClassifier
from uer.fastbert.report import multi_label_metrics
from uer.targets.fastbert import fastbert_target
from tests.helpers import tiny_config


def tsv(tmp_path, body, name="t.tsv"):
    path = tmp_path / name
    path.write_text("label\ttext_a\n" + body, encoding="utf-8")
    return path


# ------------------------------------------------------------------ the TSV format


def test_labels_are_comma_separated_and_may_be_none(tmp_path):
    data = read_tsv(tsv(tmp_path, "LOC,PER\ta\n\tb\nORG\tc\n PER , ORG\td\n"), task="multi_label")
    assert data.labels == ("LOC", "ORG", "PER")
    assert [e.labels for e in data.examples] == [("LOC", "PER"), (), ("ORG",), ("PER", "ORG")]
    assert data.targets() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    assert data.stripped_labels == 1


@pytest.mark.parametrize("row, reason", [
    ("LOC,,PER\tx\n", "empty item"), ("PER,PER\tx\n", "'PER' is listed twice"), ("LOC\t \n", "empty text_a"),
])
def test_malformed_label_sets_name_the_line(tmp_path, row, reason):
    path = tsv(tmp_path, "LOC\ta\nPER\tb\n" + row)
    with pytest.raises(TsvError, match=rf"{path}:4: .*{reason}"):
        read_tsv(path, task="multi_label")
    assert read_tsv(path, task="multi_label", skip_malformed=True).skipped[0][0] == 4


def test_an_unseen_label_in_dev_names_the_line(tmp_path):
    train = read_tsv(tsv(tmp_path, "LOC\ta\nPER\tb\n"), task="multi_label")
    with pytest.raises(TsvError, match=r"dev.tsv:3: label 'ORG' is not one of LOC, PER"):
        read_tsv(tsv(tmp_path, "LOC\ta\nPER,ORG\tb\n", "dev.tsv"), labels=train.labels, task="multi_label")


# ------------------------------------------------------------------ target, loss, policy


def model(task="multi_label", labels_num=3, layers=3):
    torch.manual_seed(0)
    cfg = tiny_config(targets=[{"name": "fastbert", "branch_size": 16, "task": task}], encoder={"layers_num": layers})
    return build_model(cfg, vocab_size=99, labels_num=labels_num)


def test_bernoulli_kl_summed_over_labels_mean_over_rows():
    target = fastbert_target(model())
    teacher, student = torch.randn(5, 3), torch.randn(5, 3)
    p, q = torch.sigmoid(teacher), torch.sigmoid(student)
    expected = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum(-1).mean()
    torch.testing.assert_close(target.divergence(student, teacher), expected)
    assert float(target.divergence(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_stage1_is_bce_with_logits_on_the_teacher():
    m = model()
    target = fastbert_target(m)
    src = torch.randint(5, 99, (4, 7))
    seg = torch.ones_like(src)
    gold = torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]])
    out = m({"src": src, "seg": seg, "tgt_cls": gold})
    logits = out["fastbert_logits"] if "fastbert_logits" in out else out["logits"]
    expected = F.binary_cross_entropy_with_logits(logits.float(), gold, reduction="sum") / 4
    torch.testing.assert_close(out["loss"], expected)


def test_multi_label_entropy_reads_the_most_doubtful_label():
    policy = resolve("multi_label_entropy")
    probs = torch.tensor([[0.99, 0.01, 0.5], [0.99, 0.01, 0.02]])  # row 0: label 3 undecided
    state = policy.start(2, 3, 4, 0.5)
    assert policy.exits(probs, 0, state, last=False).tolist() == [False, True]
    assert not policy.exits(torch.tensor([[1.0, 0.0, 0.0]]), 0, policy.start(1, 3, 4, 0.0), last=False).any()  # speed 0
    assert policy.exits(torch.full((1, 3), 0.5), 0, policy.start(1, 3, 4, 1.0), last=False).all()  # speed 1


def test_early_exit_is_per_sample_and_speed_0_is_the_full_model():
    m = model().eval()
    runner = EarlyExit(m, runtime="eager")
    src = torch.randint(5, 99, (6, 9))
    seg = torch.ones_like(src)
    seg[3:, 6:] = 0
    full = runner.full_model_probs(src, seg)
    assert ((full > 0) & (full < 1)).all() and full.shape == (6, 3)  # sigmoids, not one distribution
    torch.testing.assert_close(runner.predict(src, seg, 0.0, policy="multi_label_entropy").probs, full)
    layer_probs = runner.layer_probs(src, seg)
    for speed in (0.3, 0.9):
        batch = runner.predict(src, seg, speed, policy="multi_label_entropy")
        offline = exits_for_speeds(layer_probs, [speed], "multi_label_entropy")[0]
        assert batch.exit_layer.tolist() == offline.exit_layer.tolist()
        for i in range(6):
            n = int(seg[i].sum())
            alone = runner.predict(src[i:i + 1, :n], seg[i:i + 1, :n], speed, policy="multi_label_entropy")
            torch.testing.assert_close(alone.probs[0], batch.probs[i], rtol=1e-5, atol=1e-6)


def test_metrics():
    pred = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0]]).bool()
    gold = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0]])
    m = multi_label_metrics(pred, gold)
    assert m["micro_f1"] == pytest.approx(0.8)  # tp 2, fp 1, fn 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)  # the third label: never present, never predicted
    assert m["exact_match"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------ run_fastbert.py --task multi_label


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multilabel")
    write_sets(folder, multi_label)
    assert main(run_args(folder, "multi_label", "--speed", "0,0.5,1")) == 0
    return folder


def test_report_table_and_predictions(trained, capsys):
    report = json.loads((trained / "out" / "model.report.json").read_text())
    assert report["task"] == "multi_label" and report["labels"] == ["NEG", "POS", "THING"]
    assert report["exit_policy"] == "multi_label_entropy"  # the task's default rule
    assert report["teacher_micro_f1"] > 0.8  # learnt (a word decides each label)
    keys = {"speed", "micro_f1", "macro_f1", "exact_match", "mean_exit_layer", "flops_per_sample", "flops_speedup",
            "wall_speedup_batch1", "wall_speedup_batched"}
    first, last = report["rows"][0], report["rows"][-1]
    assert keys <= set(first) and "accuracy" not in first
    assert first["micro_f1"] == report["teacher_micro_f1"] and first["mean_exit_layer"] == 2.0
    assert last["mean_exit_layer"] == 1.0 and last["flops_speedup"] > 1
    ok = [r["speed"] for r in report["rows"] if r["micro_f1"] >= report["teacher_micro_f1"] - 0.01]
    assert report["chosen"]["speed"] == max(ok)
    assert read_checkpoint(trained / "out" / "model.pt")["extra"]["chosen_speed"] == max(ok)
    lines = (trained / "out" / "model.predictions" / "speed_0.00.tsv").read_text().splitlines()
    assert lines[0] == "labels\tprobabilities\texit_layer" and len(lines) == 49
    gold = [line.split("\t")[0] for line in (trained / "test.tsv").read_text().splitlines()[1:]]
    predicted = [line.split("\t")[0] for line in lines[1:]]
    assert sum(g == p for g, p in zip(gold, predicted)) / len(gold) == pytest.approx(report["teacher_exact_match"])
    probs = [float(p) for p in lines[1].split("\t")[1].split(",")]
    assert len(probs) == 3 and all(0 < p < 1 for p in probs)
    assert (trained / "out" / "model.tradeoff.png").is_file()


def test_predictor_returns_label_sets_and_probabilities(trained):
    clf = FastBertClassifier.load(trained / "out" / "model.pt", runtime="eager")
    assert clf.task == "multi_label"
    out = clf.predict(["the car was great", "really so today", "my awful phone"], speed=0)
    assert out.label_sets == [["POS", "THING"], [], ["NEG", "THING"]]
    assert out.labels == ["POS,THING", "", "NEG,THING"] and out.values is None
    assert out.probabilities.shape == (3, 3) and ((out.probabilities > 0.5) == torch.tensor(
        [[0, 1, 1], [0, 0, 0], [1, 0, 1]]).bool()).all()
    with pytest.raises(ValueError, match="reads classification outputs; this model's task is multi_label"):
        clf.predict(["the car"], speed=0.5, policy="entropy")


def test_resume_and_another_task_is_refused(trained, tmp_path, capsys):
    for name in ("tiny.yaml", "pretrained.pt", "train.tsv", "dev.tsv", "test.tsv"):
        shutil.copy(trained / name, tmp_path / name)
    shutil.copytree(trained / "out", tmp_path / "out")
    assert main(run_args(tmp_path, "multi_label", "--speed", "0,0.5,1")) == 0
    out = capsys.readouterr().out
    assert "resumed stage 1 at step" in out and "resumed stage 2 at step" in out
    before = {p: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    argv = run_args(tmp_path, "regression", "--speed", "0")
    (tmp_path / "years.tsv").write_text("label\ttext_a\n1990.0\tthe car\n1991.5\tmy phone\n")
    argv[argv.index("--train_path") + 1] = str(tmp_path / "years.tsv")
    argv[argv.index("--dev_path") + 1] = str(tmp_path / "years.tsv")
    argv[argv.index("--test_path") + 1] = str(tmp_path / "years.tsv")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another run's config" in err
    assert before == {p: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}


@pytest.mark.parametrize("flags, message", [
    (("--exit_policy", "entropy"), "--exit_policy entropy reads classification outputs, not multi_label: expected one of multi_label_entropy"),
    (("--branch_training", "joint"), "--branch_training joint is for classification"),
])
def test_bad_flag_combinations_are_one_line(tmp_path, capsys, flags, message):
    write_sets(tmp_path, multi_label, sizes=(("train", 8, 1), ("dev", 4, 2), ("test", 4, 3)))
    assert main(run_args(tmp_path, "multi_label", *flags)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_fused_and_onnxruntime_equal_eager(trained):
    pytest.importorskip("onnxruntime")
    from uer.exit.loading import load_trained

    m = load_trained(trained / "out" / "model.pt", "run_fastbert.py").model
    src = torch.randint(5, 40, (4, 8))
    seg = torch.ones_like(src)
    seg[2:, 5:] = 0
    eager = EarlyExit(m, runtime="eager").layer_probs(src, seg)
    for runtime in ("fused", "onnxruntime"):
        torch.testing.assert_close(EarlyExit(m, runtime=runtime).layer_probs(src, seg), eager, rtol=1e-5, atol=1e-5)


def test_an_unknown_task_is_one_line(tmp_path, capsys):
    argv = run_args(tmp_path, "multi_label")
    argv[argv.index("--task") + 1] = "ranking"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--task: invalid choice: 'ranking'" in err
