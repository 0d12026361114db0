"""Embedding components (word, pos, seg, sinusoidal), summed by :class:`uer.embeddings.embedding.Embedding`.

Importing this package is torch-free: it holds the registry and the declared configs; a
component's module is imported when the builder first instantiates it."""
from uer.embeddings.registry import EMBEDDINGS
from uer.embeddings import configs  # noqa: F401  (declares every name)

__all__ = ["EMBEDDINGS"]
