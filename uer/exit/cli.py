"""The flags both early-exit commands take (UER's names), once; each command adds its own.

    p = OneLineParser(prog="run_ner.py", ...)
    add_run_flags(p, section="ner", runtimes=runtime_names(kind="token"))
    opts = NerOptions(**run_options(args, section="ner"), label2id_path=..., window=...)
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from uer.choices import PRECISIONS
from uer.config import MIN_SEQ_LENGTH
from uer.utils.cli import non_negative_int, parse_speeds, positive_float, positive_int, probability


TRAINING_FLAGS = ("epochs_num", "distill_epochs_num", "batch_size", "seq_length", "learning_rate",
                  "distill_learning_rate", "seed", "report_steps")  # -> the config's task section


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``prog: error: ...``), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seq_length(text: str) -> int:
    value = positive_int(text)
    if value < MIN_SEQ_LENGTH:
        raise argparse.ArgumentTypeError(f"expected an integer >= {MIN_SEQ_LENGTH} ([CLS] text [SEP] and room for text), got {text!r}")
    return value


def add_run_flags(p: argparse.ArgumentParser, section: str, runtimes: Sequence[str], policies: Sequence[str],
                  default_speeds: tuple[float, ...], speed_help: str) -> tuple[argparse._ArgumentGroup, ...]:
    """Model/data, training (defaults: the config's ``section``) and sweep/output flags; returns
    the three groups so a command can add its own flags beside them."""
    g = p.add_argument_group("model and data (UER's flags)")
    g.add_argument("--pretrained_model_path", help="uer checkpoint whose embedding+encoder start the backbone")
    g.add_argument("--config_path", help="model YAML (default: the pre-trained checkpoint's config)")
    g.add_argument("--train_path", required=True)
    g.add_argument("--dev_path", required=True)
    g.add_argument("--test_path", help="evaluated at every --speed")
    h = p.add_argument_group(f"training (UER's flags; default: the config's {section} section)")
    h.add_argument("--epochs_num", type=positive_int, help="stage 1 (fine-tuning) epochs")
    h.add_argument("--distill_epochs_num", type=non_negative_int, help="stage 2 (self-distillation) epochs; 0 skips it")
    h.add_argument("--batch_size", type=positive_int)
    h.add_argument("--seq_length", type=seq_length, help="tokens per row; at most the config's position table")
    h.add_argument("--learning_rate", type=positive_float, help="stage 1")
    h.add_argument("--distill_learning_rate", type=positive_float, help="stage 2")
    h.add_argument("--seed", type=int)
    h.add_argument("--report_steps", type=positive_int)
    h.add_argument("--branch_size", type=positive_int, help="width of each exit branch (target.branch_size)")
    h.add_argument("--dropout", type=probability, help="dropout in the exit branches (target.dropout, default 0.1)")
    h.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    h.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="training arithmetic: bf16 autocast (CPU with bf16 units, CUDA) or fp16 with a grad scaler (CUDA)")
    h.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    h.add_argument("--deterministic", action="store_true", help="deterministic algorithms: same flags and --threads, same bits")
    e = p.add_argument_group("early exit, sweep and outputs")
    e.add_argument("--speed", type=parse_speeds, default=default_speeds, help=speed_help)
    e.add_argument("--exit_policy", choices=policies, default="entropy",
                   help="the rule that decides a row may leave; --speed is its threshold (default entropy)")
    e.add_argument("--runtime", choices=runtimes, default="auto",
                   help="inference engine; auto: the fastest on this machine, measured when the model is loaded")
    e.add_argument("--report_path", help="JSON report (default: beside the model)")
    e.add_argument("--skip_malformed", action="store_true", help="skip malformed rows and count them in the report (default: error)")
    e.add_argument("--train_samples", type=non_negative_int, default=0, help="train on a seeded random subset of this many rows (0: all)")
    e.add_argument("--dev_samples", type=non_negative_int, default=0, help="evaluate each epoch on a seeded random subset of dev (0: all)")
    e.add_argument("--test_samples", type=non_negative_int, default=0, help="sweep a seeded random subset of the test set (0: all)")
    e.add_argument("--timing_samples", type=non_negative_int, default=256, help="test rows timed for the wall-clock speed-ups (0: none)")
    e.add_argument("--timing_batch_size", type=positive_int, default=32, help="batch size of the batched wall-clock measurement")
    e.add_argument("--no_plot", action="store_true", help="no score vs speed-up plot")
    e.add_argument("--no_progress", action="store_true", help="no progress bars")
    return g, h, e


def run_options(args: argparse.Namespace, section: str, target_flags: Sequence[str] = ("branch_size", "dropout")) -> dict[str, Any]:
    """The :class:`uer.exit.pipeline.RunOptions` fields from the parsed flags; training flags become
    overrides of the config's ``section``, ``target_flags`` overrides of the target."""
    overrides = [(f"{section}.{k}", getattr(args, k)) for k in TRAINING_FLAGS if getattr(args, k) is not None]
    overrides += [(f"target.{k}", getattr(args, k)) for k in target_flags if getattr(args, k) is not None]
    return dict(
        config_path=args.config_path, pretrained_model_path=args.pretrained_model_path, vocab_path=args.vocab_path,
        train_path=args.train_path, dev_path=args.dev_path, test_path=args.test_path,
        output_model_path=args.output_model_path, report_path=args.report_path, speeds=args.speed,
        skip_malformed=args.skip_malformed, train_samples=args.train_samples, dev_samples=args.dev_samples,
        test_samples=args.test_samples, timing_samples=args.timing_samples, timing_batch_size=args.timing_batch_size,
        runtime=args.runtime, progress=not args.no_progress, plot=not args.no_plot, config_overrides=tuple(overrides),
        device=args.device, precision=args.precision, deterministic=args.deterministic,
        exit_policy=args.exit_policy or "entropy",  # unset: run_fastbert.py's default follows --task (it fills it in first)
    )
