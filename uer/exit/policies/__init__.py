"""Early-exit policies, one file each, registered by explicit import (adding one: a file plus a line here).

One rule serves sentence exit (``uer.fastbert``: a row is a sample) and token exit (``uer.tagging``:
a row is a token still in the network)::

    from uer.exit.policies import POLICIES, policy_names, resolve
    policy_names()                            # ('confidence', 'entropy', 'multi_label_entropy', 'patience', ...)
    policy = resolve("patience")              # or resolve({"name": "topk_entropy", "k": 3})

A duplicate name is an error; an unknown one is an error that lists the valid ones.
"""
from __future__ import annotations

from typing import Any

from uer.exit.policies.base import ExitPolicy, PolicyState, normalized_entropy, shannon_entropy
from uer.exit.policies.registry import POLICIES
from uer.exit.policies import confidence, entropy, patience, topk_entropy  # noqa: F401
from uer.exit.policies import multi_label_entropy, regression_patience  # noqa: F401  (sentence exit's other tasks)

DEFAULT = "entropy"
Policy = str | dict[str, Any] | ExitPolicy  # what ``policy=`` takes: a name, a {"name": ...} spec, or the object


def resolve(policy: Policy) -> ExitPolicy:
    """A policy object from its name, a ``{"name": ..., field: value}`` mapping, or the object itself."""
    if isinstance(policy, ExitPolicy):
        return policy
    if isinstance(policy, str):  # by name: built once (at batch 1 the build cost more than a layer's exit test)
        if policy not in _BY_NAME:
            _BY_NAME[policy] = POLICIES.build(policy, at="policy")
        return _BY_NAME[policy]
    return POLICIES.build(policy, at="policy")


_BY_NAME: dict[str, ExitPolicy] = {}


def policy_names(task: str | None = None) -> tuple[str, ...]:
    """The registered policy names (of one ``task``'s outputs: ``classification``, ``multi_label``,
    ``regression``; None: all): the choices of ``--exit_policy`` and of ``policy=`` by name.
    Token exit reads tag distributions: ``policy_names("classification")``."""
    return tuple(n for n in POLICIES.names() if task is None or POLICIES.cls(n).task == task)


__all__ = ["POLICIES", "DEFAULT", "ExitPolicy", "Policy", "PolicyState", "normalized_entropy", "policy_names", "resolve",
           "shannon_entropy"]
