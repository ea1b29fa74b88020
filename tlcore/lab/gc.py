"""Disk clean-up: shared caches capped least recently used first, idle sessions expired, runs deleted.

What the server keeps under ``$TLCORE_CACHE_DIR`` (:func:`tlcore.io.paths.default_cache_dir`):

- the shared caches ``zips/`` (ZIP extractions of the CLI, one folder per archive content),
  ``features/`` (one ``.npy`` embedding per backbone and photo content, laid out by :func:`tlcore.training.features.cache_entries`) and ``engines/``
  (converted TFLite backbones). Together they are kept under ``$TLCORE_CACHE_MB``; the entries
  used longest ago go first. Recency is a file's mtime (atime is unreliable: ``noatime`` mounts),
  refreshed by :func:`touch` when an entry is reused.
- ``sessions/<folder>/``: one workspace per browser session. A session nobody has opened for
  ``$TLCORE_SESSION_DAYS`` days is removed, unless one of its jobs is still live. Pages mark
  their session as seen with :func:`mark_seen`.

Removing an entry must never break a process using it. A missing ``.npy`` is a cache miss and a
loaded engine is memory-mapped (unlinking it is harmless), so for those an entry used in the last
:data:`GRACE_SECONDS` is enough to keep. A ZIP extraction is read for a whole training run, so
a process using one holds a shared lock on its in-use file (:func:`hold`, released when the
process ends, even when it is killed); the clean-up removes only extractions it can lock
exclusively.

``python -m tlcore gc [--dry-run] --json`` runs :func:`collect` once; the dashboard runs it
periodically in a daemon thread (:func:`start_periodic`).
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from ..io.cache_use import IN_USE, fcntl, hold, locked_out, release, touch
from ..io.env import positive_number
from ..io.errors import TLError
from ..jobs.runner import LIVE, job_status, list_jobs
from ..io.paths import default_cache_dir
from .project import project_path
from ..io.quota import disk_usage, file_stats
from ..training.features import cache_entries

__all__ = ["CACHES", "GRACE_SECONDS", "cache_limit_mb", "session_days", "interval_minutes", "touch", "hold",
           "release", "mark_seen", "last_seen", "collect", "summary", "run_pass", "Cleaner", "start_periodic",
           "freeable_bytes", "remove_job", "remove_project"]

log = logging.getLogger("tlcore")

CACHES = ("zips", "features", "engines")
DEFAULT_CACHE_MB = 5000  # room for two ZIP extractions at their 2 GB cap, plus features and engines
DEFAULT_SESSION_DAYS = 14
DEFAULT_INTERVAL_MINUTES = 60
# Entries used this recently are kept whatever the limit: a run may be using them right now.
GRACE_SECONDS = 15 * 60
# Pages mark their session as seen at most this often (every widget click reruns the page).
SEEN_SECONDS = 60
SEEN = ".tlcore-seen"  # inside a session folder; its mtime is when a page last used the session
_REMOVING = ".gc-"  # prefix of a folder renamed aside before it is deleted
_DAY = 86400.0
_MB = 1024 * 1024
THREAD_NAME = "tlcore-gc"
FIRST_PASS_SECONDS = 60


# Settings ----------------------------------------------------------------------------------------

def cache_limit_mb() -> float:
    """The size limit of the shared caches together, in MB (``$TLCORE_CACHE_MB``, default 5000)."""
    return positive_number("TLCORE_CACHE_MB", DEFAULT_CACHE_MB, "megabytes")


def session_days() -> float:
    """Days after which a session nobody opened is removed (``$TLCORE_SESSION_DAYS``, default 14)."""
    return positive_number("TLCORE_SESSION_DAYS", DEFAULT_SESSION_DAYS, "days")


def interval_minutes() -> float:
    """Minutes between two clean-ups of the dashboard (``$TLCORE_GC_MINUTES``, default 60)."""
    return positive_number("TLCORE_GC_MINUTES", DEFAULT_INTERVAL_MINUTES, "minutes")


_SEEN_AT: dict[str, float] = {}  # session folder -> when this process last marked it


def mark_seen(root: str | Path) -> None:
    """Record that a page used the session in ``root`` now (at most one write a minute per process)."""
    key = str(root)
    now = time.monotonic()
    if now - _SEEN_AT.get(key, -SEEN_SECONDS) < SEEN_SECONDS:
        return
    _SEEN_AT[key] = now
    path = Path(root) / SEEN
    try:
        os.utime(path)
    except FileNotFoundError:
        try:
            path.touch()
        except OSError:
            pass
    except OSError:  # a read-only cache: the page still works
        pass


def last_seen(root: str | Path) -> float:
    """When the session in ``root`` was last used: the newest mtime of the folder, its seen mark and what it
    holds directly (photos, jobs, settings), so sessions from before the seen mark are judged fairly."""
    root = Path(root)
    times = []
    for path in [root, *_children(root)]:
        try:
            times.append(path.lstat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


# Sizes ---------------------------------------------------------------------------------------------

def _size(path: Path) -> int:
    try:
        return disk_usage(path) if path.is_dir() and not path.is_symlink() else path.lstat().st_size
    except OSError:
        return 0


def freeable_bytes(folder: str | Path) -> int:
    """Bytes deleting ``folder`` would give back: files linked from elsewhere too (a job's photo snapshot shares
    the session's photo files) are not counted, since their data stays."""
    return sum(st.st_size for st in file_stats(folder) if st.st_nlink <= 1)


def _cache_entries(root: Path) -> list[tuple[float, int, Path]]:
    """``(mtime, bytes, path)`` of every entry of the shared caches: an extraction folder, an embedding file,
    an engine file (temporary files left by a crash included)."""
    entries = []
    for name in CACHES:
        folder = root / name
        paths = cache_entries(folder) if name == "features" else _children(folder)  # the feature cache's layout
        for path in paths:
            try:
                mtime = path.lstat().st_mtime
            except OSError:
                continue
            entries.append((mtime, _size(path), path))
    return entries


def _remove(path: Path) -> bool:
    """Delete a file or a folder (renamed aside first, so no one finds it half deleted); True when done."""
    try:
        if path.is_dir() and not path.is_symlink():
            aside = path.with_name(f"{_REMOVING}{path.name}-{uuid.uuid4().hex[:8]}")
            os.replace(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        log.warning("clean-up could not remove %s", path, exc_info=True)
        return False


def _remove_entry(path: Path, dry_run: bool) -> bool:
    """Remove one cache entry unless a process holds it; True when it is (or, in a dry run, would be) removed."""
    fd = locked_out(path) if path.is_dir() else -1
    if fd is None:
        return False
    try:
        return True if dry_run else _remove(path)
    finally:
        if fd >= 0:
            os.close(fd)


# The policy ----------------------------------------------------------------------------------------

def _live(session: Path) -> bool:
    return any(job_status(job)["status"] in LIVE for job in list_jobs(session / "jobs"))


def _sessions(root: Path, now: float, dry_run: bool) -> list[dict]:
    days = session_days()
    removed = []
    for folder in sorted(_children(root / "sessions")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        if folder.name.startswith(_REMOVING):  # left by a clean-up that was interrupted
            if not dry_run:
                _remove(folder)
            continue
        if folder.name.startswith("."):
            continue
        idle = (now - last_seen(folder)) / _DAY
        if idle < days or _live(folder):
            continue
        size = _size(folder)
        # Checked again just before: a page may have opened the session while its jobs were read.
        if dry_run or ((now - last_seen(folder)) / _DAY >= days and _remove(folder)):
            removed.append({"folder": folder.name, "idle_days": round(idle, 2), "bytes": size})
    return removed


def _debris(path: Path) -> bool:
    """Left by an interrupted write, extraction or clean-up: never reused, so removed whatever the limit."""
    name = path.name
    return name.startswith((_REMOVING, ".extract-")) or name.endswith(".tmp")


def _caches(root: Path, now: float, dry_run: bool) -> dict:
    limit = int(cache_limit_mb() * _MB)
    # Debris first, then the least recently used.
    entries = sorted(_cache_entries(root), key=lambda e: (not _debris(e[2]), e[0], str(e[2])))
    before = total = sum(size for _, size, _ in entries)
    removed = []
    for mtime, size, path in entries:
        if total <= limit and not _debris(path):
            continue
        if now - mtime < GRACE_SECONDS and not path.name.startswith(_REMOVING):
            continue  # maybe in use right now (an extraction or a write in progress, a run reading it)
        if _remove_entry(path, dry_run):
            total -= size
            removed.append({"path": path.relative_to(root).as_posix(), "bytes": size,
                            "idle_days": round((now - mtime) / _DAY, 2)})
    return {"limit_bytes": limit, "before_bytes": before, "after_bytes": total, "removed": removed}


def collect(dry_run: bool = False, root: str | Path | None = None, now: float | None = None) -> dict:
    """Free what the policy allows under ``root`` (default: the tlcore cache), or only say what (``dry_run``).

    Returns ``{"dry_run", "sessions": [{"folder", "idle_days", "bytes"}], "cache": {"limit_bytes",
    "before_bytes", "after_bytes", "removed": [{"path", "bytes", "idle_days"}]}, "freed_bytes"}``.
    Raises :class:`TLError` for a bad setting, before anything is removed.
    """
    cache_limit_mb(), session_days()  # a bad setting is one error, before any removal
    root = Path(root) if root is not None else default_cache_dir()
    now = time.time() if now is None else now
    sessions = _sessions(root, now, dry_run)
    cache = _caches(root, now, dry_run)
    freed = sum(s["bytes"] for s in sessions) + sum(e["bytes"] for e in cache["removed"])
    return {"dry_run": dry_run, "sessions": sessions, "cache": cache, "freed_bytes": freed}


def summary(result: dict) -> str:
    """One human line for the result of :func:`collect`."""
    cache = result["cache"]
    verb = "would free" if result["dry_run"] else "freed"
    return (f"{verb} {result['freed_bytes'] / _MB:.1f} MB: {len(result['sessions'])} idle session(s), "
            f"{len(cache['removed'])} cache entr(ies); shared caches {cache['after_bytes'] / _MB:.1f} MB "
            f"(were {cache['before_bytes'] / _MB:.1f} MB, limit {cache['limit_bytes'] / _MB:g} MB)")


# Periodic clean-up in the dashboard ------------------------------------------------------------------

def run_pass(root: str | Path | None = None) -> dict | None:
    """One clean-up, logged to the ``tlcore`` logger; an error is logged too, never raised."""
    try:
        result = collect(root=root)
    except TLError as exc:
        log.error("clean-up skipped: %s", exc)
        return None
    except Exception:  # noqa: BLE001 - a clean-up must never take the server down
        log.exception("clean-up failed")
        return None
    if result["freed_bytes"] or result["sessions"] or result["cache"]["removed"]:
        log.info("clean-up %s", summary(result))
    return result


class Cleaner(threading.Thread):
    """A daemon thread running :func:`run_pass` on one cache folder after ``delay`` seconds, then every
    ``interval`` seconds, until :attr:`stopped` is set."""

    def __init__(self, root: str | Path, interval: float, delay: float = 0.0, name: str = THREAD_NAME):
        super().__init__(name=name, daemon=True)
        self.root = Path(root)
        self.interval = interval
        self.delay = delay
        self.passed = threading.Event()  # set after each pass (tests await it)
        self.stopped = threading.Event()

    def run(self) -> None:
        if self.stopped.wait(self.delay):
            return
        while True:
            run_pass(self.root)
            self.passed.set()
            if self.stopped.wait(self.interval):
                return


_START_LOCK = threading.Lock()


def start_periodic() -> threading.Thread | None:
    """Start the clean-up thread of this server process once (later calls find it running); never raises.

    The cache folder is the one of the moment it starts; the interval is ``$TLCORE_GC_MINUTES``.
    """
    try:
        with _START_LOCK:
            # By name, not a module flag: Streamlit may reload this module, the thread lives on.
            for thread in threading.enumerate():
                if thread.name == THREAD_NAME and thread.is_alive():
                    return thread
            try:
                minutes = interval_minutes()
            except TLError as exc:
                log.error("%s; cleaning up every %d minutes", exc, DEFAULT_INTERVAL_MINUTES)
                minutes = DEFAULT_INTERVAL_MINUTES
            # The first pass a little after start: not while the server starts, and after the page that
            # started it has set up the log file.
            cleaner = Cleaner(default_cache_dir(), minutes * 60, delay=FIRST_PASS_SECONDS)
            cleaner.start()
            return cleaner
    except Exception:  # noqa: BLE001 - the dashboard works without it
        log.exception("could not start the periodic clean-up")
        return None


# Freeing room by hand (Runs page) --------------------------------------------------------------------

def remove_job(workspace, name: str) -> int:
    """Delete the job folder ``name`` of ``workspace`` (a run with its exports, checkpoints and photo snapshot);
    returns the bytes freed (:func:`freeable_bytes`). Refused (:class:`TLError`) while that job, or a job working on its run, is live."""
    jobs = {job.name: job for job in list_jobs(workspace.jobs_dir)}
    job = jobs.get(name) if isinstance(name, str) else None
    if job is None:
        raise TLError(f"there is no run {name!r} in this session")
    status = job_status(job)["status"]
    if status in LIVE:
        raise TLError(f"run {name!r} is still {status}; stop it before deleting it")
    for other in jobs.values():
        info = job_status(other)
        parent = info.get("parent")
        if info["status"] in LIVE and parent and _inside(workspace.root, parent, job):
            raise TLError(f"run {name!r} is used by the {info.get('kind', 'job')} {other.name!r} still "
                          f"{info['status']}; stop it before deleting the run")
    size = freeable_bytes(job)
    if not _remove(job):
        raise TLError(f"run {name!r} could not be deleted; try again")
    workspace.forget_usage()
    return size


def _inside(root: Path, value: str, folder: Path) -> bool:
    path = Path(value)
    path = path if path.is_absolute() else Path(root) / path
    try:
        path.resolve().relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
    return True


def remove_project(workspace, name: str) -> int:
    """Delete the saved project ``name`` of ``workspace``; returns the bytes freed."""
    path = project_path(workspace, name)  # a plain folder name inside the session's projects
    if not path.is_dir():
        raise TLError(f"there is no saved project {name!r} in this session")
    size = freeable_bytes(path)
    if not _remove(path):
        raise TLError(f"project {name!r} could not be deleted; try again")
    workspace.forget_usage()
    return size
