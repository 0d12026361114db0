from uer.exit.policies.base import ExitPolicy
from uer.registry import Registry

POLICIES: Registry[ExitPolicy] = Registry("exit-policy name")
