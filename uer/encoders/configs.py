"""Every encoder's name and typed config (torch-free: a config is checked without building
anything). The module named in ``declare`` registers the class that implements it.

Every config extends :class:`EncoderConfig`: ``hidden_size`` is the width the builder gives the
embedding's output (and, through ``emb_size: null``, the embedding itself), ``layers_num`` the
number of steps FastBERT's branches follow.
"""
from dataclasses import dataclass
from typing import Literal

from uer.choices import Activation
from uer.encoders.registry import ENCODERS, EncoderConfig  # noqa: F401  (EncoderConfig: re-exported)
from uer.schema import ConfigError, Epsilon, Probability, Size


@ENCODERS.declare("transformer", module="uer.encoders.transformer")
@dataclass(frozen=True)
class TransformerConfig(EncoderConfig):
    heads_num: Size = 12
    feedforward_size: Size = 3072
    dropout: Probability = 0.1
    attention_dropout: Probability = 0.1
    act: Activation = "gelu"
    mask: Literal["fully_visible", "causal", "causal_with_prefix"] = "fully_visible"
    layernorm_positioning: Literal["post", "pre"] = "post"
    layernorm: Literal["normal", "rms"] = "normal"
    layernorm_eps: Epsilon = 1e-12
    parameter_sharing: bool = False  # ALBERT: one layer's weights reused layers_num times
    bias: bool = True
    # ``alibi`` (Press et al. 2022; MosaicBERT): every head adds -slope * |i - j| to its attention
    # scores, a built-in preference for near tokens. Small BERTs trained from scratch with only learned
    # positions sit on a frequent-token plateau for thousands of steps; ALiBi leaves it at once
    # (bench/pretrain_defaults.py). Kept beside the ``pos`` embedding: ALiBi is symmetric, so it gives
    # distance but not direction.
    position_bias: Literal["none", "alibi"] = "none"

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads_num:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by heads_num {self.heads_num}")


@dataclass(frozen=True)
class RnnConfig(EncoderConfig):
    hidden_size: Size = 768  # bidirectional: hidden_size // 2 per direction, concatenated
    layers_num: Size = 2
    dropout: Probability = 0.1  # on the input of every layer but the first


@dataclass(frozen=True)
class BiRnnConfig(RnnConfig):
    def __post_init__(self) -> None:
        if self.hidden_size % 2:
            raise ConfigError(f"a bidirectional encoder needs an even hidden_size (hidden_size // 2 per direction), got {self.hidden_size}")


for _name in ("rnn", "lstm", "gru"):
    ENCODERS.declare(_name, module="uer.encoders.rnn")(RnnConfig)
for _name in ("birnn", "bilstm", "bigru"):
    ENCODERS.declare(_name, module="uer.encoders.rnn")(BiRnnConfig)


@ENCODERS.declare("cnn", module="uer.encoders.cnn")
@dataclass(frozen=True)
class CnnConfig(EncoderConfig):
    layers_num: Size = 6
    kernel_size: Size = 3
    dropout: Probability = 0.1
    act: Activation = "relu"
    layernorm_eps: Epsilon = 1e-12


@ENCODERS.declare("gatedcnn", module="uer.encoders.cnn")
@dataclass(frozen=True)
class GatedCnnConfig(EncoderConfig):
    layers_num: Size = 6  # residual blocks
    block_size: Size = 2  # gated convolutions per residual block
    kernel_size: Size = 4
    dropout: Probability = 0.1
