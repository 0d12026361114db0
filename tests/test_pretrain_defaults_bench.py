"""bench/pretrain_defaults.py: the held-out split, its refusals, and a --quick run end to end on a
tiny model and a slice of People's Daily (the numbers themselves are a bench); bench/common.py's
step runner."""
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402

from bench import common  # noqa: E402
from bench import pretrain_defaults as bench  # noqa: E402
from uer.utils.cli import UsageError  # noqa: E402
from tests.test_preprocess import VOCAB_ZH, peoples_daily  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def test_a_failing_step_is_one_line_naming_it_and_its_last_line(tmp_path):
    log, fine, fails = tmp_path / "steps.log", tmp_path / "fine.py", tmp_path / "fails.py"
    fine.write_text("print('fine')\n")
    fails.write_text("import sys\nprint('first', flush=True)\nsys.exit('the last words')\n")
    assert common.sh([common.PY, fine], log) >= 0
    with pytest.raises(UsageError) as err:
        common.sh([common.PY, fails], log)
    assert str(err.value) == f"fails.py failed (exit 1): the last words (log: {log})"
    assert log.read_text().splitlines()[1::2] == ["fine", "first"]  # both runs kept, each after its $ line


def test_heldout_documents_share_no_line_with_training(tmp_path):
    corpus = tmp_path / "c.txt"
    docs = [[f"doc{d} line{i}" for i in range(3)] for d in range(10)]
    docs[4].append("doc0 line0")  # held out (every 5th: index 4), and also a training line: dropped
    corpus.write_text("".join("\n".join(d) + "\n\n" for d in docs), encoding="utf-8")
    got = bench.split_corpus(corpus, tmp_path / "split", 0.2)
    held = Path(got["heldout"]).read_text(encoding="utf-8").splitlines()
    assert (got["train_documents"], got["heldout_documents"], got["heldout_lines_dropped"]) == (8, 2, 1)
    assert [line for line in held if line] == [f"doc{d} line{i}" for d in (4, 9) for i in range(3)]
    assert not {line for line in held if line} & set(Path(got["train"]).read_text(encoding="utf-8").splitlines())


def test_refusals_are_one_line(tmp_path, capsys, monkeypatch):
    assert bench.main(["--models", "tiny,huge", "--out_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pretrain_defaults.py: error: --models: unknown model 'huge'; valid: ") and "mini" in err
    assert "\n" not in err
    monkeypatch.setattr(bench, "cpu_info", lambda: {"model": "Old CPU", "cores": 2, "flags": ["avx2"], "bf16_units": []})
    assert bench.main(["--bf16", "--out_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pretrain_defaults.py: error: --bf16: this CPU (Old CPU) has neither avx512_bf16 nor amx_bf16")
    assert "\n" not in err
    assert bench.main(["--corpus", str(tmp_path / "none.txt"), "--out_dir", str(tmp_path)]) == 2
    assert "--corpus" in capsys.readouterr().err and not list(tmp_path.glob("dataset_*"))


def quick_argv(tmp_path):
    corpus = peoples_daily(tmp_path / "pd.txt", lines=400)
    shutil.copy(DATA / "pretrain_mlm.yaml", tmp_path / "mini.yaml")  # named mini: the goal line is about it
    return ["--quick", "--models", str(tmp_path / "mini.yaml"), "--corpus", str(corpus),
            "--vocab_path", str(VOCAB_ZH), "--batch_size", "8", "--seq_length", "32", "--heldout_fraction", "0.2",
            "--out_dir", str(tmp_path / "out"), "--results", str(tmp_path / "results" / "bench")]


def test_quick_run_writes_table_curves_plot_and_goal(tmp_path, capsys):
    argv = quick_argv(tmp_path)
    results = tmp_path / "results" / "bench"
    assert bench.main([*argv, "--minutes", "0.1"]) == 0
    report = json.loads(results.with_suffix(".json").read_text())
    (e,) = report["entries"]
    assert (e["model"], e["precision"], e["batch_size"], e["seq_length"]) == ("mini", "fp32", 8, 32)
    assert e["total_steps"] == bench.steps_for(0.1, e["calibration"])  # the budget became steps by the calibration
    steps = [p["step"] for p in e["curve"]]
    assert steps == sorted(steps) and steps[-1] == e["total_steps"]
    seconds = [p["seconds"] for p in e["curve"]]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= e["wall_s"]
    assert all(0.0 <= p["mlm_acc"] <= 1.0 for p in e["curve"])
    assert e["heldout"][-1]["step"] == e["total_steps"] and 0.0 <= e["heldout"][-1]["mlm_acc"] <= 1.0
    assert report["data"]["heldout_masked"] > 0 and report["data"]["heldout_instances"] > 0
    assert [h["step"] for h in e["heldout"]] == sorted({*range(e["save_checkpoint_steps"], e["total_steps"], e["save_checkpoint_steps"]),
                                                        e["total_steps"]})  # pretrain.py scored every checkpoint and the end
    assert e["schedule"].startswith("schedule: learning rate ")  # chosen by uer.recipe: no tuning flag was passed
    assert "--learning_rate" not in e["command"] and "--warmup" not in e["command"]
    assert report["goal"] == [line for line in results.with_suffix(".md").read_text().splitlines() if line.startswith("BERT-mini")]
    assert len(report["goal"]) == 1  # the goal is judged for the run named mini
    assert results.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(results.parent.glob(".*.tmp"))  # atomic writes leave no temp file


def test_a_rerun_replaces_its_own_row(tmp_path, capsys):
    argv = quick_argv(tmp_path)
    results = tmp_path / "results" / "bench"
    assert bench.main([*argv, "--steps", "4"]) == 0
    assert bench.main([*argv, "--steps", "3", "--minutes", "1"]) == 2  # one of the two: refused
    assert bench.main([*argv, "--steps", "3"]) == 0
    (again,) = json.loads(results.with_suffix(".json").read_text())["entries"]
    assert again["total_steps"] == 3 and again["calibration"] is None
