"""Where a user-given path points: the current directory first, then the repository root."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent  # the directory that holds the ``uer`` package


def resolve_path(path: str | Path) -> Path:
    """``models/google_vocab.txt`` -> an existing file, wherever the command was started.

    An existing path relative to the current directory wins; otherwise a path relative to the
    repository root, if it exists. If neither exists, the path as the user typed it comes back,
    so that the caller's "file not found" error names what the user wrote.
    """
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    in_repo = REPO_ROOT / given
    if in_repo.exists():
        return in_repo
    return given
