"""HuggingFace BERT folder or weights file -> uer checkpoint.

    python scripts/convert_bert_from_huggingface_to_uer.py --input_model_path hf_dir/ \
        --output_model_path models/minilm/model.pt --config_path models/bert/minilm_l6_h384.yaml
"""
from __future__ import annotations

import argparse
import sys

from uer.checkpoint import CheckpointError
from uer.config import ConfigError
from uer.convert import ConversionError, convert_hf_dir_to_uer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_model_path", required=True, help="folder with model.safetensors / pytorch_model.bin (+ config.json, vocab.txt), or the weights file")
    parser.add_argument("--output_model_path", required=True, help="uer checkpoint to write; vocab.txt is copied beside it")
    parser.add_argument("--config_path", required=True, help="uer model config (YAML) the weights must fit")
    args = parser.parse_args(argv)
    try:
        report = convert_hf_dir_to_uer(args.input_model_path, args.config_path, args.output_model_path)
    except (ConversionError, ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    print(f"wrote {args.output_model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
