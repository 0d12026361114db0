"""The arguments of the predictors (``FastBertClassifier``, ``NerTagger``), checked once, one way.

A wrong kind of value is a ``TypeError``, a right kind with a bad value a ``ValueError``; each
message names the argument (and, for a text, its index). NumPy scalars are numbers like any other
(``np.float32(0.3)`` is a speed, ``np.int64(1)`` a window); ``bool`` is not a number here.

    texts = check_texts(texts)              # a str is one text; any iterable of items, else TypeError
    speed = check_speed(speed)              # float in [0, 1]
    n = check_int(batch_size, "batch_size", 1)
    rule = check_policy("patience")         # an ExitPolicy from a name, a {"name": ...} mapping or itself
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from uer.exit.policies import POLICIES, ExitPolicy, resolve

Policy = str | Mapping[str, Any] | ExitPolicy


def check_path(path: object, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def check_speed(speed: object) -> float:
    """A real number in [0, 1] (not a string, None or a bool)."""
    if isinstance(speed, bool) or not isinstance(speed, numbers.Real):
        raise TypeError(f"speed must be a number in [0, 1], got {type(speed).__name__} {speed!r}")
    if not 0.0 <= float(speed) <= 1.0:  # also refuses nan
        raise ValueError(f"speed must lie in [0, 1], got {speed}")
    return float(speed)


def check_int(value: object, name: str, minimum: int) -> int:
    """An integer >= ``minimum`` (a batch size, a window; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_policy(policy: object) -> ExitPolicy:
    """A name, a ``{"name": ..., field: value}`` mapping (what a checkpoint stores) or a policy object."""
    if isinstance(policy, ExitPolicy):
        return policy
    if isinstance(policy, str):
        if policy not in POLICIES.names():
            raise ValueError(f"policy {policy!r}: expected one of {', '.join(POLICIES.names())}")
        return resolve(policy)
    if isinstance(policy, Mapping):
        return resolve(dict(policy))  # an unknown name or field: a ConfigError (a ValueError) naming it
    raise TypeError(f"policy must be a str (one of {', '.join(POLICIES.names())}), a {{'name': ...}} mapping "
                    f"or an ExitPolicy; got {type(policy).__name__}")


def policy_spec(policy: Policy) -> dict[str, Any]:
    """The canonical ``{"name": ..., field: value}`` of a policy: plain data, equal for equal rules
    however they were given (``"topk_entropy"`` == ``{"name": "topk_entropy", "k": 2}``)."""
    rule = check_policy(policy)
    for name in POLICIES.names():
        if type(rule) is POLICIES.cls(name):
            return {"name": name, **asdict(rule.cfg)}
    raise ValueError(f"policy {type(rule).__name__} is not registered in uer's exit policies")


def check_texts(texts: object, items: str = "str") -> list[Any]:
    """One ``str`` -> a list of it (never its characters); any other iterable -> its items as a list
    (each item is the caller's to check, by index); bytes and non-iterables are a TypeError."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of {items}, got {type(texts).__name__}")
    return list(texts)


def check_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} is {type(value).__name__}, expected str")
    return value
