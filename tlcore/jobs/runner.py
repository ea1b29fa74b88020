"""Long work in a separate process that a front end can follow through files.

A job directory (made by :func:`new_job_dir`) holds ``job.json`` (kind, pid, start time),
``events.jsonl`` (one JSON object per line, appended by the worker as it
goes; their vocabulary is :mod:`tlcore.jobs.events`), ``result.json`` (the command's JSON result), ``stderr.log`` and, when
a stop was asked for, ``STOP``. The worker is ``python -m tlcore`` itself, so
the dashboard trains exactly as the CLI does, and a browser refresh or a
widget click never touches it. Starting is admitted or refused by the caps of
:mod:`tlcore.jobs.slots`; until its worker holds a running slot, a job is waiting.

With ``$TLCORE_RAY_ADDRESS`` set, the same worker runs as a task on a Ray cluster instead
(:mod:`tlcore.jobs.ray_jobs`): the cluster's queue replaces the slots, ``job.json`` names the task
(``executor``) instead of a pid of this machine, and the task writes ``started.json`` when the cluster starts
it (until then the job is waiting) and ``result.json`` when it ends, as here.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..io.errors import TLError
from ..io.paths import tlcore_environment
from ..io.quota import check_room
from . import ray_jobs
from .events import DONE, ERROR, WAITING
from .warm import spawn, warm_up

log = logging.getLogger("tlcore")

__all__ = ["new_job_dir", "start_job", "warm_up_workers", "record_end", "read_events", "job_meta", "job_status", "request_stop", "list_jobs",
           "EventWriter", "LIVE"]

# A job in one of these states still has a worker process (waiting for a slot, working, or ending).
LIVE = ("waiting", "running", "stopping")

_EVENTS, _RESULT, _STOP, _META = "events.jsonl", "result.json", "STOP", "job.json"


class EventWriter:
    """Appends events to a job's ``events.jsonl`` (used by the worker process)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: dict) -> None:
        line = json.dumps({"time": time.time(), **event}) + "\n"
        # One write per line in append mode: a reader sees whole lines or nothing of a new one.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


def new_job_dir(jobs_dir: str | Path, prefix: str) -> Path:
    """A new, empty job folder under ``jobs_dir``, created here and nowhere else: ``PREFIX-YYYYmmdd-HHMMSS``,
    or with ``-001``, ``-002``... when jobs started in the same second (names still sort by start time).

    ``mkdir`` without ``exist_ok`` is atomic: of two starts racing for a name, one gets it and the other
    tries the next, so two jobs never share a folder.
    """
    if not re.fullmatch(r"[a-z]+", prefix):
        raise ValueError(f"a job folder prefix is a lowercase word, not {prefix!r}")
    jobs_dir = Path(jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in itertools.count():
        folder = jobs_dir / (stamp if n == 0 else f"{stamp}-{n:03d}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")


def _check_room(job_dir: Path) -> None:
    """A session over its disk cap starts no job (jobs write runs, exports and checkpoints)."""
    jobs = job_dir.parent
    if jobs.name == "jobs" and (jobs.parent / "data").is_dir():  # <workspace>/jobs/<job>
        check_room(jobs.parent, 0, "no new job can start")


def warm_up_workers() -> None:
    """When the server starts: start the warm workers its jobs will fork from (:mod:`tlcore.jobs.warm`), its own, or
    one on each node of the Ray cluster its jobs run on (:func:`tlcore.jobs.ray_jobs.warm_up_nodes`). In the
    background; a bad cluster address is left for the first job's start to say in one sentence."""
    try:
        on_cluster = ray_jobs.ray_address() is not None
    except TLError:
        return
    if on_cluster:
        ray_jobs.warm_up_nodes()
    else:
        warm_up()


def start_job(job_dir: str | Path, args: list[str], kind: str = "train", meta: dict | None = None) -> Path:
    """Start ``python -m tlcore ARGS --json --progress ... --stop-file ...`` for ``job_dir``.

    Admission is decided here, before the worker exists (:func:`tlcore.jobs.slots.admit`): a session over its
    disk cap, a session that already has a job waiting, or a server with ``$TLCORE_MAX_WAITING`` jobs
    waiting is refused with :class:`TLError`, and a refused new folder (no ``job.json`` yet) is removed.
    The worker inherits the places it was given and waits, if it must, for a running slot
    (``$TLCORE_MAX_JOBS`` jobs run at once on the server, one per session); meanwhile its status is
    ``waiting``. ``job.json`` records no command line: nothing ever runs one read back from disk. A job that
    runs at once is forked from the warm worker when it is ready (:mod:`tlcore.jobs.warm`), else the process is
    started here; either way it has its own session, and its end is recorded in ``result.json``.

    On a Ray cluster (``$TLCORE_RAY_ADDRESS``), the disk cap and the session's one waiting job still apply; the
    job then waits in the cluster's queue, not for a slot here (:mod:`tlcore.jobs.ray_jobs`).
    """
    from .slots import ADMISSION_ENV, admit

    job_dir = Path(job_dir).absolute()
    try:
        on_cluster = ray_jobs.ray_address() is not None
    except TLError:
        _forget_unstarted(job_dir)
        raise
    if on_cluster:
        return _start_on_cluster(job_dir, args, kind, meta)
    try:
        _check_room(job_dir)
        admission = admit(job_dir.parent)
    except TLError:
        _forget_unstarted(job_dir)
        raise
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        args = [*args, "--json", "--progress", str(job_dir / _EVENTS), "--stop-file", str(job_dir / _STOP)]
        result = open(job_dir / "stdout.log", "wb")
        errors = open(job_dir / "stderr.log", "wb")
        # The caller's working directory, so relative paths in ARGS mean what they mean to the caller;
        # tlcore is found through PYTHONPATH.
        env = {**tlcore_environment(), ADMISSION_ENV: admission.environment()}
        try:
            # A job that runs at once starts from the warm worker (TensorFlow imported already, tlcore.jobs.warm);
            # one that must wait for a slot is a small process of its own until its turn.
            pid = spawn(args, env, job_dir, result.fileno(), errors.fileno(), admission.fds()) \
                if admission.runs_now else None
            proc = None
            if pid is None:
                proc = subprocess.Popen([sys.executable, "-m", "tlcore", *args], stdout=result, stderr=errors,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                        pass_fds=admission.fds())
                pid = proc.pid
        finally:
            result.close()
            errors.close()
    except BaseException:
        admission.release()
        raise
    admission.handed_over()  # the worker holds the locks now
    (job_dir / _META).write_text(json.dumps({"kind": kind, "pid": pid, "started": time.time(), **(meta or {})}),
                                 encoding="utf-8")
    if proc is not None:
        # Reap the child when it ends (no zombie), then record its result (the warm worker does both for its own).
        threading.Thread(target=_wait_and_record, args=(proc, job_dir), daemon=True).start()
    return job_dir


def _forget_unstarted(job_dir: Path) -> None:
    """A new job that was refused leaves nothing: its folder goes unless it has a ``job.json`` (a resumed job)."""
    if job_dir.parent.name == "jobs" and job_dir.is_dir() and not (job_dir / _META).exists():
        shutil.rmtree(job_dir, ignore_errors=True)


def _start_on_cluster(job_dir: Path, args: list[str], kind: str, meta: dict | None) -> Path:
    from .slots import ADMISSION_ENV, ON_CLUSTER, SESSION_WAITING

    try:
        _check_room(job_dir)
        if any(job_status(other)["status"] == "waiting" for other in list_jobs(job_dir.parent) if other != job_dir):
            raise TLError(SESSION_WAITING)
        job_dir.mkdir(parents=True, exist_ok=True)
        args = [*args, "--json", "--progress", str(job_dir / _EVENTS), "--stop-file", str(job_dir / _STOP)]
        executor = ray_jobs.submit(job_dir, args, {**tlcore_environment(), ADMISSION_ENV: ON_CLUSTER}, record_end)
    except TLError:
        _forget_unstarted(job_dir)
        raise
    # The task may have started already; job.json is what job_status reads first, so it is written at once.
    (job_dir / _META).write_text(json.dumps({"kind": kind, "started": time.time(), **(meta or {}),
                                             "executor": executor}), encoding="utf-8")
    return job_dir


def _wait_and_record(proc: subprocess.Popen, job_dir: Path) -> None:
    record_end(proc.pid, proc.wait(), job_dir)


def record_end(pid: int, code: int, job_dir: Path, task: str | None = None, error: str | None = None) -> None:
    """Write ``result.json`` for the worker ``pid`` of ``job_dir`` that ended with status ``code`` (its
    result from its last line of output, or its error from its last line of errors, unless ``error`` says it).
    ``task``: the Ray task that ran it (:mod:`tlcore.jobs.ray_jobs`), whose record this is."""
    try:
        _record(pid, code, Path(job_dir), task, error)
    except OSError:
        # The job's folder went while its worker ended (deleted with its project or session, or by the cleaner):
        # there is nothing left to record the end in.
        log.info("job %s ended with status %s after its folder was removed", Path(job_dir).name, code)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except FileNotFoundError:  # a Ray job taken out of the queue never had a worker
        if not path.parent.is_dir():
            raise
        return []


def _record(pid: int, code: int, job_dir: Path, task: str | None = None, error: str | None = None) -> None:
    stdout = _lines(job_dir / "stdout.log")
    record = {"exit_code": code, "pid": pid}  # the pid: a resumed job must not read its predecessor's end
    if task is not None:
        record["task"] = task  # for a Ray job, the task plays that part
    if error is not None:
        record["error"] = error
    elif code == 0 and stdout:
        try:
            record["result"] = json.loads(stdout[-1])
        except ValueError:
            pass
    elif code != 0:
        lines = _lines(job_dir / "stderr.log")
        record["error"] = lines[-1].removeprefix("error: ") if lines else f"the worker ended with status {code}"
    tmp = job_dir / (_RESULT + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, job_dir / _RESULT)


def read_events(job_dir: str | Path) -> list[dict]:
    """All complete events written so far (a half-written last line is ignored)."""
    path = Path(job_dir) / _EVENTS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def _last_event(job_dir: Path, tail: int = 4096) -> dict:
    """The last complete event, read from the end of the file (pages ask every second; the file grows)."""
    try:
        with open(job_dir / _EVENTS, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - tail))
            lines = f.read().splitlines(keepends=True)
    except OSError:
        return {}
    if size > tail:
        lines = lines[1:]  # the first line read may be the end of a longer one
    complete = [line for line in lines if line.endswith(b"\n")]
    try:
        return json.loads(complete[-1]) if complete else {}
    except ValueError:
        return {}


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0 or -1, 0) would probe a whole group of processes, not one
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie is finished work whose parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def job_meta(job_dir: str | Path) -> dict | None:
    """What ``job.json`` says of a job (its kind, pid, start time, parent run, label...), or None when it cannot be
    read. Its path values are the job's, not checked: open one only through :func:`tlcore.jobs.folder.job_path`."""
    try:
        meta = json.loads((Path(job_dir) / _META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def job_status(job_dir: str | Path) -> dict:
    """``{"status": waiting|running|stopping|done|stopped|failed|missing, "result"?, "error"?, ...}`` of a job.

    A waiting job (its worker is in line for a free slot, see :mod:`tlcore.jobs.slots`) also has
    ``position`` (1 = next) and ``slots`` (how many jobs run at once on this server).
    """
    job_dir = Path(job_dir)
    meta = job_meta(job_dir)
    if meta is None:
        return {"status": "missing"}
    stopped = (job_dir / _STOP).exists()
    try:
        record = json.loads((job_dir / _RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    executor = meta.get("executor") if isinstance(meta.get("executor"), dict) else {}
    on_cluster = executor.get("engine") == "ray"
    if record is not None and (record.get("task") != executor.get("task") if on_cluster else
                               record.get("pid", meta.get("pid")) != meta.get("pid")):
        record = None  # written late by the reaper of a worker this job has since replaced (resume)
    if record is None and on_cluster:
        return _cluster_status(job_dir, meta, executor, stopped)
    if record is None:
        if _alive(int(meta.get("pid", -1))):
            if stopped:
                return {**meta, "status": "stopping"}
            last = _last_event(job_dir)
            if last.get("type") == WAITING:
                return {**meta, "status": "waiting", "position": last.get("position"), "slots": last.get("slots")}
            return {**meta, "status": "running"}
        # The worker is gone without a result (killed, or the server restarted).
        events = read_events(job_dir)
        last = events[-1] if events else {}
        if last.get("type") == DONE:
            return {**meta, "status": "stopped" if stopped else "done", "result": last.get("result")}
        if last.get("type") == ERROR and last.get("message"):  # its result is not recorded (yet)
            return {**meta, "status": "failed", "error": last["message"]}
        return {**meta, "status": "failed", "error": "the training process ended unexpectedly"}
    if record.get("exit_code") == 0:
        return {**meta, "status": "stopped" if stopped else "done", "result": record.get("result")}
    return {**meta, "status": "failed", "error": record.get("error", "unknown error")}


def _cluster_status(job_dir: Path, meta: dict, executor: dict, stopped: bool) -> dict:
    """The status of a Ray job whose end is not recorded yet (no pid of this machine to look at)."""
    state = ray_jobs.task_state(job_dir, executor)
    if state == "queued":
        return {**meta, "status": "stopping" if stopped else "waiting", "position": None,
                "slots": executor.get("slots")}
    if state == "running":
        return {**meta, "status": "stopping" if stopped else "running"}
    if state == "lost":
        return {**meta, "status": "failed", "error": "the server that sent this job to the Ray cluster stopped, "
                                                     "and the cluster ended the job with it"}
    return {**meta, "status": "stopping" if stopped else "running"}  # ended: its end is being written


def request_stop(job_dir: str | Path) -> None:
    """Ask the worker to stop after the current epoch (it keeps what it has trained); a Ray job still in the
    cluster's queue leaves it (:func:`tlcore.jobs.ray_jobs.stop`)."""
    (Path(job_dir) / _STOP).touch()
    meta = job_meta(job_dir) or {}
    executor = meta.get("executor")
    if isinstance(executor, dict) and executor.get("engine") == "ray":
        ray_jobs.stop(job_dir, executor)


def list_jobs(root: str | Path) -> list[Path]:
    """Job directories under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    jobs = [p for p in root.iterdir() if (p / _META).is_file()]
    # By start time: a folder's mtime changes whenever its job writes a file.
    return sorted(jobs, key=_started, reverse=True)


def _started(job_dir: Path) -> float:
    try:
        return float(json.loads((job_dir / _META).read_text(encoding="utf-8"))["started"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return (job_dir / _META).stat().st_mtime
        except OSError:
            return 0.0
