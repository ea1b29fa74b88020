"""The warm worker (``python -m tlcore.cli.warm_worker SOCKET``): TensorFlow imported once, a forked child per job.

Started by :func:`tlcore.jobs.warm.warm_up`, which says why it exists and how the server talks to it. Here: import
what every command needs without running any TensorFlow operation (a forked child then starts TensorFlow's runtime
itself, as a new process would), listen on ``SOCKET``, and for each request fork a child that becomes the job's
worker; reap the children and record each end in its job folder; leave when the server's pipe (standard input)
closes.
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import struct
import sys
from pathlib import Path

from ..jobs.slots import ADMISSION_ENV, Admission

log = logging.getLogger("tlcore")

__all__ = ["main"]


def _preload() -> None:
    """Import what the commands import (the parser's option defaults import the backbones, hence Keras and
    TensorFlow), and check that no TensorFlow runtime was started: a fork must not copy one."""
    from ..export import formats  # noqa: F401
    from ..training import pipeline  # noqa: F401
    from .main import build_parser

    build_parser()
    from tensorflow.python.eager import context

    if getattr(context.context(), "_initialized", False):
        raise RuntimeError("TensorFlow's runtime started while preloading; a forked worker would share it")


def _peer_is_me(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()


def _well_formed(request, fds: list[int]) -> bool:
    """A request from the server: a command line, an environment, a folder, and the descriptors it names."""
    try:
        return (isinstance(request["args"], list) and isinstance(request["env"], dict)
                and isinstance(request["cwd"], str) and isinstance(request["job_dir"], str)
                and all(isinstance(n, int) for n in request["fds"]) and len(fds) == 2 + len(request["fds"]))
    except (KeyError, TypeError):
        return False


def _become_worker(request: dict, fds: list[int], own: list[int], settled: int) -> None:
    """In the forked child: take the job's descriptors, session, directory and environment, run the command,
    and exit with its status (never returns)."""
    code = 1
    try:
        os.setsid()  # its own session, as start_job gives a process: a Stop or kill reaches its group only
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in own:  # the warm worker's socket, pipe and selector are not the job's
            try:
                os.close(fd)
            except OSError:
                pass
        # Standard output and error to the job's logs; the slot locks stay at the numbers they arrived at, and the
        # job's environment is told those numbers (never dup2 onto a number a library of this process may hold).
        out, err, *locks = fds
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        env = dict(request["env"])
        if ADMISSION_ENV in env and locks:  # a job on a Ray cluster holds no lock here (its variable says so)
            env[ADMISSION_ENV] = Admission.renumbered(env[ADMISSION_ENV], dict(zip(request["fds"], locks)))
        for fd in locks:
            os.set_inheritable(fd, True)  # as a started process's pass_fds would be, for what the job starts
        os.write(settled, b"1")
        os.close(settled)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(env)
        import random

        import numpy as np

        random.seed()  # a new process draws new random numbers; the fork copied the warm worker's state
        np.random.seed()
        args = [str(a) for a in request["args"]]
        sys.argv = [sys.argv[0], *args]
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        from .main import main as run_command, route_native_stderr

        route_native_stderr()
        code = run_command(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the job's stderr.log gets it, as a crashed process's would
        import traceback

        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # what a process's normal exit runs (temporary folders' finalizers, ...)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap(children: dict[int, Path]) -> None:
    from ..jobs.runner import record_end

    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        job_dir = children.pop(pid, None)
        if job_dir is not None:
            record_end(pid, os.waitstatus_to_exitcode(status), job_dir)


def main(argv: list[str] | None = None) -> int:
    """Serve forks on the socket ``argv[0]`` until standard input closes."""
    from ..jobs.warm import receive_message, send_message

    path = Path((argv if argv is not None else sys.argv[1:])[0])
    _preload()
    woken_r, woken_w = os.pipe()  # SIGCHLD writes here, so the loop reaps at once
    for fd in (woken_r, woken_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(woken_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path) + ".part")
    os.chmod(str(path) + ".part", 0o600)
    server.listen(8)
    os.replace(str(path) + ".part", path)  # the server connects once the socket has its name
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "request")
    selector.register(0, selectors.EVENT_READ, "server gone")
    selector.register(woken_r, selectors.EVENT_READ, "child ended")
    own = [server.fileno(), woken_r, woken_w, selector.fileno() if hasattr(selector, "fileno") else -1]
    children: dict[int, Path] = {}
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "server gone":
                if not os.read(0, 4096):
                    _reap(children)
                    path.unlink(missing_ok=True)
                    return 0
            elif key.data == "child ended":
                try:
                    while os.read(woken_r, 512):
                        pass
                except BlockingIOError:
                    pass
            else:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(30)
                    try:
                        if not _peer_is_me(conn):
                            continue
                        request, fds = receive_message(conn)
                    except (OSError, ValueError) as exc:
                        log.warning("warm worker: a request could not be read (%s)", exc)
                        continue
                    if not _well_formed(request, fds):
                        for fd in fds:
                            os.close(fd)
                        send_message(conn, {"pid": -1})
                        continue
                    sys.stdout.flush()
                    sys.stderr.flush()
                    settled_r, settled_w = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(settled_r)
                        _become_worker(request, fds, [*own, conn.fileno()], settled_w)
                    os.close(settled_w)
                    os.read(settled_r, 1)  # the child has its session and descriptors: a kill now reaches its group
                    os.close(settled_r)
                    for fd in fds:
                        os.close(fd)
                    children[pid] = Path(request["job_dir"])
                    send_message(conn, {"pid": pid})
        _reap(children)


if __name__ == "__main__":
    sys.exit(main())
