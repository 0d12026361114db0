"""Every embedding component's name and typed config (torch-free: a config is checked without
building anything). The module named in ``declare`` registers the class that implements it."""
from dataclasses import dataclass

from uer.embeddings.registry import EMBEDDINGS
from uer.schema import Size


@EMBEDDINGS.declare("word", module="uer.embeddings.word")
@dataclass(frozen=True)
class WordConfig:
    pass


@EMBEDDINGS.declare("pos", module="uer.embeddings.position")
@dataclass(frozen=True)
class PositionConfig:
    max_seq_length: Size = 512


@EMBEDDINGS.declare("seg", module="uer.embeddings.segment")
@dataclass(frozen=True)
class SegmentConfig:
    segment_num: Size = 3  # UER ids: 0 = padding, 1 = sentence A, 2 = sentence B


@EMBEDDINGS.declare("sinusoidal", module="uer.embeddings.sinusoidal")
@dataclass(frozen=True)
class SinusoidalConfig:
    max_seq_length: Size = 512
