"""HuggingFace BERT folder or weights file -> uer checkpoint, against a given uer config.

Kept for existing scripts; ``python -m uer convert hf2uer HF_DIR OUT.pt`` does every architecture
(BERT, RoBERTa / XLM-R, ALBERT, ELECTRA, GPT-2) and makes the uer config from config.json.

    python scripts/convert_bert_from_huggingface_to_uer.py --input_model_path hf_dir/ \
        --output_model_path models/minilm/model.pt --config_path models/bert/minilm_l6_h384.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uer.checkpoint import CheckpointError
from uer.config import ConfigError
from uer.convert import ConversionError, convert_hf_dir_to_uer
from uer.utils.cli import input_file, output_file, run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.splitlines()[0])
    parser.add_argument("--input_model_path", required=True, help="folder with model.safetensors / pytorch_model.bin (+ config.json, vocab.txt), or the weights file")
    parser.add_argument("--output_model_path", required=True,
                        help="uer checkpoint to write; vocab.txt is copied beside it (an existing, different vocab.txt is kept: error)")
    parser.add_argument("--config_path", required=True, help="uer model config (YAML) the weights must fit")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad flag (argparse printed why) or --help
        return int(exc.code or 0)

    def body() -> int:
        output_file(args.output_model_path, "--output_model_path")
        input_file(args.config_path, "--config_path")
        report = convert_hf_dir_to_uer(args.input_model_path, args.config_path, args.output_model_path)
        print("\n".join(report.lines()))
        print(f"wrote {args.output_model_path}")
        return 0

    return run_main("convert_bert_from_huggingface_to_uer.py", body, (ConversionError, ConfigError, CheckpointError))


if __name__ == "__main__":
    sys.exit(main())
