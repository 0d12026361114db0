"""Weights from other toolkits: HuggingFace BERT, RoBERTa / XLM-R, ALBERT, ELECTRA, GPT-2 <-> uer
(``python -m uer convert hf2uer`` / ``uer2hf``)."""
from uer.convert.archs import ARCHS, ConversionError
from uer.convert.files import convert_hf_to_uer, convert_uer_to_hf
from uer.convert.hf import ConversionReport
from uer.convert.hf_bert import convert_hf_dir_to_uer, convert_minilm, convert_uer_to_hf_dir, hf_to_uer, uer_to_hf

__all__ = [
    "ARCHS", "ConversionError", "ConversionReport", "convert_hf_dir_to_uer", "convert_hf_to_uer", "convert_minilm",
    "convert_uer_to_hf", "convert_uer_to_hf_dir", "hf_to_uer", "uer_to_hf",
]
