"""What every command line shares: one-line errors for user mistakes, checked paths, typed flags.

A user's mistake (a bad flag value, a missing file, a directory where a file belongs, an output
that would destroy something) is a ``UsageError`` — or one of the project's other ``ValueError``
subclasses (``ConfigError``, ``TsvError``, ``CheckpointError`` ...) — and ``run_main`` turns it into
``prog: error: <message>`` and exit status 2, never a traceback. Ctrl-C becomes exit 130 with the
message the command registered (e.g. where its last checkpoint is).

Paths are checked *before* any work starts, so a run never trains for an hour and then fails to
write its result:

    model = output_file(args.output_model_path, "--output_model_path")   # refuses a directory, a trailing '/'
    corpus = input_file(args.corpus_path, "--corpus_path")                # "is a directory" != "does not exist"

``OutputLock`` keeps two runs from writing into the same output at once.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from uer.utils.paths import resolve_path


class UsageError(ValueError):
    """A mistake in what the user gave us; the message names the culprit and what was expected."""


# ---------------------------------------------------------------------------------------------
# flag types for argparse: the error names the flag (argparse adds "argument --x:")


def _number(kind: type, low: float | None, high: float | None, low_open: bool, what: str,
            high_open: bool = False) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse prints the type's name in some messages
    return parse


positive_int = _number(int, 0, None, True, "an integer >= 1")
non_negative_int = _number(int, 0, None, False, "an integer >= 0")
positive_float = _number(float, 0.0, None, True, "a number > 0")
non_negative_float = _number(float, 0.0, None, False, "a number >= 0")
fraction = _number(float, 0.0, 1.0, False, "a number in [0, 1]")
probability = _number(float, 0.0, 1.0, False, "a number in [0, 1)", high_open=True)  # a dropout rate


def parse_speeds(text: str) -> tuple[float, ...]:
    """``0.5``, ``0,0.3,0.6`` or ``0,0.1,...,1`` (an arithmetic progression) -> distinct speeds in [0, 1]."""
    items = [s.strip() for s in text.split(",")]
    if any(not s for s in items):
        raise argparse.ArgumentTypeError(f"--speed {text!r}: an empty item (two commas, or a comma at an end)")
    try:
        if "..." in items:
            if len(items) != 4 or items[2] != "...":
                raise ValueError
            first, second, last = float(items[0]), float(items[1]), float(items[3])
            step = second - first
            if step <= 0:
                raise ValueError
            count = round((last - first) / step)
            speeds = tuple(round(first + i * step, 10) for i in range(count + 1))
        else:
            speeds = tuple(float(s) for s in items)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed {text!r}: expected a number, a list, or a,b,...,z") from None
    if not speeds or any(not 0.0 <= s <= 1.0 for s in speeds):
        raise argparse.ArgumentTypeError(f"--speed {text!r}: every speed must lie in [0, 1]")
    repeated = sorted({f"{s:g}" for s in speeds if speeds.count(s) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"--speed {text!r}: {', '.join(repeated)} listed more than once")
    return speeds


# ---------------------------------------------------------------------------------------------
# paths


def _given(path: str | Path | None, what: str) -> None:
    if path is None or str(path) == "":
        raise UsageError(f"{what}: no path given")


def input_file(path: str | Path, what: str) -> Path:
    """An existing, readable file (resolved like ``resolve_path``); otherwise a UsageError saying why."""
    _given(path, what)
    found = resolve_path(path)
    if found.is_dir():
        raise UsageError(f"{what} {path} is a directory, expected a file")
    if not found.exists():
        raise UsageError(f"{what} {path} does not exist")
    if not os.access(found, os.R_OK):
        raise UsageError(f"{what} {path} is not readable")
    return found


def input_dir(path: str | Path, what: str) -> Path:
    _given(path, what)
    found = resolve_path(path)
    if found.is_file():
        raise UsageError(f"{what} {path} is a file, expected a directory")
    if not found.exists():
        raise UsageError(f"{what} {path} does not exist")
    return found


def _check_parent(parent: Path, what: str, shown: str) -> None:
    """The nearest existing ancestor must be a writable directory (the rest is created later)."""
    probe = parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{what} {shown}: {probe} is a file, so nothing can be written under it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {shown}: {probe} is not writable")


def output_file(path: str | Path, what: str, overwrite: bool = True) -> Path:
    """A path a file can be written to: not a directory, not ending in '/', under a writable directory.

    With ``overwrite=False`` an existing file is an error too. Nothing is created here."""
    _given(path, what)
    shown = str(path)
    if shown.endswith(("/", os.sep)):
        raise UsageError(f"{what} {shown} ends with '/': give a file name, e.g. {shown}model.pt")
    out = Path(path).expanduser()
    if out.is_dir():
        raise UsageError(f"{what} {shown} is a directory, expected a file name")
    if out.exists() and not overwrite:
        raise UsageError(f"{what} {shown} already exists; choose another path or remove it")
    _check_parent(out.parent, what, shown)
    return out


def output_dir(path: str | Path, what: str) -> Path:
    """A directory we may create or write into (existing contents are the caller's business)."""
    _given(path, what)
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{what} {path} is a file, expected a directory")
    _check_parent(out if not out.exists() else out.parent, what, str(path))
    return out


class OutputLock:
    """An exclusive lock on ``<path>.lock`` for the life of a run: a second run into the same
    output fails at once with a UsageError instead of interleaving its files with ours.

    The lock is advisory (``fcntl.flock``) and released by the kernel if the process dies, so a
    crashed run never leaves a stale lock behind. The ``.lock`` file itself is left in place."""

    def __init__(self, path: str | Path, what: str = "output") -> None:
        self.path = Path(f"{path}.lock")
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise UsageError(
                    f"another run is writing {self.what} {str(self.path)[:-5]} right now (lock {self.path}); "
                    "wait for it or choose another path"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# ---------------------------------------------------------------------------------------------
# running a main()

_interrupt_hint: list[str] = []


def on_interrupt(message: str) -> None:
    """What Ctrl-C should tell the user now (e.g. "interrupted at step 120; the last checkpoint is
    at step 100; rerun with --resume"). The latest message wins."""
    _interrupt_hint[:] = [message]


def run_main(prog: str, body: Callable[[], int], extra_errors: Sequence[type[BaseException]] = ()) -> int:
    """Call ``body()``; a user mistake becomes one line on stderr and exit 2, Ctrl-C exit 130.

    ``extra_errors`` are further exception types that carry a complete user-facing message
    (the project's ConfigError, TsvError, CheckpointError ... are ValueErrors and listed by callers).
    Anything else is a bug in uer and keeps its traceback."""
    _interrupt_hint.clear()
    try:
        return body()
    except (UsageError, *extra_errors) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = _interrupt_hint[0] if _interrupt_hint else "interrupted"
        print(f"{prog}: {hint}", file=sys.stderr)
        return 130


def set_deterministic(enabled: bool) -> None:
    """Bit-exact reruns: PyTorch's deterministic algorithms (and the cuBLAS workspace setting they
    need on CUDA). On CPU, results of a reduction can still depend on the number of threads, so
    identical runs must also use the same ``--threads``; with this flag the same threads give the
    same bits run after run, and a resumed run equals the uninterrupted one."""
    if not enabled:
        return
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
