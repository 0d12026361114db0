"""The tokenizer registry. Tokenizers are torch-free, so each one registers itself with its config."""
from uer.registry import Registry
from uer.tokenizers.base import TokenizerConfig

TOKENIZERS: Registry = Registry("tokenizer", base="uer.tokenizers.base:Tokenizer", config_base=TokenizerConfig)
