"""Write files so that a crash leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask. Linux shows it in /proc/self/status; elsewhere it can only be read by
    setting it, so the set-and-restore is serialised against other threads doing the same here."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode the written file gets: a replaced file keeps its own (a user's 0644 stays 0644); a
    new one gets what ``open()`` would give it, 0666 less the umask (mkstemp's 0600 would hide it
    from the group and others whatever the user's umask says)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """``with atomic_open("out.tsv") as f: ...``: written to a temp file, renamed on success.

    The file ends up with the mode an ordinary write would give it (see ``_mode_for``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            os.fchmod(f.fileno(), _mode_for(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
