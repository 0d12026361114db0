"""Early-exit policies, one file each, registered by explicit import (adding one: a file plus a line here).

    from uer.fastbert.policies import POLICIES, resolve
    POLICIES.names()                          # ['confidence', 'entropy', 'patience', 'topk_entropy']
    policy = resolve("patience")              # or resolve({"name": "topk_entropy", "k": 3})

A duplicate name is an error; an unknown one is an error that lists the valid ones.
"""
from __future__ import annotations

from typing import Any

from uer.fastbert.policies.base import ExitPolicy, PolicyState, normalized_entropy, shannon_entropy
from uer.fastbert.policies.registry import POLICIES
from uer.fastbert.policies import confidence, entropy, patience, topk_entropy  # noqa: F401

DEFAULT = "entropy"


def resolve(policy: str | dict[str, Any] | ExitPolicy) -> ExitPolicy:
    """A policy object from its name, a ``{"name": ..., field: value}`` mapping, or the object itself."""
    if isinstance(policy, ExitPolicy):
        return policy
    if isinstance(policy, str):  # by name: built once (at batch 1 the build cost more than a layer's exit test)
        if policy not in _BY_NAME:
            _BY_NAME[policy] = POLICIES.build(policy, at="policy")
        return _BY_NAME[policy]
    return POLICIES.build(policy, at="policy")


_BY_NAME: dict[str, ExitPolicy] = {}


__all__ = ["POLICIES", "DEFAULT", "ExitPolicy", "PolicyState", "normalized_entropy", "shannon_entropy", "resolve"]
