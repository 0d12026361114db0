"""FastBERT with ``--task regression``: a float label column, the standardised MSE teacher, MSE
self-distillation to the teacher's value, PABEE's patience rule on values, Pearson / Spearman /
RMSE per speed and a predictor that returns values in the labels' units."""
import json

import pytest
import torch

from run_fastbert import main
from tests.exit_task_data import run_args, write_sets, year
from tests.helpers import tiny_config
from uer import build_model
from uer.checkpoint import read_checkpoint
from uer.data.tsv import TsvError, read_tsv
from uer.exit.policies import resolve
from uer.exit.policies.regression_patience import RegressionPatienceConfig, RegressionPatiencePolicy
from uer.fastbert.data import target_scale
from uer.fastbert.inference import EarlyExit, exits_for_speeds
from uer.fastbert.predictor import FastBertClassifier
from uer.fastbert.report import regression_metrics
from uer.targets.fastbert import fastbert_target


def tsv(tmp_path, body):
    path = tmp_path / "t.tsv"
    path.write_text("label\ttext_a\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize("label, reason", [("abc", "'abc' is not a number"), ("nan", "not a finite number"),
                                           ("inf", "not a finite number")])
def test_a_label_that_is_not_a_number_names_the_line(tmp_path, label, reason):
    path = tsv(tmp_path, f"1.5\ta\n-2\tb\n{label}\tc\n")
    with pytest.raises(TsvError, match=rf"{path}:4: label .*{reason}"):
        read_tsv(path, task="regression")
    data = read_tsv(path, task="regression", skip_malformed=True)
    assert data.targets() == [1.5, -2.0] and data.skipped[0][0] == 4 and data.labels == ()


def test_target_scale():
    assert target_scale([1.0, 3.0]) == (2.0, 1.0)
    assert target_scale([5.0, 5.0]) == (5.0, 1.0)  # constant: std 1, not a division by 0


def test_batches_keep_the_values_and_label_rows():
    """Regression values and multi-label 0/1 rows reach the loss as floats, class ids as longs (a
    long tensor cut the standardised values -0.53 and 1.7 to 0 and 1)."""
    from uer.fastbert.data import Encoded, collate

    rows = ([[2, 5, 3], [2, 6, 3]], [[1, 1, 1], [1, 1, 1]])
    assert torch.equal(collate(Encoded(*rows, [-0.53, 1.7]), [0, 1], 0)["tgt_cls"], torch.tensor([-0.53, 1.7]))
    multi = [[0.0, 1.0], [1.0, 1.0]]
    assert torch.equal(collate(Encoded(*rows, multi), [0, 1], 0)["tgt_cls"], torch.tensor(multi))
    labels = collate(Encoded(*rows, [1, 0]), [0, 1], 0)["tgt_cls"]
    assert labels.dtype == torch.long and labels.tolist() == [1, 0]


def test_patience_on_values():
    policy = resolve("regression_patience")
    layers = 5
    values = torch.tensor([[0.0, 0.1, 0.15, 0.17, 0.2], [0.0, 2.0, 0.0, 2.0, 0.0]]).unsqueeze(-1)  # (B, L, 1)
    # speed 0.5: patience round(0.5 * 4) = 2 layers within 0.25 of the one before
    first = exits_for_speeds(values, [0.5], policy)[0].exit_layer.tolist()
    assert first == [3, 5]  # row 0 agrees at layers 2 and 3; row 1 never agrees
    assert exits_for_speeds(values, [0.0], policy)[0].exit_layer.tolist() == [5, 5]  # speed 0: the full model
    assert exits_for_speeds(values, [1.0], policy)[0].exit_layer.tolist() == [1, 1]  # speed 1: after layer 1
    strict = RegressionPatiencePolicy(RegressionPatienceConfig(max_tolerance=0.01))
    assert exits_for_speeds(values, [0.5], strict)[0].exit_layer.tolist() == [5, 5]


def test_mse_distillation_and_one_output():
    torch.manual_seed(0)
    cfg = tiny_config(targets=[{"name": "fastbert", "branch_size": 16, "task": "regression"}], encoder={"layers_num": 3})
    with pytest.raises(ValueError, match="labels_num must be 1"):
        build_model(cfg, vocab_size=99, labels_num=2)
    m = build_model(cfg, vocab_size=99, labels_num=1).eval()
    target = fastbert_target(m)
    student, teacher = torch.randn(6, 1), torch.randn(6, 1)
    torch.testing.assert_close(target.divergence(student, teacher), ((student - teacher) ** 2).mean())
    src = torch.randint(5, 99, (3, 6))
    seg = torch.ones_like(src)
    runner = EarlyExit(m, runtime="eager")
    full = runner.full_model_probs(src, seg)
    assert full.shape == (3, 1)
    raw = target.teacher(m.encoder.forward_layers(m.embed(src, seg), seg)[-1], seg > 0)
    torch.testing.assert_close(full, raw)  # the value itself: no softmax over one output
    torch.testing.assert_close(runner.predict(src, seg, 0.0, policy="regression_patience").probs, full)


def test_metrics():
    m = regression_metrics(torch.tensor([1.0, 2, 2, 3]), torch.tensor([1.0, 3, 2, 5]))
    assert m["pearson"] == pytest.approx(0.9561828874675149)  # scipy.stats.pearsonr
    assert m["spearman"] == pytest.approx(0.9486832980505138)  # scipy.stats.spearmanr (ties averaged)
    assert m["rmse"] == pytest.approx((0.0 + 1 + 0 + 4) ** 0.5 / 2)
    assert regression_metrics(torch.ones(3), torch.tensor([1.0, 2, 3]))["pearson"] == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    write_sets(folder, year)
    assert main(run_args(folder, "regression", "--speed", "0,0.5,1")) == 0
    return folder


def test_report_and_predictions(trained):
    report = json.loads((trained / "out" / "model.report.json").read_text())
    assert report["task"] == "regression" and report["exit_policy"] == "regression_patience"
    years = [float(line.split("\t")[0]) for line in (trained / "train.tsv").read_text().splitlines()[1:]]
    mean, std = target_scale(years)
    assert report["target_scale"] == {"mean": pytest.approx(mean), "std": pytest.approx(std)}
    assert read_checkpoint(trained / "out" / "model.pt")["extra"]["target_scale"] == report["target_scale"]
    assert report["teacher_pearson"] > 0.8  # learnt: the words decide the year
    first, last = report["rows"][0], report["rows"][-1]
    assert {"pearson", "spearman", "rmse", "mean_exit_layer", "flops_speedup", "wall_speedup_batch1"} <= set(first)
    assert first["pearson"] == report["teacher_pearson"] and first["rmse"] == report["teacher_rmse"]
    assert last["mean_exit_layer"] == 1.0
    ok = [r["speed"] for r in report["rows"] if r["pearson"] >= report["teacher_pearson"] - 0.01]
    assert report["chosen"]["speed"] == max(ok)
    lines = (trained / "out" / "model.predictions" / "speed_0.00.tsv").read_text().splitlines()
    assert lines[0] == "value\texit_layer" and len(lines) == 49
    gold = torch.tensor([float(line.split("\t")[0]) for line in (trained / "test.tsv").read_text().splitlines()[1:]])
    pred = torch.tensor([float(line.split("\t")[0]) for line in lines[1:]])
    assert float(((pred - gold) ** 2).mean().sqrt()) == pytest.approx(report["teacher_rmse"], rel=1e-4)  # in years


def test_predictor_returns_values_in_the_labels_units(trained):
    clf = FastBertClassifier.load(trained / "out" / "model.pt", runtime="eager")
    out = clf.predict(["the car was great wonderful", "really so today", "my awful sad phone"], speed=0)
    assert clf.task == "regression" and out.label_sets is None and len(out.values) == 3
    high, mid, low = out.values
    assert high > mid + 1.5 and mid > low + 1.5 and abs(mid - 1990) < 1.5  # about 1994, 1990, 1986
    assert out.labels == [f"{v:g}" for v in out.values]
    with pytest.raises(ValueError, match="this model's task is regression"):
        clf.predict(["the car"], speed=0.5, policy="patience")


def test_a_non_float_label_is_one_line(tmp_path, capsys):
    write_sets(tmp_path, year, sizes=(("train", 8, 1), ("dev", 4, 2), ("test", 4, 3)))
    (tmp_path / "dev.tsv").write_text("label\ttext_a\n1990.0\tthe car\nlate\tmy phone\n")
    assert main(run_args(tmp_path, "regression")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'dev.tsv'}:3: label 'late' is not a number" in err
    assert not (tmp_path / "out").exists()
