"""The subencoder registry, torch-free: names and configs are declared in :mod:`uer.subencoders.configs`."""
from uer.registry import Registry

# A subencoder maps token ids (B, T) -> (B, T, emb_size) from the characters of each token.
SUBENCODERS: Registry = Registry("subencoder", base="uer.subencoders.chars:Subencoder")
