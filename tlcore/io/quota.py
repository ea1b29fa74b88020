"""What a session's folder holds on disk, and the cap on it: one rule for photos, projects and jobs."""
from __future__ import annotations

import os
import time
from pathlib import Path

from .env import positive_number
from .errors import TLError

__all__ = ["MB", "DEFAULT_MAX_SESSION_MB", "file_stats", "disk_usage", "used_bytes", "count_added", "forget_usage",
           "session_cap_mb", "check_room"]

MB = 1024 * 1024  # as Streamlit counts server.maxUploadSize
DEFAULT_MAX_SESSION_MB = 1000
_USAGE: dict[str, tuple[float, int]] = {}  # session folder -> (when measured, bytes)
_USAGE_SECONDS = 5.0


def file_stats(folder: str | Path):
    """``os.lstat`` of every file under ``folder`` (links not followed; files removed meanwhile skipped)."""
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                yield os.lstat(os.path.join(parent, name))
            except OSError:  # removed meanwhile
                continue


def disk_usage(folder: str | Path) -> int:
    """Bytes of the files under ``folder``, each file (inode) counted once however many links it has."""
    seen, total = set(), 0
    for st in file_stats(folder):
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def used_bytes(root: str | Path) -> int:
    """:func:`disk_usage` of a session folder, remembered for a few seconds: a ZIP adds thousands of photos, each
    checked against the cap, and :func:`count_added` keeps the remembered total up to date."""
    key = str(Path(root).absolute())
    cached = _USAGE.get(key)
    if cached and time.monotonic() - cached[0] < _USAGE_SECONDS:
        return cached[1]
    total = disk_usage(root)
    _USAGE[key] = (time.monotonic(), total)
    return total


def count_added(root: str | Path, size: int) -> None:
    """Add ``size`` bytes to the remembered total of ``root``, if one is remembered."""
    key = str(Path(root).absolute())
    cached = _USAGE.get(key)
    if cached:
        _USAGE[key] = (cached[0], cached[1] + size)


def forget_usage(root: str | Path) -> None:
    """Measure ``root`` again at the next :func:`used_bytes` (after removing or adding many files)."""
    _USAGE.pop(str(Path(root).absolute()), None)


def session_cap_mb(override: float | None = None) -> float:
    """The cap on everything a session keeps on disk, in MB: ``override``, else ``$TLCORE_MAX_SESSION_MB``
    (default 1000)."""
    if override is not None:
        return override
    return positive_number("TLCORE_MAX_SESSION_MB", DEFAULT_MAX_SESSION_MB, "megabytes")


def check_room(root: str | Path, size: int, what: str, freed: int = 0, cap_mb: float | None = None) -> None:
    """Refuse (:class:`TLError`) when adding ``size`` bytes (after freeing ``freed``) would take the session
    folder ``root`` over its cap; ``what`` names what is being added."""
    cap = session_cap_mb(cap_mb)
    total = used_bytes(root) - freed + size
    if total > cap * MB:
        raise TLError(f"{what}: it would bring this session to {total / MB:.1f} MB on disk, over the limit of "
                      f"{cap:g} MB per session; delete some runs or photos first")
