"""``python -m uer convert hf2uer HF_DIR OUT.pt`` | ``python -m uer convert uer2hf MODEL.pt HF_DIR``.

    python -m uer convert hf2uer roberta-dir/ out/model.pt      # + out/model.yaml, out/tokenizer.json
    python -m uer convert uer2hf out/model.pt hf-out/             # config.json, model.safetensors, tokenizer

The architecture (BERT, RoBERTa / XLM-R, ALBERT, ELECTRA, GPT-2) comes from config.json on the way
in and from the checkpoint on the way out (``--arch`` to choose). A run_fastbert.py / run_ner.py
model goes out with its classifier / tagger head.
"""
from __future__ import annotations

import argparse

from uer.utils.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import types

    from uer.exit.cli import OneLineParser

    parser.error = types.MethodType(OneLineParser.error, parser)  # a bad flag is one line, not the usage block
    from uer.convert.archs import ARCHS

    sub = parser.add_subparsers(dest="direction", required=True, parser_class=OneLineParser)
    a = sub.add_parser("hf2uer", help="a HuggingFace folder -> a uer checkpoint (+ its config YAML and tokenizer files)")
    a.add_argument("hf_dir", metavar="HF_DIR", help="folder with config.json, model.safetensors / pytorch_model.bin and the tokenizer's files")
    a.add_argument("out", metavar="OUT", help="uer checkpoint to write; OUT.yaml and the tokenizer's files go beside it")
    a.add_argument("--config", default=None, help="a uer config the weights must fit, instead of one made from config.json")
    a.add_argument("--arch", choices=sorted(ARCHS), default=None, help="default: config.json's model_type")
    a.add_argument("--force", action="store_true", help="replace an existing OUT and OUT.yaml")
    b = sub.add_parser("uer2hf", help="a uer checkpoint -> a HuggingFace folder")
    b.add_argument("model", metavar="MODEL", help="uer checkpoint (pre-trained, converted, or written by run_fastbert.py / run_ner.py)")
    b.add_argument("hf_dir", metavar="HF_DIR", help="folder to write (created if needed)")
    b.add_argument("--arch", choices=sorted(ARCHS), default=None,
                   help="default: the architecture the model came from, else the one its config fits")
    b.add_argument("--vocab_path", default=None,
                   help="the tokenizer's file (vocab.txt / spiece.model / tokenizer.json); default: beside MODEL, else the config's")
    b.add_argument("--force", action="store_true", help="replace files in HF_DIR that another conversion wrote")


def command(args: argparse.Namespace) -> int:
    from uer.checkpoint import CheckpointError
    from uer.config import ConfigError
    from uer.convert.archs import ConversionError
    from uer.convert.files import convert_hf_to_uer, convert_uer_to_hf
    from uer.utils.cli import input_dir, input_file

    try:
        if args.direction == "hf2uer":
            input_dir(args.hf_dir, "HF_DIR")
            if args.config is not None:
                input_file(args.config, "--config")
            report = convert_hf_to_uer(args.hf_dir, args.out, args.config, args.arch, force=args.force, what="OUT")
        else:
            input_file(args.model, "MODEL")
            if args.vocab_path is not None:
                input_file(args.vocab_path, "--vocab_path")
            report = convert_uer_to_hf(args.model, args.hf_dir, args.vocab_path, arch=args.arch, force=args.force, what="HF_DIR")
    except (ConversionError, ConfigError, CheckpointError) as exc:
        raise UsageError(str(exc)) from None
    print("\n".join(report.lines()))
    print(f"wrote {args.out if args.direction == 'hf2uer' else args.hf_dir}")
    return 0
