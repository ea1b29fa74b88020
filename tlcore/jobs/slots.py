"""Server-wide caps on jobs: how many run at once, how many wait, and one of each per session.

A running slot is an exclusive ``fcntl.flock`` on one of N lock files in a folder shared by
every worker (``slots/`` in the tlcore cache). The kernel drops a lock when the last descriptor
of its open file goes away, however its process ends, so a killed worker never keeps a slot and
nothing needs cleaning after a crash.

Admission is decided in the starting (server) process, under one lock (``admission.lock``), so
two starts at the same moment cannot both take the last place (:func:`admit`):

- a session (the ``jobs/`` folder that holds the job) has at most one job waiting and one
  running: a session lock (``sessions/<key>.lock``) is held by its running job, and a waiting
  ticket (``waiting/<time>-<key>.ticket``) names the session of each waiting job;
- the server has at most ``$TLCORE_MAX_WAITING`` waiting tickets;
- when the session lock and a running slot are free (and nobody is in line for one), both are
  taken at once and the job runs without waiting.

The locks taken there are handed to the worker as open descriptors (``subprocess.Popen(pass_fds=...)``,
named in ``$TLCORE_JOB_ADMISSION``): a lock follows its open file, so the worker holds it from its
first instruction and the server process lets go of its copies. The worker waits for what it lacks
(:func:`wait_turn`) before it imports anything heavy, so a waiting job holds no TensorFlow. Waiting
for a running slot goes first come, first served: each worker in line holds a lock on its own
ticket in ``queue/``, and a ticket whose lock can be taken belongs to a dead process and is thrown away.

A job a Ray cluster runs (:mod:`tlcore.jobs.ray_jobs`) is admitted by the cluster's scheduler instead: its worker
inherits :data:`ON_CLUSTER` as its admission and takes no place here.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from ..io.env import whole_number
from ..io.errors import TLError
from ..io.paths import default_cache_dir

__all__ = ["DEFAULT_MAX_JOBS", "DEFAULT_MAX_WAITING", "ADMISSION_ENV", "ON_CLUSTER", "SESSION_WAITING", "max_jobs", "max_waiting", "slots_dir",
           "Slot", "Held", "Admission", "try_acquire", "acquire", "admit", "wait_turn", "session_key"]

DEFAULT_MAX_JOBS = 2
DEFAULT_MAX_WAITING = 8
_ENV, _WAITING_ENV = "TLCORE_MAX_JOBS", "TLCORE_MAX_WAITING"
ADMISSION_ENV = "TLCORE_JOB_ADMISSION"  # the descriptors a worker inherits from start_job
ON_CLUSTER = "cluster"  # that variable's value for a worker a Ray cluster scheduled: it holds no local place
SESSION_WAITING = ("this session already has a job waiting for a free slot; wait until it starts, or stop it, "
                   "before starting another")


def max_jobs() -> int:
    """How many jobs may run at once: ``$TLCORE_MAX_JOBS`` (default 2)."""
    return whole_number(_ENV, DEFAULT_MAX_JOBS, 1)


def max_waiting() -> int:
    """How many jobs may wait for a slot on the whole server: ``$TLCORE_MAX_WAITING`` (default 8; 0 = none wait)."""
    return whole_number(_WAITING_ENV, DEFAULT_MAX_WAITING, 0)


def slots_dir() -> Path:
    """The folder of lock files every worker of this cache shares."""
    folder = default_cache_dir() / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def session_key(jobs_dir: str | Path) -> str:
    """A short name for the session whose jobs live in ``jobs_dir`` (the same for every spelling of the folder)."""
    return hashlib.sha256(str(Path(jobs_dir).resolve()).encode()).hexdigest()[:16]


def _session_lock(key: str) -> Path:
    folder = slots_dir() / "sessions"
    folder.mkdir(exist_ok=True)
    # Never removed (an empty file per session): unlinking a lock file others may be opening is a race.
    return folder / f"{key}.lock"


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
    """One held lock (a running slot, a session lock or a ticket); :meth:`release` or process exit frees it."""

    def __init__(self, fd: int, path: Path, remove: bool = False):
        # ``remove``: a ticket, whose file goes when it is released (before the lock, so no one takes it for dead).
        self._fd, self.path, self._remove = fd, Path(path), remove

    @property
    def fd(self) -> int | None:
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            if self._remove:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the last descriptor of the file drops the lock
            self._fd = None

    def forget(self) -> None:
        """Close this process's descriptor without removing a ticket: another process (the worker) holds it now."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Held:
    """What a working job holds: its running slot and, for a dashboard job, its session's lock."""

    def __init__(self, slot: Slot | None, session: Slot | None = None):
        self.slot, self.session = slot, session  # no slot: a job the Ray cluster admitted

    def release(self) -> None:
        if self.slot is not None:
            self.slot.release()
        if self.session is not None:
            self.session.release()


def try_acquire(n: int | None = None) -> Slot | None:
    """A free slot among the first ``n`` (default :func:`max_jobs`), or None when all are taken."""
    folder = slots_dir()
    for i in range(max_jobs() if n is None else n):
        path = folder / f"slot-{i}.lock"
        fd = _try_lock(path)
        if fd is not None:
            return Slot(fd, path)
    return None


def _take_ticket(folder: Path, tag: str) -> Slot:
    """A ticket in ``folder``, named by arrival time so names sort in arrival order."""
    name = f"{time.time_ns():020d}-{tag}"
    tmp = folder / f".{name}.new"
    fd = _try_lock(tmp)
    # Locked before it gets its real name, so no one mistakes a ticket being made for a dead one.
    os.replace(tmp, folder / f"{name}.ticket")
    return Slot(fd, folder / f"{name}.ticket", remove=True)


def _live_tickets(folder: Path) -> list[Path]:
    """The tickets in ``folder`` whose owner is alive, oldest first (those of dead owners are removed)."""
    live = []
    for path in sorted(folder.glob("*.ticket")):
        # Never re-create a ticket its owner has just removed.
        fd = _try_lock(path, create=False)
        if fd is None:
            if path.exists():
                live.append(path)
        else:  # its owner is gone
            path.unlink(missing_ok=True)
            os.close(fd)
    return live


def _queue() -> Path:
    folder = slots_dir() / "queue"
    folder.mkdir(exist_ok=True)
    return folder


def _ahead(queue: Path, mine: Path) -> int:
    """Live tickets older than ``mine``."""
    return sum(1 for path in _live_tickets(queue) if path.name < mine.name)


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
    queue = _queue()
    ticket = _take_ticket(queue, str(os.getpid()))
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
        ticket.release()


class Admission:
    """The places :func:`admit` gave a job: a running slot and its session's lock (it runs at once), or a
    waiting ticket (and maybe the session lock). Handed to the worker with :meth:`fds` and :meth:`environment`."""

    def __init__(self, key: str, slot: Slot | None = None, session: Slot | None = None, ticket: Slot | None = None,
                 on_cluster: bool = False):
        self.key, self.slot, self.session, self.ticket = key, slot, session, ticket
        self.on_cluster = on_cluster  # admitted by a Ray cluster's scheduler: no place to wait for here

    def _held(self) -> dict[str, Slot]:
        return {name: s for name, s in (("slot", self.slot), ("session", self.session), ("ticket", self.ticket))
                if s is not None and s.fd is not None}

    def fds(self) -> tuple[int, ...]:
        """The descriptors the worker must inherit."""
        return tuple(s.fd for s in self._held().values())

    def environment(self) -> str:
        """The value of ``$TLCORE_JOB_ADMISSION`` for the worker: which inherited descriptor is which."""
        return json.dumps({"key": self.key, **{name: [s.fd, str(s.path)] for name, s in self._held().items()}})

    @property
    def runs_now(self) -> bool:
        """Whether the job holds a running slot already (no waiting ticket)."""
        return self.ticket is None and self.slot is not None

    @staticmethod
    def renumbered(environment: str, numbers: dict[int, int]) -> str:
        """``environment`` (a value of :meth:`environment`) for a worker that received descriptor ``old`` as
        ``numbers[old]`` (the warm worker's children: descriptors passed over a socket get new numbers)."""
        spec = json.loads(environment)
        for name, value in spec.items():
            if name != "key":
                spec[name] = [numbers[int(value[0])], value[1]]
        return json.dumps(spec)

    @classmethod
    def from_environment(cls) -> "Admission | None":
        """The admission this process inherited (read once: the variable is removed, so processes it starts
        do not take descriptors they do not have for locks)."""
        text = os.environ.pop(ADMISSION_ENV, None)
        if not text:
            return None
        if text == ON_CLUSTER:
            return cls("", on_cluster=True)
        spec = json.loads(text)

        def held(name, remove=False):
            return Slot(int(spec[name][0]), Path(spec[name][1]), remove) if name in spec else None

        return cls(spec["key"], held("slot"), held("session"), held("ticket", remove=True))

    def handed_over(self) -> None:
        """The worker has its own descriptors now: close this process's copies (the locks stay held)."""
        for s in (self.slot, self.session, self.ticket):
            if s is not None:
                s.forget()

    def release(self) -> None:
        """Give every place back (no worker was started)."""
        for s in (self.slot, self.session, self.ticket):
            if s is not None:
                s.release()


class _Mutex:
    """The admission lock: one admission at a time on the server (threads and processes alike)."""

    def __enter__(self):
        self._fd = os.open(slots_dir() / "admission.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held for a few file operations, never while a job runs
        return self

    def __exit__(self, *exc):
        os.close(self._fd)


def admit(jobs_dir: str | Path) -> Admission:
    """Places for a new job of the session whose jobs live in ``jobs_dir``, or :class:`TLError` saying which cap
    refuses it: the session already has a job waiting, or the server has ``$TLCORE_MAX_WAITING`` waiting."""
    n, cap = max_jobs(), max_waiting()
    key = session_key(jobs_dir)
    waiting_dir = slots_dir() / "waiting"
    waiting_dir.mkdir(exist_ok=True)
    with _Mutex():
        waiting = _live_tickets(waiting_dir)
        if any(path.stem.split("-", 1)[-1] == key for path in waiting):
            raise TLError(SESSION_WAITING)
        fd = _try_lock(_session_lock(key))
        session = Slot(fd, _session_lock(key)) if fd is not None else None
        if session is not None and not _live_tickets(_queue()):  # nobody is in line before it
            slot = try_acquire(n)
            if slot is not None:
                return Admission(key, slot=slot, session=session)
        if len(waiting) >= cap:
            if session is not None:
                session.release()
            raise TLError(f"this server's waiting line is full ({_WAITING_ENV}={cap}): every job slot is busy and "
                          "no more jobs may wait; try again when one has started")
        return Admission(key, session=session, ticket=_take_ticket(waiting_dir, key))


def wait_turn(admission: Admission, on_wait=None, should_stop=None, poll: float = 0.5) -> Held | None:
    """In the worker: wait until the job holds its session's lock and a running slot, then return them (the
    waiting ticket is given back). ``on_wait`` and ``should_stop`` as for :func:`acquire`; None when stopped."""
    try:
        if admission.on_cluster:  # the cluster started it when it had room; a Stop that came first ends it here
            return None if should_stop and should_stop() else Held(None)
        if admission.slot is not None:  # taken at admission: it runs at once
            return Held(admission.slot, admission.session)
        session, shown = admission.session, False
        while session is None:  # the session's other job is running
            path = _session_lock(admission.key)
            fd = _try_lock(path)
            if fd is not None:
                session = Slot(fd, path)
                break
            if not shown:
                shown = True
                if on_wait:  # it will queue behind those already in line for a slot
                    on_wait(len(_live_tickets(_queue())) + 1, max_jobs())
            if should_stop and should_stop():
                return None
            time.sleep(poll)
        slot = acquire(on_wait=on_wait, should_stop=should_stop, poll=poll)
        if slot is None:
            session.release()
            return None
        return Held(slot, session)
    finally:
        if admission.ticket is not None:
            admission.ticket.release()  # no longer waiting, either way
