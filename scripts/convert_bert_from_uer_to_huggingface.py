"""uer checkpoint -> HuggingFace folder (config.json, model.safetensors, vocab.txt).

Kept for existing scripts; ``python -m uer convert uer2hf MODEL.pt HF_DIR`` is the same conversion for
every architecture (and exports run_fastbert.py / run_ner.py models with their heads).

    python scripts/convert_bert_from_uer_to_huggingface.py --input_model_path models/minilm/model.pt \
        --output_model_path hf_out/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uer.checkpoint import CheckpointError
from uer.config import ConfigError
from uer.convert import ConversionError, convert_uer_to_hf_dir
from uer.utils.cli import output_dir, run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.splitlines()[0])
    parser.add_argument("--input_model_path", required=True, help="uer checkpoint")
    parser.add_argument("--output_model_path", required=True, help="folder to write (created if needed)")
    parser.add_argument("--config_path", default=None, help="uer config; default: the one inside the checkpoint")
    parser.add_argument("--vocab_path", default=None, help="default: vocab.txt beside the checkpoint, else the config's tokenizer.vocab_path")
    parser.add_argument("--force", action="store_true",
                        help="replace config.json / model.safetensors / vocab.txt in the folder that another conversion wrote")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad flag (argparse printed why) or --help
        return int(exc.code or 0)

    def body() -> int:
        output_dir(args.output_model_path, "--output_model_path")
        report = convert_uer_to_hf_dir(args.input_model_path, args.output_model_path, args.vocab_path, args.config_path,
                                       force=args.force)
        print("\n".join(report.lines()))
        print(f"wrote {args.output_model_path}")
        return 0

    return run_main("convert_bert_from_uer_to_huggingface.py", body, (ConversionError, ConfigError, CheckpointError))


if __name__ == "__main__":
    sys.exit(main())
