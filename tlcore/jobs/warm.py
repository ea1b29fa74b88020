"""A warm worker: jobs that start without importing TensorFlow again.

A job is a ``python -m tlcore`` process, and such a process spends about four seconds of CPU importing TensorFlow
before it does anything. The warm worker (:mod:`tlcore.cli.warm_worker`) is one process per server that has done
that import once, without running any TensorFlow operation, and forks a fresh child for each job: the child is
the job's worker, in its own session, with the job's command line, environment, working directory, log files and
slot locks, exactly as :func:`tlcore.jobs.runner.start_job` would have started it, minus the import. The warm
worker reaps its children and records each one's end in its job folder, as the runner's reaping thread does for
the processes it starts itself.

This module is the server's side: :func:`warm_up` starts the warm worker (in the background; it is ready a few
seconds later), :func:`spawn` asks it for a job's worker and returns the child's pid, or None when there is no
warm worker ready (the caller then starts a process as before). The two talk over a Unix socket in a folder only
this user can open, and the warm worker checks that the peer is this user; it leaves when the server does (it
watches a pipe the server holds open). ``TLCORE_WARM_JOBS=0`` turns it off.

A warm worker runs the code it imported when it started: restart the server after changing ``tlcore``.
"""
from __future__ import annotations

import array
import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..io.env import whole_number
from ..io.paths import tlcore_environment

__all__ = ["ENV", "enabled", "warm_up", "ready", "spawn", "socket_path", "ask", "Forked", "send_message",
           "receive_message"]

ENV = "TLCORE_WARM_JOBS"
_SOCKET = "warm.sock"
_MAX_MESSAGE = 1 << 20  # a request is a command line and an environment: far below this
_MAX_FDS = 16

log = logging.getLogger("tlcore")

_lock = threading.Lock()
_state: dict = {}  # "proc", "folder", "pipe": the warm worker this process started, once


def enabled() -> bool:
    """Whether jobs start from a warm worker (``$TLCORE_WARM_JOBS``, 1 by default; 0 turns it off): this server's
    own, or, when jobs run on a Ray cluster, one on each node (:mod:`tlcore.jobs.ray_warm`; the runner decides
    which, :func:`tlcore.jobs.runner.warm_up_workers`)."""
    return whole_number(ENV, 1, 0) > 0


def send_message(sock: socket.socket, payload: dict, fds: tuple[int, ...] = ()) -> None:
    """One JSON message (length first) with ``fds`` passed alongside it (SCM_RIGHTS)."""
    data = json.dumps(payload).encode("utf-8")
    header = len(data).to_bytes(4, "big")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([header + data[:4096]], ancillary)
    if len(data) > 4096:
        sock.sendall(data[4096:])


def receive_message(sock: socket.socket) -> tuple[dict, list[int]]:
    """The message :func:`send_message` sent and the descriptors that came with it (the caller closes them)."""
    fd_size = array.array("i").itemsize
    first, ancillary, _, _ = sock.recvmsg(4 + 4096, socket.CMSG_SPACE(_MAX_FDS * fd_size))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(data[:len(data) - len(data) % fd_size])
            fds.extend(received)
    if len(first) < 4:
        raise ValueError("a warm worker message ended before its length")
    size = int.from_bytes(first[:4], "big")
    if size > _MAX_MESSAGE:
        raise ValueError(f"a warm worker message of {size} bytes is too long")
    data = bytearray(first[4:])
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("a warm worker message ended early")
        data += chunk
    return json.loads(bytes(data[:size])), fds


def warm_up() -> None:
    """Start this server's warm worker unless it runs already or is turned off (it imports TensorFlow in the
    background; until it is ready, :func:`spawn` returns None)."""
    if not enabled():
        return
    with _lock:
        proc = _state.get("proc")
        if proc is not None and proc.poll() is None:
            return
        _stop_locked()
        folder = Path(tempfile.mkdtemp(prefix="tlcore-warm-"))  # 0700: no other user can reach the socket
        read_end, write_end = os.pipe()  # the warm worker leaves when this process (the write end) is gone
        os.set_inheritable(write_end, False)
        env = tlcore_environment()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "tlcore.cli.warm_worker", str(folder / _SOCKET)],
                                    stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        except OSError as exc:
            log.warning("the warm worker did not start (%s); jobs start their own processes", exc)
            os.close(write_end)
            return
        finally:
            os.close(read_end)
        _state.update(proc=proc, folder=folder, pipe=write_end)
        if not _state.get("atexit"):
            atexit.register(_stop)
            _state["atexit"] = True


def ready() -> int | None:
    """The pid of this server's warm worker once it takes jobs; None before (or when it is off or gone)."""
    with _lock:
        proc, folder = _state.get("proc"), _state.get("folder")
    if proc is None or proc.poll() is not None or not (folder / _SOCKET).exists():
        return None
    return proc.pid


def _stop() -> None:
    with _lock:
        _stop_locked()


def _stop_locked() -> None:
    pipe = _state.pop("pipe", None)
    if pipe is not None:
        os.close(pipe)  # the warm worker sees the end of its pipe and leaves
    proc = _state.pop("proc", None)
    if proc is not None:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    folder = _state.pop("folder", None)
    if folder is not None:
        for path in (folder / _SOCKET, folder):
            try:
                path.unlink() if path.name == _SOCKET else path.rmdir()
            except OSError:
                pass


def spawn(args: list[str], env: dict[str, str], job_dir: Path, stdout: int, stderr: int,
          fds: tuple[int, ...] = ()) -> int | None:
    """Ask the warm worker for the worker of job ``job_dir``: ``python -m tlcore ARGS`` in this working directory
    with environment ``env``, standard output and error on ``stdout`` and ``stderr``, and ``fds`` inherited at
    their numbers. Returns the worker's pid, or None when no warm worker is ready (the caller starts the process
    itself); the first call starts the warm worker."""
    if not enabled():
        return None
    if ready() is None:
        warm_up()  # starts it unless it is importing already
        return None
    return ask(socket_path(), args, env, job_dir, stdout, stderr, fds)


def socket_path() -> Path | None:
    """The socket of this process's warm worker once it takes jobs (:func:`ready`), else None."""
    folder = _state.get("folder")
    return folder / _SOCKET if folder is not None and ready() is not None else None


def ask(path: Path | None, args: list[str], env: dict[str, str], job_dir: Path, stdout: int, stderr: int,
        fds: tuple[int, ...] = (), cwd: str | None = None) -> int | None:
    """Ask the warm worker listening on ``path`` for a job's worker, as :func:`spawn` describes (``cwd``: its working
    directory, this process's by default); the worker's pid, or None when it could not (the caller starts one)."""
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(path))
            send_message(sock, {"args": list(args), "env": dict(env), "cwd": cwd or os.getcwd(),
                                "job_dir": str(job_dir), "fds": list(fds)}, (stdout, stderr, *fds))
            reply, extra = receive_message(sock)
        for fd in extra:
            os.close(fd)
        pid = int(reply["pid"])
        return pid if pid > 0 else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the warm worker did not start a job (%s); starting its own process", exc)
        return None


class Forked:
    """A process a warm worker forked (:func:`ask`, with ``ends`` as its folder): not this process's child, so its
    exit status is read from the record the warm worker writes in ``ends`` when it reaps it. Waits as
    :class:`subprocess.Popen` does; ``remove``: the folder is removed once the status is read."""

    _LATE = 5.0  # seconds between the worker's end and the warm worker's record of it, at most

    def __init__(self, pid: int, ends: Path, remove: bool = False):
        self.pid, self._ends, self._remove, self.returncode = pid, Path(ends), remove, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                record = json.loads((self._ends / "result.json").read_text(encoding="utf-8"))
                if record.get("pid") == self.pid:
                    self.returncode = int(record["exit_code"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        gone = None
        while self.poll() is None:
            if not Path(f"/proc/{self.pid}").exists():
                gone = gone or time.monotonic()
                if time.monotonic() - gone > self._LATE:  # the warm worker died with it: no record will come
                    self.returncode = -1
                    break
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"forked process {self.pid}", timeout)
            time.sleep(0.05)
        if self._remove:
            shutil.rmtree(self._ends, ignore_errors=True)
        return self.returncode
