"""The embedding registry, torch-free: names and configs are declared in :mod:`uer.embeddings.configs`."""
from uer.registry import Registry

# A component maps (src, seg) -> (B, T, emb_size); the composite sums them.
EMBEDDINGS: Registry = Registry("embedding", base="uer.embeddings.base:EmbeddingComponent")
