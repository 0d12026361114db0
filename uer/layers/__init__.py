"""Leaf modules with plain int/float arguments. No registry here: components compose these."""
from uer.layers.attention import MultiHeadAttention
from uer.layers.feed_forward import FeedForward
from uer.layers.norms import make_norm
from uer.layers.activations import ACTIVATIONS, activation
from uer.layers.transformer_layer import TransformerLayer

__all__ = ["MultiHeadAttention", "FeedForward", "make_norm", "ACTIVATIONS", "activation", "TransformerLayer"]
