"""``--device`` and ``--precision``, checked once for every command line."""
from __future__ import annotations

from uer.utils.cli import UsageError


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None, precision: str = "fp32"):
    """``None`` -> cuda if available else cpu; anything this machine cannot run is a UsageError
    naming the flag (``--device cuda`` on a CPU-only torch, ``--device foo``, ``mps``, fp16 on CPU)."""
    import torch

    device = device or default_device()
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device}: only cpu and cuda[:N] are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if precision == "fp16" and dev.type != "cuda":
        raise UsageError("--precision fp16 needs CUDA (it relies on a grad scaler); use --precision bf16 on the CPU")
    return dev
