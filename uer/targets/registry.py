from uer.registry import Registry
from uer.targets.base import Target

TARGETS: Registry[Target] = Registry("target")
