"""Weights from other toolkits: HuggingFace BERT <-> uer."""
from uer.convert.hf_bert import (
    ConversionError, ConversionReport, convert_hf_dir_to_uer, convert_minilm, convert_uer_to_hf_dir, hf_to_uer, uer_to_hf,
)

__all__ = [
    "ConversionError", "ConversionReport", "convert_hf_dir_to_uer", "convert_minilm", "convert_uer_to_hf_dir",
    "hf_to_uer", "uer_to_hf",
]
