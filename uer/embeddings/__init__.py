from uer.embeddings.registry import EMBEDDINGS
from uer.embeddings import word, position, segment, sinusoidal  # noqa: F401
from uer.embeddings.embedding import Embedding

__all__ = ["EMBEDDINGS", "Embedding"]
