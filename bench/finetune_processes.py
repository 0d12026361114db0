"""Fine-tuning step time on one process and on N processes (``torchrun``, gloo on CPU), same global batch.

    flock /tmp/uer-bench.lock python bench/finetune_processes.py             # MiniLM on 3,000 tweets, 1 vs 2 processes
    python bench/finetune_processes.py --processes 1,2 --train_samples 1000 --threads 2

Runs ``run_fastbert.py`` itself (stage 1 only, no sweep) once per process count into its own folder
and reads the stage's metrics file: the wall time per optimizer step after the first report (the
warm-up), and tokens per second. On one machine the processes share its cores: ``--threads`` is
the total, split evenly, so the comparison is of the same cores used two ways (what DDP costs on a
CPU host), not of more hardware. Writes ``bench/results/finetune_processes.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, cpu_info, cpu_line, sh, write_json  # noqa: E402
from uer.utils.cli import run_main  # noqa: E402


def run(processes: int, threads: int, out: Path, args) -> dict:
    per = max(1, threads // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(per), "PYTHONPATH": str(ROOT)}
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [sys.executable, *launcher, "run_fastbert.py", "--pretrained_model_path", args.model,
               "--config_path", args.config, "--vocab_path", args.vocab, "--train_path", args.train, "--dev_path", args.dev,
               "--output_model_path", str(out / "model.pt"), "--train_samples", str(args.train_samples),
               "--dev_samples", "64", "--epochs_num", "1", "--distill_epochs_num", "0", "--batch_size", str(args.batch_size),
               "--seq_length", "64", "--report_steps", "10", "--no_progress", "--threads", str(per), "--device", "cpu"]
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sh(command, out / "run.log", env=env)  # a failure: one line naming its last line and the log
    lines = [json.loads(line) for line in (out / "model.stage1.jsonl").read_text().splitlines()]
    steady = lines[1:] or lines  # the first report holds the warm-up
    return {"processes": processes, "threads_each": per, "seconds": time.perf_counter() - started,
            "tokens_per_s": sum(r["tokens_per_s"] for r in steady) / len(steady), "steps": lines[-1]["step"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2")
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all, split over the processes")
    p.add_argument("--train_samples", type=int, default=3000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--model", default="models/minilm/model.pt")
    p.add_argument("--config", default="models/bert/minilm_l6_h384.yaml")
    p.add_argument("--vocab", default="models/minilm/vocab.txt")
    p.add_argument("--train", default="data/tweets/train.tsv")
    p.add_argument("--dev", default="data/tweets/dev.tsv")
    p.add_argument("--work_dir", default="out/finetune_processes")
    p.add_argument("--results", default="bench/results/finetune_processes.json")
    args = p.parse_args()
    cpu = cpu_info()
    print(cpu_line(cpu), flush=True)
    rows = []
    for n in (int(x) for x in args.processes.split(",")):
        out = ROOT / args.work_dir / f"p{n}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        rows.append(run(n, args.threads, out, args))
        r = rows[-1]
        print(f"{n} process(es) x {r['threads_each']} thread(s): {r['tokens_per_s']:.0f} tokens/s over {r['steps']} steps "
              f"({r['seconds']:.0f}s with start-up)", flush=True)
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup_vs_first"] = r["tokens_per_s"] / base
    write_json(ROOT / args.results, {"cpu": cpu, "global_batch": args.batch_size, "threads_total": args.threads, "rows": rows})
    print(f"written to {args.results}")


if __name__ == "__main__":
    sys.exit(run_main("finetune_processes.py", main))
