"""Does pre-training pay off? The few-label protocol (bench, not a test).

    python bench/pretrain_quality.py                 # the full protocol (hours of CPU; see below)
    flock /tmp/uer-bench.lock python bench/pretrain_quality.py --quick    # a few minutes: shows it works

A small BERT (default models/bert/mini_alibi.yaml: ALiBi, the recipe for pre-training from scratch)
is pre-trained on People's Daily + the *training* reviews (dev and test reviews never reach
pre-training), then FastBERT is trained on the Chinese reviews from that checkpoint and from
random weights, with the same flags, for every label budget and seed:

1. ``corpora/build_zh.py``: data/corpora/zh_news_reviews.txt and data/reviews_zh/{train,dev,test}.tsv.
2. ``preprocess.py --data_processor mlm`` (the recommended path for small budgets: no NSP).
3. ``pretrain.py`` with the ``mlm`` target alone and ``uer.recipe``'s schedule for the config's size
   and ``--total_steps`` (passed as explicit flags, so the run is the same whether or not
   pretrain.py applies the recipe itself); pretrain.py starts the MLM bias at the corpus' log
   unigram prior (its default ``--mlm_bias_init prior``).
4. ``run_fastbert.py`` for labels in ``--labels`` (a seeded subset of the training reviews; ``all``
   = every one) x seeds in ``--seeds`` x {pre-trained, random init}; the subset and the seed are
   the same for both backbones. Each report has the teacher's test accuracy (speed 0) and the
   FLOPs speed-up at the largest speed whose test accuracy is within 1 point of the teacher.

The table (mean and standard deviation over the seeds) and the goal lines (pre-trained beats
random by >= 5 points at 500 and 2,000 labels, >= 2 points with all labels) go to stdout,
``<out_dir>/table.md`` and ``<out_dir>/results.json``. Every command is printed and logged to
``<out_dir>/commands.log``; an interrupted run resumes (finished FastBERT runs, whose reports
exist, are not run again; pre-training continues from its ``.resume`` state).

``--quick``: BERT-tiny with ALiBi (models/bert/tiny_alibi.yaml), 150 pre-training steps at seq 64, 200 and 500 labels, one seed, one epoch
of each FastBERT stage: minutes, not hours; its numbers say nothing about the goals.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PY, ROOT, budget_table, kept_fastbert_run, label_budgets, sh, write_json, write_text  # noqa: E402
from uer.choices import SCAFFOLD_CHOICES  # noqa: E402
from uer.recipe import default_schedule  # noqa: E402
from uer.utils.cli import positive_float, run_main  # noqa: E402

GOALS = {"500": 5.0, "2000": 5.0, "all": 2.0}  # points of test accuracy, pre-trained minus random
BACKBONES = ("pre-trained", "random init")


def model_sizes(config_path: str) -> tuple[int, int, str]:
    from uer.config import load_config

    enc = load_config(ROOT / config_path).encoder
    return enc.cfg.hidden_size, enc.cfg.layers_num, enc.cfg.layernorm_positioning


def scaffold_used(model: Path) -> str:
    """Whether pretrain.py held uer.scaffold's position scaffold: the checkpoint records it."""
    from uer.checkpoint import read_checkpoint

    return read_checkpoint(model)["extra"].get("position_scaffold", "not recorded (an older checkpoint)")


def fastbert_rates(args, runs: list[dict]) -> str:
    """The fine-tuning rate(s) the runs trained with, as each run's model config recorded them."""
    rates = sorted({r["learning_rate"] for r in runs if r.get("learning_rate") is not None})
    source = "given" if args.fastbert_learning_rate is not None else "run_fastbert.py's own: uer.recipe's for the size"
    return f"{' / '.join(f'{x:g}' for x in rates) or 'not recorded (older runs)'} ({source})"


def pretrain(args, out: Path, log: Path) -> Path:
    seq = args.seq_length
    dataset = out / f"dataset_zh_mlm_{seq}"
    model = out / "pretrained" / "model.pt"
    if model.is_file():
        print(f"pre-trained model {model} exists: kept (delete it to pre-train again)")
        return model
    if not (dataset / "meta.json").is_file():
        sh([PY, "preprocess.py", "--corpus_path", "data/corpora/zh_news_reviews.txt", "--data_processor", "mlm",
            "--vocab_path", args.vocab_path, "--dataset_path", dataset, "--seq_length", seq,
            "--processes_num", args.processes_num, "--no_progress"], log)
    hidden, layers, positioning = model_sizes(args.config_path)
    schedule = default_schedule(hidden, layers, args.total_steps, layernorm_positioning=positioning,
                                learning_rate=args.learning_rate)
    print(schedule.explanation)
    resume = Path(f"{model}.resume").exists()
    sh([PY, "pretrain.py", "--dataset_path", dataset, "--config_path", args.config_path, "--set", "target.components=[mlm]",
        "--vocab_path", args.vocab_path, "--output_model_path", model, "--total_steps", args.total_steps,
        "--batch_size", args.batch_size, "--learning_rate", schedule.learning_rate, "--warmup", schedule.warmup,
        "--scheduler", schedule.scheduler, "--report_steps", max(1, args.total_steps // 20),
        "--save_checkpoint_steps", max(1, args.total_steps // 5), "--seed", args.pretrain_seed, "--device", "cpu",
        *(["--position_scaffold", args.position_scaffold] if args.position_scaffold else []),
        "--no_progress", *(["--resume"] if resume else [])], log)
    return model


def fastbert_run(args, out: Path, log: Path, backbone: str, labels: str, seed: int, model: Path) -> dict:
    tag = f"{'pretrained' if backbone == 'pre-trained' else 'random'}_{labels}_seed{seed}"
    init = ["--pretrained_model_path", model] if backbone == "pre-trained" else []
    return kept_fastbert_run(out / "runs", tag, [
        PY, "run_fastbert.py", *init, "--config_path", args.config_path, "--vocab_path", args.vocab_path,
        "--train_path", "data/reviews_zh/train.tsv", "--dev_path", "data/reviews_zh/dev.tsv",
        "--test_path", "data/reviews_zh/test.tsv",
        "--train_samples", 0 if labels == "all" else labels, "--dev_samples", args.dev_samples,
        "--epochs_num", args.epochs_num, "--distill_epochs_num", args.distill_epochs_num,
        "--batch_size", 32, "--seq_length", args.seq_length,
        *(["--learning_rate", args.fastbert_learning_rate] if args.fastbert_learning_rate is not None else []),
        "--seed", seed, "--speed", "0,0.1,...,1", "--timing_samples", args.timing_samples,
        "--precision", args.fastbert_precision, "--device", "cpu", "--no_progress"],
        log, backbone=backbone, labels=labels, seed=seed)


def summarise(runs: list[dict], label_sets: list[str], seeds: list[int]) -> tuple[list[str], dict]:
    """The table, then per budget the gain of pre-training (mean over seeds) against its goal."""
    lines, means = budget_table(runs, label_sets, BACKBONES)
    lines.append("")
    goals = {}
    for labels in label_sets:
        gain = means[labels, "pre-trained"][0] - means[labels, "random init"][0]
        need = GOALS.get(labels)
        if need is None:
            lines.append(f"labels {labels}: pre-trained - random = {gain:+.2f} points (no goal at this budget)")
            continue
        goals[labels] = {"gain_points": gain, "goal_points": need, "met": gain >= need}
        lines.append(f"goal, {labels} labels: pre-trained beats random by >= {need:g} points: {gain:+.2f} -> "
                     f"{'met' if gain >= need else 'not met'}")
    if len(seeds) < 3:
        lines.append(f"(only {len(seeds)} seed(s): the protocol asks for 3)")
    return lines, goals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="minutes: tiny sizes (see above); flags given explicitly still win")
    p.add_argument("--config_path")
    p.add_argument("--vocab_path", default="models/google_zh_vocab.txt")
    p.add_argument("--total_steps", type=int, help="pre-training steps (default 6000; quick 150)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seq_length", type=int, help="pre-training and FastBERT (default 128; quick 64)")
    p.add_argument("--learning_rate", type=float, help="pre-training peak (default: uer.recipe's for the size)")
    p.add_argument("--labels", nargs="+", type=label_budgets, help="label budgets: numbers or 'all' (default 500 2000 all; quick 200 500)")
    p.add_argument("--seeds", nargs="+", type=int, help="FastBERT seeds (default 1 2 3; quick 1)")
    p.add_argument("--epochs_num", type=int, help="default 3; quick 1")
    p.add_argument("--distill_epochs_num", type=int, help="default 1; quick 1")
    p.add_argument("--fastbert_learning_rate", type=positive_float,
                   help="the same for both backbones (default: run_fastbert.py's own, uer.recipe's rate for the size)")
    p.add_argument("--dev_samples", type=int, help="per-epoch dev subset (default 0 = all; quick 300)")
    p.add_argument("--timing_samples", type=int, help="default 128; quick 16")
    p.add_argument("--fastbert_precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--processes_num", type=int, default=2)
    p.add_argument("--pretrain_seed", type=int, default=7)
    p.add_argument("--position_scaffold", choices=SCAFFOLD_CHOICES,
                   help="pretrain.py's flag (default: not given, so on wherever the config allows it; uer.scaffold)")
    p.add_argument("--out_dir", help="default out/quality (quick: out/quality_quick)")
    p.add_argument("--skip_build", action="store_true", help="data/ already built")
    args = p.parse_args(argv)
    defaults = dict(config_path="models/bert/mini_alibi.yaml", total_steps=6000, seq_length=128, labels=["500", "2000", "all"],
                    seeds=[1, 2, 3], epochs_num=3, distill_epochs_num=1, dev_samples=0, timing_samples=128,
                    out_dir="out/quality")
    if args.quick:
        defaults.update(config_path="models/bert/tiny_alibi.yaml", total_steps=150, seq_length=64, labels=["200", "500"],
                        seeds=[1], epochs_num=1, dev_samples=300, timing_samples=16, out_dir="out/quality_quick")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return run_main("pretrain_quality.py", lambda: _run(args))


def _run(args) -> int:
    out = ROOT / args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    if not args.skip_build or not (ROOT / "data" / "reviews_zh" / "train.tsv").is_file():
        sh([PY, "corpora/build_zh.py"], log)
    model = pretrain(args, out, log)
    metrics = [json.loads(line) for line in model.with_name(f"{model.stem}.metrics.jsonl").read_text().splitlines()]
    runs = [fastbert_run(args, out, log, backbone, labels, seed, model)
            for labels in args.labels for seed in args.seeds for backbone in BACKBONES]
    lines, goals = summarise(runs, args.labels, args.seeds)
    # a model pre-trained with --dev_dataset_path (bench/pretrain_defaults.py's) also has held-out lines
    train = [m for m in metrics if "mlm_acc" in m]
    held = [m for m in metrics if "dev_mlm_acc" in m]
    heldout = f", held-out {held[-1]['dev_mlm_acc']:.3f}" if held else ""
    head = (f"config {args.config_path}, position scaffold {scaffold_used(model)}, mlm pre-training "
            f"{train[-1]['step']} steps x batch {args.batch_size} x seq "
            f"{args.seq_length} on People's Daily + training reviews (MLM acc {train[0]['mlm_acc']:.3f} -> "
            f"{train[-1]['mlm_acc']:.3f}{heldout}); FastBERT {args.epochs_num} + {args.distill_epochs_num} epochs, lr "
            f"{fastbert_rates(args, runs)}, seeds {' '.join(map(str, args.seeds))}, test = data/reviews_zh/test.tsv"
            + (" [--quick: not the protocol]" if args.quick else ""))
    table = "\n".join([head, "", *lines])
    print(table)
    write_text(out / "table.md", table + "\n")
    write_json(out / "results.json", {"args": vars(args), "pretrain_metrics": metrics, "runs": runs, "goals": goals})
    return 0


if __name__ == "__main__":
    sys.exit(main())
