from torch import nn

from uer.registry import Registry

# A component maps (src, seg) -> (B, T, emb_size); the composite sums them.
EMBEDDINGS: Registry[nn.Module] = Registry("embedding")
