"""Short pre-training probes: which settings get a small BERT off the MLM plateau (bench, not a test).

    python corpora/build_zh.py                          # once
    flock /tmp/uer-bench.lock python bench/recipe_probes.py --steps 250 --probes post_1e-3_prior post_3e-3_nodrop_prior
    python bench/recipe_probes.py --list                # the probes and their flags

The "frequent-character plateau": an MLM model first learns to predict the corpus' most frequent
characters everywhere (accuracy ~0.13 on People's Daily + reviews) and only later starts to read
the context. Every probe pre-trains BERT-tiny (``models/bert/tiny.yaml`` with the ``mlm`` target
only, seq 64 x batch 32 unless a probe says otherwise) on People's Daily + the *training* reviews
through ``pretrain.py`` and records the MLM
accuracy curve (the training batches of each report window). Each probe's command is printed;
curves go to ``out/probes/<name>/model.metrics.jsonl`` and the table to ``out/probes/table.md``.
A ``_prior`` probe starts the MLM bias at the corpus' log unigram prior (pretrain.py's default,
``--mlm_bias_init prior``); every other probe at zero (``--mlm_bias_init zero``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PY, ROOT, sh, write_text  # noqa: E402
from uer.utils.cli import run_main  # noqa: E402

MLM_ONLY = ["--set", "target.components=[mlm]"]
PRE_LN = ["--set", "encoder.layernorm_positioning=pre"]
NO_DROPOUT = ["--set", "encoder.dropout=0.0", "--set", "encoder.attention_dropout=0.0", "--set", "embedding.dropout=0.0"]

# name -> (dataset seq length or None = --seq_length, extra pretrain.py flags); lr / warmup always explicit
PROBES: dict[str, tuple[int | None, list[str]]] = {
    "post_1e-3": (None, ["--learning_rate", "1e-3", "--warmup", "0.1"]),
    "post_3e-3": (None, ["--learning_rate", "3e-3", "--warmup", "0.05"]),
    "pre_3e-3": (None, [*PRE_LN, "--learning_rate", "3e-3", "--warmup", "0.05"]),
    "pre_5e-3": (None, [*PRE_LN, "--learning_rate", "5e-3", "--warmup", "0.05"]),
    "pre_3e-3_nodrop": (None, [*PRE_LN, *NO_DROPOUT, "--learning_rate", "3e-3", "--warmup", "0.05"]),
    "post_3e-3_nodrop": (None, [*NO_DROPOUT, "--learning_rate", "3e-3", "--warmup", "0.05"]),
    "pre_3e-3_seq64_b64": (64, [*PRE_LN, "--learning_rate", "3e-3", "--warmup", "0.05", "--batch_size", "64"]),
    "pre_3e-3_acc4": (None, [*PRE_LN, "--learning_rate", "3e-3", "--warmup", "0.05", "--accumulation_steps", "4"]),
    # the MLM decoder bias starts at the corpus' log unigram prior (pretrain.py --mlm_bias_init prior)
    "post_1e-3_prior": (None, ["--learning_rate", "1e-3", "--warmup", "0.1"]),
    "post_3e-3_prior": (None, ["--learning_rate", "3e-3", "--warmup", "0.05"]),
    "pre_3e-3_prior": (None, [*PRE_LN, "--learning_rate", "3e-3", "--warmup", "0.05"]),
    "post_3e-3_nodrop_prior": (None, [*NO_DROPOUT, "--learning_rate", "3e-3", "--warmup", "0.05"]),
    "post_3e-3_nodrop_untied_prior": (None, [*NO_DROPOUT, "--set", "target.components=[{name: mlm, tie_weights: false}]",
                                             "--learning_rate", "3e-3", "--warmup", "0.05"]),
    "pre_3e-3_untied": (None, [*PRE_LN, "--set", "target.components=[{name: mlm, tie_weights: false}]", "--learning_rate", "3e-3", "--warmup", "0.05"]),
}


def dataset(seq: int) -> Path:
    path = ROOT / "data" / "datasets" / f"zh_mlm_{seq}"
    if not (path / "meta.json").exists():
        sh([PY, "preprocess.py", "--corpus_path", "data/corpora/zh_news_reviews.txt", "--data_processor", "mlm",
            "--vocab_path", "models/google_zh_vocab.txt", "--dataset_path", path, "--seq_length", seq,
            "--processes_num", 1, "--no_progress"])
    return path


def run_probe(name: str, steps: int, out: Path, config: str, report_steps: int, seq_length: int, batch_size: int) -> dict:
    seq, flags = PROBES[name]
    seq = seq or seq_length
    flags = ["--batch_size", str(batch_size), *flags]  # a probe's own --batch_size comes later and wins
    target = out / name
    for stale in (target / "model.pt", target / "model.pt.resume", target / "model.metrics.jsonl"):
        stale.unlink(missing_ok=True)
    cmd = [PY, "pretrain.py", "--dataset_path", str(dataset(seq)), "--config_path", config,
           "--vocab_path", "models/google_zh_vocab.txt", "--output_model_path", str(target / "model.pt"),
           "--total_steps", str(steps), "--report_steps", str(report_steps), "--save_checkpoint_steps", str(10 * steps),
           "--device", "cpu", "--no_progress", "--mlm_bias_init", "prior" if name.endswith("_prior") else "zero",
           *MLM_ONLY, *flags]
    target.mkdir(parents=True, exist_ok=True)
    wall = sh(cmd, target / "pretrain.log")
    curve = [(m["step"], m["mlm_acc"]) for m in map(json.loads, (target / "model.metrics.jsonl").read_text().splitlines())]
    print(f"  {name}: " + "  ".join(f"{s}:{a:.3f}" for s, a in curve) + f"  ({wall:.0f} s)", flush=True)
    return {"name": name, "seq_length": seq, "flags": flags, "steps": steps, "curve": curve, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probes", nargs="+", choices=list(PROBES), default=["post_1e-3", "pre_3e-3"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--report_steps", type=int, default=50)
    p.add_argument("--seq_length", type=int, default=64, help="of the probes that do not set their own")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--config_path", default="models/bert/tiny.yaml")
    p.add_argument("--out_dir", default="out/probes")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    return run_main("recipe_probes.py", lambda: _run(args))


def _run(args) -> int:
    if args.list:
        for name, (seq, flags) in PROBES.items():
            print(f"{name}: seq {seq or args.seq_length} {' '.join(flags)}")
        return 0
    out = ROOT / args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    for name in args.probes:
        result = run_probe(name, args.steps, out, args.config_path, args.report_steps, args.seq_length, args.batch_size)
        with open(results_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    rows = [json.loads(line) for line in results_path.read_text().splitlines()]
    lines = ["| probe | flags | steps | MLM acc (step: acc) | final | wall s |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        curve = ", ".join(f"{s}: {a:.3f}" for s, a in r["curve"])
        lines.append(f"| {r['name']} | seq {r['seq_length']} {' '.join(r['flags'])} | {r['steps']} | {curve} | "
                     f"{r['curve'][-1][1]:.3f} | {r['wall_s']:.0f} |")
    write_text(out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
