"""``--device`` and ``--precision``, checked once for every command line."""
from __future__ import annotations

from uer.utils.cli import UsageError


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: object, name: str = "device"):
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` this machine has -> a ``torch.device``;
    anything else is one ValueError naming ``name`` (torch's own is an AssertionError from deep
    inside ``Module.to``), a wrong kind of value a TypeError."""
    import torch

    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name} {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} {device}: only cpu and cuda[:N] are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {device}: CUDA is not available on this machine (torch {torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def resolve_device(device: str | None, precision: str = "fp32"):
    """``None`` -> cuda if available else cpu; anything this machine cannot run is a UsageError
    naming the flag (``--device cuda`` on a CPU-only torch, ``--device foo``, ``mps``, fp16 on CPU)."""
    try:
        dev = check_device(device or default_device(), "--device")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if precision == "fp16" and dev.type != "cuda":
        raise UsageError("--precision fp16 needs CUDA (it relies on a grad scaler); use --precision bf16 on the CPU")
    return dev
