"""The sequence-labelling targets' names and typed configs (torch-free, like ``uer.targets.configs``);
``uer.tagging.targets`` registers the classes that implement them."""
from dataclasses import dataclass

from uer.schema import Probability, Size
from uer.targets.registry import TARGETS


@TARGETS.declare("tagging", module="uer.tagging.targets")
@dataclass(frozen=True)
class TaggingConfig:
    dropout: Probability = 0.1


@TARGETS.declare("token_exit", module="uer.tagging.targets")
@dataclass(frozen=True)
class TokenExitConfig:
    branch_size: Size = 64  # width of each layer's classifier
    dropout: Probability = 0.1
