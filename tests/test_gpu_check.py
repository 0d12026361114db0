"""bench/gpu_check.sh: its CPU dry run goes through every step's real code path with tiny sizes."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args):
    return subprocess.run(["bash", "bench/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=400)


@pytest.mark.slow  # ~40 s on an idle 2-core machine, minutes under load: every step starts python + torch
@pytest.mark.skipif(not (ROOT / "models" / "google_zh_vocab.txt").is_file(), reason="scripts/prepare.py not run")
def test_dry_run_passes_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    result = run_script("--dry_run", "--out_dir", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout[result.stdout.index("gpu_check (dry run, cpu):"):].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in summary] == ["speed", "torchrun", "fastbert", "sweep", "runtimes"]
    assert all(": ok (" in line for line in summary), summary
    speed = json.loads((out / "speed.json").read_text())
    assert speed["device"] == "cpu" and speed["precision"] == "bf16"
    assert len(speed["uer_rounds"]) == len(speed["hf_rounds"]) == 1  # --rounds 1: the median is that round
    assert (speed["uer_tokens_per_s"], speed["hf_tokens_per_s"]) == (speed["uer_rounds"][0], speed["hf_rounds"][0])
    assert speed["ratio"] == pytest.approx(speed["uer_tokens_per_s"] / speed["hf_tokens_per_s"])
    assert "transformers.BertForMaskedLM" in result.stdout
    assert (out / "pretrain" / "model.pt").is_file()
    assert "pretrain step 3: " in result.stdout  # the last step of the torchrun run
    report = json.loads((out / "fastbert" / "report.json").read_text())
    assert [row["speed"] for row in report["rows"]] == [0.0, 1.0]
    assert "largest speed within 1 point of the teacher" in (out / "sweep.log").read_text()
    runtimes = json.loads((out / "runtimes.json").read_text())["runtimes"]
    assert set(runtimes) == {"eager", "fused", "onnxruntime", "auto"}
    assert "CPUExecutionProvider" in runtimes["onnxruntime"]["reason"]  # on CUDA: the CUDA provider, or why not
    assert all(set(r["ms_per_text"]) == {"batch1", "batch8"} for r in runtimes.values())


def test_unknown_argument_is_one_line_and_exit_2():
    result = run_script("--dryrun")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "gpu_check.sh: error: unknown argument '--dryrun'"
    assert result.stdout == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_without_cuda_it_says_so_and_runs_nothing(tmp_path):
    result = run_script("--out_dir", str(tmp_path / "c"))
    assert result.returncode == 2
    assert result.stderr.strip() == "gpu_check.sh: error: torch sees no CUDA device (run it on a CUDA machine, or pass --dry_run)"
    assert list((tmp_path / "c").iterdir()) == []


def test_python_parts_refuse_bad_input_with_one_line(tmp_path, capsys):
    from bench import gpu_check

    if not torch.cuda.is_available():
        assert gpu_check.main(["speed", "--device", "cuda", "--size", "tiny"]) == 2
        assert capsys.readouterr().err.startswith("gpu_check.py speed: error: --device cuda: CUDA is not available")
    assert gpu_check.main(["sweep", "--device", "cpu", "--model", str(tmp_path / "none.pt"), "--test_path", "x.tsv"]) == 2
    assert capsys.readouterr().err == f"gpu_check.py sweep: error: --model {tmp_path / 'none.pt'}: no such file (the FastBERT step of gpu_check.sh writes it)\n"
