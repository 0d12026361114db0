"""Is ``uer.recipe``'s fine-tuning rate right for this model? A sweep around it (bench, not a test).

    flock /tmp/uer-bench.lock python bench/finetune_rate.py          # MiniLM-L6-H384 on 2,000 tweets, 3 rates (~15 min)
    flock /tmp/uer-bench.lock python bench/finetune_rate.py --quick  # a few minutes: shows it works

``run_fastbert.py`` picks its rates from the model's size when nobody sets them
(``uer.recipe.finetune_learning_rate``: ``5e-5 * (768 / hidden) * sqrt(12 / layers)``). This bench
checks that rule on a model and a dataset: for every multiplier m in ``--multipliers`` and seed in
``--seeds`` it runs ``run_fastbert.py`` with ``--learning_rate`` m x the rule's rate and
``--distill_learning_rate`` ``DISTILL_RATIO`` x that (so m = 1 is exactly what a user gets by
default), every other flag the same. The rate is judged on dev (stage 1's best dev accuracy, mean
over seeds); test accuracy is printed beside it and never used to choose.

Defaults: all-MiniLM-L6-v2 (``models/minilm``, from ``scripts/setup.sh``) on ``data/tweets``
(``scripts/build_sentiment_datasets.py``), 2,000 training rows, 3 + 1 epochs, seq 64, one seed,
multipliers 1/3, 1, 3. Finished runs are kept under ``<out_dir>/runs`` and not run again; the table
goes to stdout, ``<out_dir>/table.md``, and ``--results`` (.md and .json).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PY, ROOT, cpu_info, cpu_line, kept_fastbert_run, mean_std, write_json, write_text  # noqa: E402
from uer.utils.cli import UsageError, output_dir, positive_float, positive_int, run_main  # noqa: E402


def rule_rates(config_path: Path) -> tuple[float, float, str]:
    """The (learning rate, self-distillation rate) run_fastbert.py picks for the config when nobody
    sets them, and the size in words."""
    from uer.config import load_config
    from uer.recipe import apply_finetune_recipe

    config, _ = apply_finetune_recipe(load_config(config_path), "fastbert")
    enc = config.encoder.cfg
    return config.fastbert.learning_rate, config.fastbert.distill_learning_rate, f"hidden {enc.hidden_size} x {enc.layers_num} layers"


def tag_of(multiplier: float, seed: int) -> str:
    return f"x{multiplier:g}_seed{seed}"


def table(runs: list[dict], multipliers: list[float], rule_lr: float) -> tuple[list[str], float]:
    """Markdown rows per multiplier (dev, test: mean ± std over seeds, in points) and the multiplier
    best on dev."""
    lines = ["| learning rate | x rule | dev accuracy (stage 1 best) | test accuracy (teacher) | seeds |",
             "| --- | --- | --- | --- | --- |"]
    dev_means = {}
    for m in multipliers:
        mine = [r for r in runs if r["multiplier"] == m]
        dev, dev_sd = mean_std([100 * r["dev_accuracy"] for r in mine])
        test, test_sd = mean_std([100 * r["teacher_accuracy"] for r in mine])
        dev_means[m] = dev
        name = f"**{m:g}** (the rule)" if m == 1 else f"{m:g}"
        spread = (lambda sd: f" ± {sd:.2f}") if len(mine) > 1 else (lambda sd: "")  # no spread from one seed
        lines.append(f"| {m * rule_lr:.2g} | {name} | {dev:.2f}{spread(dev_sd)} | {test:.2f}{spread(test_sd)} | {len(mine)} |")
    return lines, max(dev_means, key=dev_means.get)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="finetune_rate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 labels, 1 + 1 epochs, 300 dev rows, multipliers 1 3")
    p.add_argument("--pretrained_model_path", type=Path, default=ROOT / "models" / "minilm" / "model.pt")
    p.add_argument("--config_path", type=Path, default=ROOT / "models" / "bert" / "minilm_l6_h384.yaml")
    p.add_argument("--vocab_path", type=Path, default=ROOT / "models" / "minilm" / "vocab.txt")
    p.add_argument("--data_dir", type=Path, default=ROOT / "data" / "tweets", help="holds train.tsv, dev.tsv, test.tsv")
    p.add_argument("--labels", type=positive_int, help="training rows (default 2000; quick 200)")
    p.add_argument("--multipliers", nargs="+", type=positive_float,
                   help="of the rule's rate (default 0.333 1 3; quick 1 3); 1, the rule itself, is always added")
    p.add_argument("--seeds", nargs="+", type=int, default=[1])
    p.add_argument("--epochs_num", type=positive_int, help="default 3; quick 1")
    p.add_argument("--distill_epochs_num", type=positive_int, default=1)
    p.add_argument("--seq_length", type=positive_int, default=64)
    p.add_argument("--dev_samples", type=int, help="dev rows scored per epoch (default 0 = all; quick 300)")
    p.add_argument("--test_samples", type=int, help="default 0 = all; quick 300")
    p.add_argument("--out_dir", type=Path, help="default out/finetune_rate (quick: out/finetune_rate_quick)")
    p.add_argument("--results", type=Path, help="prefix of the .md/.json results (default bench/results/finetune_rate; "
                                                 "quick: <out_dir>/finetune_rate)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    for key, full, small in (("labels", 2000, 200), ("multipliers", [0.333, 1.0, 3.0], [1.0, 3.0]),
                             ("epochs_num", 3, 1), ("dev_samples", 0, 300), ("test_samples", 0, 300),
                             ("out_dir", ROOT / "out" / "finetune_rate", ROOT / "out" / "finetune_rate_quick")):
        if getattr(args, key) is None:
            setattr(args, key, small if quick else full)
    if args.results is None:
        args.results = args.out_dir / "finetune_rate" if quick else ROOT / "bench" / "results" / "finetune_rate"
    return run_main("finetune_rate.py", lambda: _run(args))


def _run(args) -> int:
    for flag, path in (("--pretrained_model_path", args.pretrained_model_path), ("--config_path", args.config_path),
                       ("--vocab_path", args.vocab_path), *(("--data_dir", args.data_dir / f"{split}.tsv")
                                                            for split in ("train", "dev", "test"))):
        if not path.is_file():
            raise UsageError(f"{flag}: {path} is not a file (models/minilm and data/tweets come from scripts/setup.sh)")
    if 1.0 not in args.multipliers:
        args.multipliers.append(1.0)  # the rule itself is always one of the points
    args.multipliers.sort()
    cpu = cpu_info()
    print(cpu_line(cpu), flush=True)
    lr, distill, size = rule_rates(args.config_path)
    print(f"the rule for {size}: learning rate {lr:.2g}, self-distillation {distill:.2g}", flush=True)
    out = output_dir(args.out_dir, "--out_dir").resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    runs = []
    for m in args.multipliers:
        for seed in args.seeds:
            runs.append(kept_fastbert_run(out / "runs", tag_of(m, seed), [
                PY, "run_fastbert.py", "--pretrained_model_path", args.pretrained_model_path,
                "--config_path", args.config_path, "--vocab_path", args.vocab_path,
                "--train_path", args.data_dir / "train.tsv", "--dev_path", args.data_dir / "dev.tsv",
                "--test_path", args.data_dir / "test.tsv", "--train_samples", args.labels,
                "--dev_samples", args.dev_samples, "--test_samples", args.test_samples,
                "--epochs_num", args.epochs_num, "--distill_epochs_num", args.distill_epochs_num,
                "--seq_length", args.seq_length, "--learning_rate", f"{m * lr:.6g}",
                "--distill_learning_rate", f"{m * distill:.6g}", "--seed", seed, "--speed", "0",
                "--timing_samples", 0, "--device", "cpu", "--no_plot", "--no_progress"],
                log, multiplier=m, seed=seed))
            print(f"x{m:g} seed {seed}: dev {runs[-1]['dev_accuracy']:.4f}, test {runs[-1]['teacher_accuracy']:.4f}", flush=True)
    lines, best = table(runs, args.multipliers, lr)
    verdict = ("the rule's rate is the best on dev" if best == 1.0 else
               f"x{best:g} ({best * lr:.2g}) is better on dev than the rule")
    head = (f"{args.pretrained_model_path.name} ({size}) on {args.data_dir.name}, {args.labels} training rows, "
            f"{args.epochs_num} + {args.distill_epochs_num} epochs, seq {args.seq_length}, seeds "
            f"{' '.join(map(str, args.seeds))}; self-distillation at {distill / lr:g}x each rate" + (" [--quick]" if args.quick else ""))
    text = "\n".join([head, "", *lines, "", f"best on dev: {verdict}", cpu_line(cpu)])
    print(text)
    write_text(out / "table.md", text + "\n")
    write_text(args.results.with_suffix(".md"), text + "\n")
    write_json(args.results.with_suffix(".json"), {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                                  "rule": {"learning_rate": lr, "distill_learning_rate": distill, "size": size},
                                                  "runs": runs, "best_multiplier": best, "cpu": cpu})
    return 0


if __name__ == "__main__":
    sys.exit(main())
