"""The one gate for paths read from files a user could have supplied.

Job, result, config, samples and settings files travel inside project ZIPs, so any path they
hold is hostile until checked: it could name ``/etc/passwd``, climb out with ``..``, or go
through a symbolic link into another session. :func:`confine` turns such a value into a path
inside a given root (symbolic links resolved) or refuses it; pages and views open no path from
such a file that did not come out of it. Inside project files, paths are stored relative to the
workspace root (:func:`relative_to`).
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import TLError

__all__ = ["confine", "confined_or_none", "relative_to"]


def confine(root: str | Path, value, what: str = "file") -> Path:
    """``value`` (relative to ``root``, or absolute) as an absolute path inside ``root``, or :class:`TLError`.

    Symbolic links are resolved before the check, so a link inside ``root`` pointing outside it
    is refused too. The path need not exist.
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value) or "\x00" in str(value):
        raise TLError(f"the {what} {value!r} is not a path")
    base = Path(root).resolve()
    path = Path(value)
    resolved = (path if path.is_absolute() else base / path).resolve(strict=False)
    if resolved != base and base not in resolved.parents:
        raise TLError(f"the {what} {str(value)!r} is outside this workspace, so it is not read")
    return resolved


def confined_or_none(root: str | Path, value, what: str = "file") -> Path | None:
    """:func:`confine`, or None when ``value`` is missing or refused (for views that skip what they may not show)."""
    if value is None:
        return None
    try:
        return confine(root, value, what)
    except TLError:
        return None


def relative_to(root: str | Path, value: str) -> str:
    """``value`` written relative to ``root`` in POSIX form when it lies inside it (else unchanged)."""
    for base in {str(Path(root).absolute()), str(Path(root).resolve())}:
        if value == base:
            return "."
        if value.startswith(base + os.sep):
            return str(PurePosixPath(*Path(value[len(base) + 1:]).parts))
    return value
