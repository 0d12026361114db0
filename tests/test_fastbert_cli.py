"""``run_fastbert.py`` end to end, in-process, on our small TSVs: a 2-layer tiny model from a
pre-trained (tiny MLM) checkpoint trains both stages, sweeps speeds, and writes what users read."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from run_fastbert import main
from tests.helpers import tiny_config
from uer import build_model
from uer.checkpoint import read_checkpoint, save_checkpoint
from uer.fastbert.predictor import FastBertClassifier

DATA = Path("tests/data")
TINY_YAML = """\
embedding:
  emb_size: 32
  components: [word, {name: pos, max_seq_length: 64}, seg]
encoder: {name: transformer, hidden_size: 32, layers_num: 2, heads_num: 4, feedforward_size: 37}
target: {components: [mlm]}
tokenizer: {name: bert}
"""


def args(tmp_path, *extra):
    return [
        "--config_path", str(tmp_path / "tiny.yaml"), "--pretrained_model_path", str(tmp_path / "pretrained.pt"),
        "--vocab_path", str(DATA / "fastbert_vocab.txt"),
        "--train_path", str(DATA / "fastbert_train.tsv"), "--dev_path", str(DATA / "fastbert_dev.tsv"),
        "--test_path", str(DATA / "fastbert_test.tsv"), "--output_model_path", str(tmp_path / "out" / "model.pt"),
        "--report_path", str(tmp_path / "report.json"),
        "--epochs_num", "6", "--distill_epochs_num", "2", "--batch_size", "16", "--seq_length", "16",
        "--learning_rate", "3e-3", "--distill_learning_rate", "3e-3", "--seed", "3", "--report_steps", "4",
        "--branch_size", "16", "--timing_samples", "4", "--no_progress",
        "--exit_plan", "always",  # the policy at every speed: the timed default plan is test_exit_pays' subject
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fastbert")
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    torch.manual_seed(0)
    cfg = tiny_config(targets=["mlm"])
    vocab_size = len((DATA / "fastbert_vocab.txt").read_text().splitlines())
    save_checkpoint(tmp_path / "pretrained.pt", build_model(cfg, vocab_size=vocab_size), cfg)
    assert main(args(tmp_path, "--speed", "0,0.5,1")) == 0
    return tmp_path


def test_both_stages_and_the_report(trained, capsys):
    report = json.loads((trained / "report.json").read_text())
    assert report["labels_num"] == 3 and [r["speed"] for r in report["rows"]] == [0.0, 0.5, 1.0]
    keys = {"speed", "accuracy", "macro_f1", "mean_exit_layer", "flops_per_sample", "flops_speedup",
            "flops_speedup_timed", "wall_speedup_batch1", "wall_speedup_batched"}
    assert keys <= set(report["rows"][0])
    first, last = report["rows"][0], report["rows"][-1]
    # every row exits at layer 1 at speed 1, timed or not: both FLOPs ratios are the same number
    assert last["flops_speedup_timed"] == pytest.approx(last["flops_speedup"], rel=0.25) and last["flops_speedup_timed"] > 1
    assert first["accuracy"] == report["teacher_accuracy"] and first["mean_exit_layer"] == 2.0
    assert last["mean_exit_layer"] == 1.0 and last["flops_per_sample"] < first["flops_per_sample"]
    assert report["teacher_accuracy"] > 0.6  # learnt: 3 balanced-ish classes, chance is ~0.33
    assert report["stage1"]["best"] >= max(d["accuracy"] for d in report["stage1"]["dev"])
    distill_dev = [d["distill_loss"] for d in report["stage2"]["dev"]]
    assert report["stage2"]["best"] == min(distill_dev) < report["stage1"]["dev"][-1]["distill_loss"]
    out = trained / "out"
    lines = (out / "model.predictions" / "speed_0.50.tsv").read_text().splitlines()
    assert lines[0] == "label\tprobability\texit_layer" and len(lines) == 25
    label, prob, layer = lines[1].split("\t")
    assert label in ("0", "1", "2") and 1 / 3 <= float(prob) <= 1 and layer in ("1", "2")
    assert (out / "model.tradeoff.png").stat().st_size > 1000
    assert "fastbert" in (out / "model.config.yaml").read_text()


def test_stage_2_left_backbone_and_teacher_alone(trained):
    stage1 = read_checkpoint(trained / "out" / "model.stage1_best.pt")["model"]
    final = read_checkpoint(trained / "out" / "model.pt")["model"]
    changed = {k for k in final if not torch.equal(final[k], stage1[k])}
    assert changed and all(k.startswith("target.components.fastbert.branches.0.") for k in changed)


def test_predictor_api(trained):
    clf = FastBertClassifier.load(trained / "out" / "model.pt", runtime="eager")
    texts = ["the movie was really great today", "my car is terrible", "this meal is okay"]
    together = clf.predict(texts, speed=0.3, batch_size=3)
    assert len(together.labels) == 3 and together.probabilities.shape == (3, 3)
    assert all(layer in (1, 2) for layer in together.exit_layers)
    for i, text in enumerate(texts):
        alone = clf.predict([text], speed=0.3)
        assert alone.labels[0] == together.labels[i] and alone.exit_layers[0] == together.exit_layers[i]
        torch.testing.assert_close(alone.probabilities[0], together.probabilities[i], rtol=1e-4, atol=1e-5)
    assert clf.predict(texts, speed=1.0).exit_layers == [1, 1, 1]
    with pytest.raises(ValueError, match="speed"):
        clf.predict(texts, speed=1.5)


def test_resume_after_a_crash_equals_the_uninterrupted_run(trained, tmp_path, monkeypatch, capsys):
    """Stage 1 finished, stage 2 killed at its second epoch's end: the same command resumes and
    ends with exactly the uninterrupted run's model."""
    for name in ("tiny.yaml", "pretrained.pt", "out/model.stage1.pt", "out/model.stage1_best.pt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(trained / name, tmp_path / name)
    import uer.fastbert.training as training

    real, calls = training.dev_scores, []

    def crash_at_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "dev_scores", crash_at_second_epoch)
    assert main(args(tmp_path, "--speed", "0")) == 130  # Ctrl-C: one line saying where to resume from
    assert capsys.readouterr().err == (f"run_fastbert.py: interrupted at step 12; the last checkpoint is at step 6 "
                                       f"({tmp_path / 'out' / 'model.stage2.pt'}); run the same command again to resume\n")
    assert read_checkpoint(tmp_path / "out" / "model.stage2.pt")["extra"]["trainer"]["step"] == 6  # epoch 1 of 2
    monkeypatch.setattr(training, "dev_scores", real)
    assert main(args(tmp_path, "--speed", "0")) == 0
    out = capsys.readouterr().out
    assert "resumed stage 1 at step 36 " in out and "resumed stage 2 at step 6 " in out, out
    a = read_checkpoint(trained / "out" / "model.pt")["model"]
    b = read_checkpoint(tmp_path / "out" / "model.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_malformed_rows_are_errors_or_counted(trained, tmp_path, capsys):
    shutil.copy(trained / "tiny.yaml", tmp_path / "tiny.yaml")
    shutil.copy(trained / "pretrained.pt", tmp_path / "pretrained.pt")
    bad = tmp_path / "dev.tsv"
    bad.write_text((DATA / "fastbert_dev.tsv").read_text() + "9\tunknown label here\nonly one column\n")
    argv = args(tmp_path, "--speed", "0")
    argv[argv.index("--dev_path") + 1] = str(bad)
    argv[argv.index("--epochs_num") + 1] = "1"
    argv[argv.index("--distill_epochs_num") + 1] = "0"
    assert main(argv) == 2
    assert f"{bad}:26: label '9' is not one of 0, 1, 2" in capsys.readouterr().err
    assert main(argv + ["--skip_malformed"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["skipped_rows"][str(bad)]["rows"] == 2


def test_speed_lists():
    from uer.utils.cli import parse_speeds

    assert parse_speeds("0,0.1,...,1") == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert parse_speeds("0.5") == (0.5,) and parse_speeds("0, 0.3") == (0.0, 0.3)
    for bad in ("1.5", "x", "0,...,1", ""):
        with pytest.raises(Exception, match="--speed"):
            parse_speeds(bad)


def test_bf16_training_runs_and_learns(trained, tmp_path):
    """--precision bf16 (autocast) trains both stages on the CPU; inference stays fp32."""
    shutil.copy(trained / "tiny.yaml", tmp_path / "tiny.yaml")
    shutil.copy(trained / "pretrained.pt", tmp_path / "pretrained.pt")
    assert main(args(tmp_path, "--speed", "0,1", "--precision", "bf16")) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["device"] == "cpu" and report["teacher_accuracy"] > 0.6
    weights = read_checkpoint(tmp_path / "out" / "model.pt")["model"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())  # master weights stay fp32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_devices_this_machine_cannot_run_are_clear_errors(trained, tmp_path, capsys):
    shutil.copy(trained / "tiny.yaml", tmp_path / "tiny.yaml")
    shutil.copy(trained / "pretrained.pt", tmp_path / "pretrained.pt")
    assert main(args(tmp_path, "--device", "cuda")) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
    assert main(args(tmp_path, "--precision", "fp16")) == 2
    assert "--precision fp16 needs CUDA" in capsys.readouterr().err
    assert main(args(tmp_path, "--device", "tpu9")) == 2
    assert "--device 'tpu9'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_the_main_job_passes_every_check():
    """``python run_fastbert.py`` (no arguments) runs MAIN_JOB: its flags and its config must pass
    the up-front checks (seq_length within MiniLM's position table, branch heads dividing the width)."""
    from run_fastbert import MAIN_JOB, build_parser
    from uer.exit import pipeline
    from uer.exit.cli import run_options

    a = build_parser().parse_args(MAIN_JOB)
    opts = pipeline.RunOptions(**run_options(a, "fastbert"))
    pipeline.check_options(opts)
    config = pipeline.resolve_config(opts, "fastbert", "fastbert")
    pipeline.check_config(config, opts, "fastbert")
    assert a.speed == tuple(round(0.1 * i, 10) for i in range(11)) and config.fastbert.seq_length == 64
    assert (config.fastbert.learning_rate, config.fastbert.distill_learning_rate) == (1e-4, 5e-4)  # its flags, not the recipe


def test_int8_sweep_is_reported_beside_fp32(trained, tmp_path, capsys):
    """--quantize int8 reruns the sweep with int8 weights: its teacher and every speed row are
    measured on the test set and reported next to fp32; the predictor loads int8 on request only."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    report_path = tmp_path / "report.json"
    report_path.unlink()
    assert main(args(tmp_path, "--speed", "0,0.5,1", "--quantize", "int8", "--runtime", "fused")) == 0
    report = json.loads(report_path.read_text())
    assert report["inference_backend"] == "fused"
    int8 = report["int8"]
    assert int8["quantize"] == "int8" and int8["inference_backend"] == "onnxruntime" and "int8" in int8["inference_reason"]
    assert [r["speed"] for r in int8["rows"]] == [0.0, 0.5, 1.0]
    assert int8["rows"][0]["accuracy"] == int8["teacher_accuracy"]
    assert abs(int8["teacher_accuracy"] - report["teacher_accuracy"]) < 0.2  # the same model, 24 test rows
    from uer.runtime.cpu import cpu_features, this_cpu_scheme

    assert int8["scheme"] == json.loads(json.dumps(this_cpu_scheme().as_dict())) and int8["cpu"] == cpu_features().summary()
    verdict = int8["verdict"]  # int8 or fp32, and why, from this run's scores and walls
    assert verdict["keep"] in ("int8", "fp32") and (int8["chosen_vs_fp32_teacher"] is not None or verdict["keep"] == "fp32")
    out = capsys.readouterr().out
    assert "int8:" in out and f"int8: keep {verdict['keep']}: {verdict['why']}" in out
    clf = FastBertClassifier.load(tmp_path / "out" / "model.pt", quantize="int8")
    assert "onnxruntime int8" in clf.runtime  # auto: int8 timed beside fp32, kept where it is the fastest
    assert FastBertClassifier.load(tmp_path / "out" / "model.pt").runner.quantize is None


def test_rates_nobody_set_come_from_the_recipe_for_the_size(trained, tmp_path, capsys):
    """No --learning_rate / --distill_learning_rate and none in the YAML: uer.recipe's rates for the
    model's size (hidden 32 x 2 layers: clipped at 1e-3, distillation twice that), said in one line and
    recorded in the model's config; a given flag keeps its value and the other still comes from the rule."""
    import yaml

    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    shutil.copy(trained / "pretrained.pt", tmp_path / "pretrained.pt")
    argv = args(tmp_path, "--speed", "0", "--epochs_num", "1", "--distill_epochs_num", "1")
    for flag in ("--learning_rate", "--distill_learning_rate"):
        i = argv.index(flag)
        del argv[i:i + 2]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert ("fine-tuning: learning rate 1.0e-03, self-distillation 2.0e-03 for hidden 32 x 2 layers "
            "[uer.recipe; --learning_rate / --distill_learning_rate override]") in out
    saved = yaml.safe_load((tmp_path / "out" / "model.config.yaml").read_text())["fastbert"]
    assert (saved["learning_rate"], saved["distill_learning_rate"]) == (1e-3, 2e-3)
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "report.json").unlink()
    assert main([*argv, "--learning_rate", "3e-4"]) == 0
    assert "fine-tuning: learning rate 3.0e-04 (given), self-distillation 2.0e-03" in capsys.readouterr().out
