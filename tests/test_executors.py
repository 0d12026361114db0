"""Every executor of ``TransformerLayer.compute`` and ``Branch.compute`` has the protocol's methods
with the protocol's parameters (names, order, defaults): one meaning per method name."""
from __future__ import annotations

import inspect

import pytest

from uer.exit.flops import BranchCounter, LayerCounter
from uer.fused import PackedExecutor
from uer.layers.executor import Eager, LayerExecutor
from uer.runtime.onnx_graph import GraphWriter, _BranchExecutor
from uer.tagging.inference import _Remaining
from uer.targets.fastbert import BranchExecutor, FrozenBranch, _Modules

LAYER_EXECUTORS = [Eager, PackedExecutor, _Remaining, GraphWriter, LayerCounter]
BRANCH_EXECUTORS = [_Modules, FrozenBranch, _BranchExecutor, BranchCounter]


def protocol_methods(protocol: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(protocol).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def parameters(sig: inspect.Signature) -> list[tuple[str, object]]:
    """(name, default) of every parameter after ``self``."""
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.default) for p in params]


def check(executor: type, protocol: type) -> None:
    for name, sig in protocol_methods(protocol).items():
        method = inspect.getattr_static(executor, name, None)
        assert method is not None, f"{executor.__name__} lacks {protocol.__name__}.{name}"
        got = getattr(executor, name)  # staticmethods come back as plain functions
        assert parameters(inspect.signature(got)) == parameters(sig), f"{executor.__name__}.{name}"


def test_the_protocols_name_their_methods():
    assert set(protocol_methods(LayerExecutor)) == {"linear", "qkv", "attend", "norm"}
    assert set(protocol_methods(BranchExecutor)) == {"linear_in", "linear_pair", "attend_first", "attend", "pool", "tanh"}
    assert "linear" not in protocol_methods(BranchExecutor)  # dropout on the input has its own name


@pytest.mark.parametrize("executor", LAYER_EXECUTORS, ids=lambda c: c.__name__)
def test_layer_executors_conform(executor):
    check(executor, LayerExecutor)


@pytest.mark.parametrize("executor", BRANCH_EXECUTORS, ids=lambda c: c.__name__)
def test_branch_executors_conform(executor):
    check(executor, BranchExecutor)


def test_the_check_can_fail():
    class Drifted:
        def linear(self, module, x, *_, **__):  # what a counter once had
            return x

    with pytest.raises(AssertionError, match="Drifted.linear"):
        check(Drifted, LayerExecutor)
