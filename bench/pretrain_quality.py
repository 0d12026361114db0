"""Does pre-training help? A small BERT pre-trained on the Chinese corpora vs the same config from
random weights, both then trained with FastBERT on the Chinese reviews (bench, not a test).

    python bench/pretrain_quality.py                                   # the full run (~60 CPU-minutes of pre-training)
    python bench/pretrain_quality.py --total_steps 1500 --epochs_num 2 --distill_epochs_num 1   # reduced

Every command it runs is printed first, so the experiment can be reproduced by hand:

1. ``corpora/build_zh.py``: People's Daily + the *training* reviews -> data/corpora/zh_news_reviews.txt,
   reviews split into data/reviews_zh/{train,dev,test}.tsv by scripts/build_sentiment_datasets.py (dev/test reviews never reach pre-training).
2. ``preprocess.py``: bert processor (mlm + nsp), seq 128, dynamic masking.
3. ``pretrain.py``: the config (default BERT-mini, L4/H256) for ``--total_steps`` steps.
4. ``run_fastbert.py`` twice, same flags and seed: from the pre-trained checkpoint, and from random weights.

The table (test accuracy of the full model and at FastBERT speed 0.5) goes to stdout and
out/quality/table.md; the raw reports lie beside it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def sh(cmd: list[str], log: Path) -> None:
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {line}\n")
        f.flush()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=f, stderr=subprocess.STDOUT)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def pretrain(args, dataset: Path, model: Path, log: Path) -> None:
    sh([PY, "preprocess.py", "--corpus_path", "data/corpora/zh_news_reviews.txt", "--config_path", args.config_path,
        "--vocab_path", args.vocab_path, "--dataset_path", str(dataset), "--seq_length", "128",
        "--processes_num", str(args.processes_num), "--no_progress"], log)
    # an earlier, shorter run of this bench is continued (its schedule is stretched to the new total)
    resume = ["--resume"] if Path(f"{model}.resume").exists() else []
    sh([PY, "pretrain.py", "--dataset_path", str(dataset), "--config_path", args.config_path,
        "--vocab_path", args.vocab_path, "--output_model_path", str(model), "--total_steps", str(args.total_steps),
        "--batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate), "--warmup", "0.05",
        "--report_steps", "100", "--save_checkpoint_steps", "500", "--seed", str(args.seed), "--no_progress", *resume], log)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config_path", default="models/bert/mini.yaml")
    p.add_argument("--vocab_path", default="models/google_zh_vocab.txt")
    p.add_argument("--total_steps", type=int, default=6000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-4)
    p.add_argument("--epochs_num", type=int, default=3)
    p.add_argument("--fastbert_learning_rate", type=float, default=1e-4, help="the same for both backbones")
    p.add_argument("--distill_epochs_num", type=int, default=1)
    p.add_argument("--processes_num", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out_dir", default="out/quality")
    p.add_argument("--skip_build", action="store_true", help="data/ already built")
    p.add_argument("--skip_pretrain", action="store_true",
                   help="use the pre-trained model already in --out_dir (e.g. a pre-training run that was started by hand)")
    p.add_argument("--fastbert_precision", choices=("fp32", "bf16"), default="fp32",
                   help="training arithmetic of both FastBERT runs (bf16 is ~1.6x faster on CPUs with bf16 units)")
    args = p.parse_args(argv)
    out = ROOT / args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    dataset = out / "dataset_zh_bert"
    model = out / "pretrained" / "model.pt"
    if not args.skip_build:
        sh([PY, "corpora/build_zh.py"], log)
    if not args.skip_pretrain:
        pretrain(args, dataset, model, log)
    elif not model.is_file():
        raise SystemExit(f"--skip_pretrain: {model} does not exist")
    reports = {}
    for name, init in (("pre-trained", ["--pretrained_model_path", str(model)]), ("random init", [])):
        tag = name.split()[0].replace("-", "_")
        report = out / f"fastbert_{tag}.json"
        # fresh directories: run_fastbert.py resumes a stage from a checkpoint it finds there
        shutil.rmtree(out / f"fastbert_{tag}", ignore_errors=True)
        sh([PY, "run_fastbert.py", *init, "--config_path", args.config_path, "--vocab_path", args.vocab_path,
            "--train_path", "data/reviews_zh/train.tsv", "--dev_path", "data/reviews_zh/dev.tsv",
            "--test_path", "data/reviews_zh/test.tsv", "--output_model_path", str(out / f"fastbert_{tag}" / "model.pt"),
            "--epochs_num", str(args.epochs_num), "--distill_epochs_num", str(args.distill_epochs_num),
            "--batch_size", "32", "--seq_length", "128", "--learning_rate", str(args.fastbert_learning_rate),
            "--seed", str(args.seed), "--speed", "0,0.5", "--precision", args.fastbert_precision,
            "--report_path", str(report), "--no_progress"], log)
        reports[name] = json.loads(report.read_text())
    metrics = [json.loads(line) for line in model.with_name(f"{model.stem}.metrics.jsonl").read_text().splitlines()]
    lines = [
        f"config {args.config_path}, pre-training {metrics[-1]['step']} steps x batch {args.batch_size} x seq 128 "
        f"(MLM loss {metrics[0]['mlm_loss']:.2f} -> {metrics[-1]['mlm_loss']:.2f}, MLM acc {metrics[-1]['mlm_acc']:.3f}); "
        f"FastBERT {args.epochs_num} + {args.distill_epochs_num} epochs on data/reviews_zh, learning rate {args.fastbert_learning_rate}, "
        f"{args.fastbert_precision}",
        "",
        "| backbone | test accuracy (full model) | test accuracy (speed 0.5) | FLOPs speed-up at 0.5 |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in reports.items():
        half = next(row for row in r["rows"] if abs(row["speed"] - 0.5) < 1e-9)
        lines.append(f"| {name} | {r['teacher_accuracy']:.4f} | {half['accuracy']:.4f} | "
                     f"{half['flops_speedup'] or float('nan'):.2f}x |")
    gain = reports["pre-trained"]["teacher_accuracy"] - reports["random init"]["teacher_accuracy"]
    lines += ["", f"pre-training gain: {100 * gain:+.2f} points of test accuracy (goal: >= +3)"]
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
