"""bench/pretrain_defaults.py: the held-out split, the goal line, its refusals, and a --quick run
end to end on a tiny model and a slice of People's Daily (the numbers themselves are a bench)."""
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import pretrain_defaults as bench  # noqa: E402
from tests.test_preprocess import VOCAB_ZH, peoples_daily  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def entry(points, heldout=0.2, precision="fp32"):
    """A results entry whose training curve is [(step, minutes, acc)]."""
    curve = [{"step": s, "seconds": m * 60, "mlm_acc": a} for s, m, a in points]
    return {"model": "mini", "precision": precision, "curve": curve,
            "heldout": [{"step": points[-1][0], "mlm_acc": heldout}]}


def test_goal_line_met_late_and_not_reached():
    met = bench.goal_line(entry([(100, 10, 0.14), (2000, 30, 0.251), (3000, 44, 0.27)]))
    assert met == ("BERT-mini MLM accuracy >= 0.25 within 45 min (fp32): met "
                   "(reached 0.251 at step 2000, 30.0 min; held-out 0.200 at step 3000)")
    late = bench.goal_line(entry([(1000, 40, 0.20), (2000, 50, 0.26)], precision="bf16"))
    assert late == ("BERT-mini MLM accuracy >= 0.25 within 45 min (bf16): not met "
                    "(reached 0.260 only at step 2000, 50.0 min; held-out 0.200 at step 2000)")
    # the best point inside the budget, not after it; a short run says so
    low = bench.goal_line(entry([(1000, 20, 0.18), (1500, 30, 0.17)]))
    assert low.startswith("BERT-mini MLM accuracy >= 0.25 within 45 min (fp32): not met (best 0.180 at step 1000, 20.0 min")
    assert low.endswith("the run had 30.0 min: rerun with a larger --minutes for the steps it takes)")
    assert bench.goal_line(None) == "BERT-mini MLM accuracy >= 0.25 within 45 min: not measured (mini was not run)"
    variant = dict(entry([(1000, 7, 0.267)]), model="mini_alibi")
    assert bench.goal_line(variant).startswith("BERT-mini (mini_alibi.yaml) MLM accuracy >= 0.25 within 45 min (fp32): met")
    assert bench.is_goal_model("mini_alibi") and not bench.is_goal_model("tiny_alibi") and not bench.is_goal_model("minilm_l6_h384")


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
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "bf16 units:" in out
    report = json.loads(results.with_suffix(".json").read_text())
    (e,) = report["entries"]
    assert (e["model"], e["precision"], e["batch_size"], e["seq_length"]) == ("mini", "fp32", 8, 32)
    assert e["calibration"]["s_per_step"] > 0 and e["total_steps"] >= 1
    steps = [p["step"] for p in e["curve"]]
    assert steps == sorted(steps) and steps[-1] == e["total_steps"]
    seconds = [p["seconds"] for p in e["curve"]]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= e["wall_s"]
    assert all(0.0 <= p["mlm_acc"] <= 1.0 for p in e["curve"])
    assert e["heldout"][-1]["step"] == e["total_steps"] and 0.0 <= e["heldout"][-1]["mlm_acc"] <= 1.0
    assert e["heldout"][-1]["masked"] == report["data"]["heldout_masked"] > 0
    assert e["schedule"].startswith("schedule: learning rate ")  # chosen by uer.recipe: no tuning flag was passed
    assert "--learning_rate" not in e["command"] and "--warmup" not in e["command"]
    table = results.with_suffix(".md").read_text()
    assert f"| mini | fp32 | 8 x 32 | {e['total_steps']} |" in table
    assert "BERT-mini MLM accuracy >= 0.25 within 45 min (fp32): not met" in table
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
