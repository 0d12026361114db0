from torch import nn

from uer.registry import Registry

# A subencoder maps token ids (B, T) -> (B, T, emb_size) from the characters of each token.
SUBENCODERS: Registry[nn.Module] = Registry("subencoder")
