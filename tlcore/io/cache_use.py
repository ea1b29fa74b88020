"""Marks of use on the shared cache entries, so the clean-up (:mod:`tlcore.lab.gc`) removes the least recently
used first and never an entry a live process needs.

Recency is a file's mtime (atime is unreliable: ``noatime`` mounts), refreshed by :func:`touch` when
an entry is reused. A ZIP extraction is read for a whole training run, so a process using one holds
a shared lock on its in-use file (:func:`hold`), released when the process ends, even when killed.
Kept apart from :mod:`tlcore.lab.gc` so the caches (data, features, engine) mark their entries without
importing the clean-up, which reads sessions, jobs and projects.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

try:  # POSIX; elsewhere extractions are protected by their recent use only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["IN_USE", "TOUCH_SECONDS", "touch", "hold", "release", "locked_out"]

# A reused entry's mtime is refreshed only when older than this: one metadata write per entry
# per run at most, and none at all when the same photos are embedded again a minute later.
TOUCH_SECONDS = 5 * 60
IN_USE = ".tlcore-in-use"  # lock file inside a ZIP extraction (hidden: never taken for a photo)


def touch(path: str | Path, mtime: float | None = None) -> None:
    """Mark a cache entry as just used, unless its ``mtime`` (when known) is recent already.

    Never fails: a read-only cache only makes the entry look older than it is.
    """
    if mtime is not None and time.time() - mtime < TOUCH_SECONDS:
        return
    try:
        os.utime(path)
    except OSError:
        pass


_HELD: dict[str, int] = {}  # folder -> open in-use file, kept for the life of this process
_HELD_LOCK = threading.Lock()


def hold(folder: str | Path) -> bool:
    """Keep ``folder`` (a ZIP extraction) from being removed while this process lives; False if it is gone.

    Takes a shared lock on its in-use file. A clean-up removing it at this moment holds the
    exclusive lock: this waits for it, then finds the folder gone and says so, so the caller
    extracts again. The lock goes with the process (also when it is killed).
    """
    folder = Path(folder)
    key = str(folder.absolute())
    with _HELD_LOCK:
        if key in _HELD:
            touch(folder)  # a second load in this process is a use too
            return True
        if fcntl is None:  # pragma: no cover - no locks: the recent mtime is the only protection
            touch(folder)
            return folder.is_dir()
        try:
            fd = os.open(folder / IN_USE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # the folder is gone (removed or renamed aside)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            same = os.stat(folder / IN_USE).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if not same:
            os.close(fd)
            return False
        _HELD[key] = fd
    touch(folder)
    return True


def release(folder: str | Path) -> None:
    """Let ``folder`` go again (after :func:`hold`): used for a temporary extraction folder."""
    with _HELD_LOCK:
        fd = _HELD.pop(str(Path(folder).absolute()), None)
    if fd is not None:
        os.close(fd)


def locked_out(folder: Path) -> int | None:
    """An open descriptor of ``folder``'s in-use file locked exclusively, -1 when it has none, None when in use."""
    path = folder / IN_USE
    if fcntl is None or not path.is_file():
        return -1
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
