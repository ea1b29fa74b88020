"""A server-wide cap on how many jobs run at once, with a first-come queue.

A slot is an exclusive ``fcntl.flock`` on one of N lock files in a folder
shared by every worker (``slots/`` in the tlcore cache). The kernel drops a
lock when its process ends, however it ends, so a killed worker never keeps
a slot and nothing needs cleaning after a crash. Waiting workers queue the
same way: each holds a lock on its own ticket file, and a ticket whose lock
can be taken belongs to a dead process and is thrown away.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import TLError
from .paths import default_cache_dir

__all__ = ["DEFAULT_MAX_JOBS", "max_jobs", "slots_dir", "Slot", "try_acquire", "acquire"]

DEFAULT_MAX_JOBS = 2
_ENV = "TLCORE_MAX_JOBS"


def max_jobs() -> int:
    """How many jobs may run at once: ``$TLCORE_MAX_JOBS`` (default 2)."""
    text = os.environ.get(_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_JOBS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise TLError(f"{_ENV}={text!r} is not allowed; set it to a whole number of at least 1")
    return value


def slots_dir() -> Path:
    """The folder of lock files every worker of this cache shares."""
    folder = default_cache_dir() / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _try_lock(path: Path, create: bool = True) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when someone else holds it
    (or, with ``create=False``, when it no longer exists)."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Slot:
    """One held lock (a running slot or a queue ticket); :meth:`release` or process exit frees it."""

    def __init__(self, fd: int, path: Path):
        self._fd, self.path = fd, path

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_acquire(n: int | None = None) -> Slot | None:
    """A free slot among the first ``n`` (default :func:`max_jobs`), or None when all are taken."""
    folder = slots_dir()
    for i in range(max_jobs() if n is None else n):
        path = folder / f"slot-{i}.lock"
        fd = _try_lock(path)
        if fd is not None:
            return Slot(fd, path)
    return None


def _take_ticket(queue: Path) -> Slot:
    """A ticket in the queue, named by arrival time so names sort in arrival order."""
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = queue / f".{name}.new"
    fd = _try_lock(tmp)
    # Locked before it gets its real name, so no one mistakes a ticket being made for a dead one.
    os.replace(tmp, queue / f"{name}.ticket")
    return Slot(fd, queue / f"{name}.ticket")


def _ahead(queue: Path, mine: Path) -> int:
    """Live tickets older than ``mine`` (tickets of dead workers are removed on the way)."""
    count = 0
    for path in sorted(queue.glob("*.ticket")):
        if path.name >= mine.name:
            break
        # Never re-create a ticket its owner has just removed.
        fd = _try_lock(path, create=False)
        if fd is None:
            count += path.exists()
        else:  # its owner is gone
            path.unlink(missing_ok=True)
            os.close(fd)
    return count


def acquire(on_wait=None, should_stop=None, poll: float = 0.5) -> Slot | None:
    """A slot, waiting in line while none is free.

    ``on_wait(position, slots)`` is called when the wait starts and whenever the
    place in line changes (1 = next); ``should_stop()`` is asked at every poll,
    and a True answer gives up the place and returns None.
    """
    n = max_jobs()
    slot = try_acquire(n)
    if slot is not None:
        return slot
    queue = slots_dir() / "queue"
    queue.mkdir(exist_ok=True)
    ticket = _take_ticket(queue)
    try:
        shown = None
        while True:
            ahead = _ahead(queue, ticket.path)
            # Only the head of the line takes a slot, so jobs start in the order they asked.
            if ahead == 0:
                slot = try_acquire(n)
                if slot is not None:
                    return slot
            if ahead + 1 != shown:
                shown = ahead + 1
                if on_wait:
                    on_wait(shown, n)
            if should_stop and should_stop():
                return None
            time.sleep(poll)
    finally:
        ticket.path.unlink(missing_ok=True)
        ticket.release()
