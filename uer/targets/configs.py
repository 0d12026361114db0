"""Every target's name and typed config (torch-free). The module named in ``declare`` registers
the class that implements it."""
from dataclasses import dataclass
from typing import Literal

from uer.choices import Activation, Pooling
from uer.schema import ConfigError, Epsilon, Probability, Size
from uer.targets.registry import TARGETS


@TARGETS.declare("mlm", module="uer.targets.mlm")
@dataclass(frozen=True)
class MlmConfig:
    act: Activation = "gelu"
    layernorm_eps: Epsilon = 1e-12
    tie_weights: bool = True  # decoder shares the word embedding matrix (the builder ties them)


@TARGETS.declare("nsp", module="uer.targets.nsp")
@dataclass(frozen=True)
class NspConfig:
    pass


@TARGETS.declare("sop", module="uer.targets.sop")
@dataclass(frozen=True)
class SopConfig:
    pass


@TARGETS.declare("lm", module="uer.targets.lm")
@dataclass(frozen=True)
class LmConfig:
    head: Literal["plain", "mlm"] = "plain"  # plain: GPT-2's decoder; mlm: dense -> act -> norm -> decoder
    act: Activation = "gelu"  # mlm head only
    layernorm_eps: Epsilon = 1e-12  # mlm head only
    tie_weights: bool = True  # decoder shares the word embedding matrix (the builder ties them)


@TARGETS.declare("bilm", module="uer.targets.bilm")
@dataclass(frozen=True)
class BilmConfig(LmConfig):
    """As lm's; one head is shared by the two directions."""


@TARGETS.declare("cls", module="uer.targets.cls")
@dataclass(frozen=True)
class ClsConfig:
    pooling: Pooling = "first"


@TARGETS.declare("fastbert", module="uer.targets.fastbert")
@dataclass(frozen=True)
class FastBertTargetConfig:
    branch_size: Size = 128  # the paper's classifier width
    branch_heads_num: Size = 2
    pooling: Literal["first", "mean", "max"] = "first"
    dropout: Probability = 0.1
    # what the branches predict: one label (softmax), a set of labels (a sigmoid per label) or a
    # number (one output, standardised); uer/targets/fastbert.py says how each trains and distils
    task: Literal["classification", "multi_label", "regression"] = "classification"

    def __post_init__(self) -> None:
        if self.branch_size % self.branch_heads_num:
            raise ConfigError(f"branch_size {self.branch_size} is not divisible by branch_heads_num {self.branch_heads_num}")


# Sequence labelling (``uer.tagging.targets`` implements them). Declared here, with every other
# target, so that the core targets package never imports a feature package.
@TARGETS.declare("tagging", module="uer.tagging.targets")
@dataclass(frozen=True)
class TaggingConfig:
    dropout: Probability = 0.1


@TARGETS.declare("token_exit", module="uer.tagging.targets")
@dataclass(frozen=True)
class TokenExitConfig:
    branch_size: Size = 64  # width of each layer's classifier
    dropout: Probability = 0.1
    crf: bool = False  # a linear-chain CRF on the teacher's emissions (uer/tagging/crf.py), trained in stage 1
