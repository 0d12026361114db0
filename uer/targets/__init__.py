from uer.targets.registry import TARGETS
from uer.targets.base import Target
from uer.targets import mlm, cls  # noqa: F401
from uer.targets import fastbert  # noqa: F401
from uer.targets import nsp, sop, lm, bilm  # noqa: F401
from uer.tagging import targets as _tagging  # noqa: F401  (registers "tagging", "token_exit")
from uer.targets.composite import CompositeTarget

__all__ = ["TARGETS", "Target", "CompositeTarget"]
