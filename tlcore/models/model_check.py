"""Open a model file from outside this server in a separate process with time and memory limits first.

The dashboard's server process is shared by every user: a crafted model file parsed there (HDF5,
Keras, the TFLite interpreter are native code) could crash it, hang it or exhaust its memory for
everyone. So before the dashboard loads a model this server did not produce (:mod:`tlcore.io.produced`),
:func:`ensure_checked` runs ``python -m tlcore check-model PATH`` (:func:`check_here`) with the very loader the
dashboard uses (:func:`tlcore.models.model_files.load_model_file`) and one prediction on a blank image, in a
process forked from the server's warm worker when it is ready (:mod:`tlcore.jobs.warm`: TensorFlow is imported
already, so a check takes a fraction of a second), else in a new one. The worker limits itself before it touches
the file (``RLIMIT_DATA``, which counts heap and anonymous maps but
not the address space TensorFlow merely reserves, so it fits where ``RLIMIT_AS`` does not; CPU time;
no core file); the server kills its whole process group when the wall-clock limit passes or its
resident memory goes over the limit. Only a file that passed is recorded (checked once) and loaded
in the server process; any other outcome is one :class:`TLError` sentence, and the server carries on.

The CLI and the job workers are separate processes already and load directly.

Limits: ``$TLCORE_MODEL_CHECK_SECONDS`` (default 120) and ``$TLCORE_MODEL_CHECK_MB`` (default 4096;
TensorFlow and a backbone take about 1 GB here, and its thread stacks grow with the cores).
At most two checks run at once per server process; more wait for their turn.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, ContextManager

from ..io.env import positive_number
from ..io.errors import TLError
from ..io.paths import tlcore_environment
from ..io.produced import is_recorded, model_digest, record_digest

__all__ = ["digest_of", "is_trusted", "ensure_checked", "check_in_worker", "check_here", "refusal_of", "check_seconds",
           "check_mb", "DEFAULT_MB", "DEFAULT_SECONDS"]

log = logging.getLogger("tlcore")

DEFAULT_SECONDS = 120.0
DEFAULT_MB = 4096.0
_POLL = 0.1  # seconds between looks at the worker's memory while it runs
_MAX_VERDICT = 1 << 16
_CHECKS = threading.BoundedSemaphore(2)  # several users at once must not start a TensorFlow each


def check_seconds() -> float:
    """The wall-clock limit of one check (``$TLCORE_MODEL_CHECK_SECONDS``, default 120)."""
    return positive_number("TLCORE_MODEL_CHECK_SECONDS", DEFAULT_SECONDS, "seconds")


def check_mb() -> float:
    """The memory limit of one check in MB (``$TLCORE_MODEL_CHECK_MB``, default 4096)."""
    return positive_number("TLCORE_MODEL_CHECK_MB", DEFAULT_MB, "megabytes")


def digest_of(path: str | Path) -> str:
    """What a model is known by in :mod:`tlcore.io.produced`: a run folder's :func:`~tlcore.models.run.run_digest`,
    a file's own digest."""
    path = Path(path)
    if not path.is_dir():
        return model_digest(path)
    from .run import run_digest  # Keras: the worker imports it only after limiting itself

    return run_digest(path)


def is_trusted(path: str | Path) -> bool:
    """Whether the model at ``path`` (file or run folder) may be parsed in this process without a check."""
    try:
        return is_recorded(digest_of(path))
    except TLError:
        return False


def ensure_checked(path: str | Path, progress: Callable[[], ContextManager] | None = None) -> None:
    """Return when the model at ``path`` may be loaded in this process; else raise :class:`TLError`.

    A file (or run folder) this server produced or already checked returns at once; anything else is
    opened by :func:`check_in_worker` (inside ``progress()``, e.g. a spinner, as it takes seconds) and
    recorded when it passes, so it is checked once.
    """
    path = Path(path)
    digest = digest_of(path)
    if is_recorded(digest):
        return
    with progress() if progress is not None else contextlib.nullcontext():
        check_in_worker(path)
    # What passed is what gets trusted: a file replaced during the check is not.
    if digest_of(path) != digest:
        raise TLError(f"{_name(path)!r} changed while it was being checked; load it again")
    record_digest(digest)


def _name(path: Path) -> str:
    """How messages name a model: a file by its name, a run folder by its path (as the loaders do)."""
    return str(path) if path.is_dir() else path.name


def _check_args(path: Path, mb: float, seconds: float) -> list[str]:
    return ["check-model", str(path.absolute()), "--max-mb", f"{mb:g}", "--max-seconds", f"{seconds:g}", "--json"]


def _worker_argv(path: Path, mb: float, seconds: float) -> list[str]:
    return [sys.executable, "-m", "tlcore", *_check_args(path, mb, seconds)]


def _start(path: Path, mb: float, seconds: float, env: dict[str, str], folder: Path, out, err):
    """The checking process, its output on the files ``out`` and ``err`` in ``folder``: forked by this server's warm
    worker when it has one ready (TensorFlow imported already: the check takes a fraction of a second instead of
    the seconds a new process spends importing it), else a new process. Either waits as a Popen does."""
    from ..jobs import warm

    pid = warm.spawn(_check_args(path, mb, seconds), env, folder, out.fileno(), err.fileno())
    if pid is not None:
        return warm.Forked(pid, folder)
    return subprocess.Popen(_worker_argv(path, mb, seconds), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            env=env, start_new_session=True)


def _rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0 when it cannot be read: gone, or no /proc on this system)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group: nothing the worker started outlives it
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def check_in_worker(path: str | Path) -> None:
    """Open ``path`` with the dashboard's loader in a limited worker process; :class:`TLError` unless it passed."""
    path = Path(path)
    name = _name(path)
    seconds, mb = check_seconds(), check_mb()
    env = tlcore_environment()
    with _CHECKS, tempfile.TemporaryDirectory(prefix="tlcore-check-") as folder:
        folder = Path(folder)
        try:
            with open(folder / "stdout.log", "wb") as out, open(folder / "stderr.log", "wb") as err:
                proc = _start(path, mb, seconds, env, folder, out, err)
        except OSError as exc:
            raise TLError(f"cannot start the process that checks model files ({exc.strerror or exc})") from None
        try:
            over = _watch(proc, seconds, mb)
        except BaseException:  # never leave a worker behind, whatever stops this thread
            _kill(proc)
            raise
        verdict = _read_verdict(_tail(folder / "stdout.log", _MAX_VERDICT)) if over is None else None
        code = proc.returncode
        passed = verdict is not None and verdict.get("ok") is True and code == 0
        if not passed:
            log.warning("model check of %s refused (exit %s, %s): %s", path, code, over or verdict,
                        _tail(folder / "stderr.log", 4000).decode("utf-8", "replace"))
    if not passed:
        raise TLError(_refusal(name, verdict, over, code, seconds, mb))


def _tail(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return f.read()


def _refusal(name: str, verdict: dict | None, over: str | None, code: int, seconds: float, mb: float) -> str:
    """The one sentence for a model that did not pass: over a limit, the worker's own reason, a crash, or no pass."""
    if over == "time":
        return (f"{name!r} is refused: opening it in the process that checks model files took more than "
                f"{seconds:g} s")
    if over == "memory" or (verdict is not None and verdict.get("memory")):
        return (f"{name!r} is refused: opening it in the process that checks model files needed more than "
                f"{mb:g} MB of memory")
    if verdict is not None and not verdict.get("ok") and isinstance(verdict.get("error"), str):
        return verdict["error"]
    if code < 0:
        how = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        return f"{name!r} is refused: it crashed the process that checks model files ({how})"
    return f"{name!r} is refused: the process that checks model files ended without passing it (exit {code})"


def _watch(proc, seconds: float, mb: float) -> str | None:
    """Wait for the worker; kill it when it passes the time or memory limit. ``"time"``, ``"memory"`` or None."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            proc.wait(timeout=_POLL)
            return None
        except subprocess.TimeoutExpired:
            pass
        over = "memory" if _rss_bytes(proc.pid) > mb * (1 << 20) else "time" if time.monotonic() > deadline else None
        if over:
            _kill(proc)
            return over


def _read_verdict(data: bytes) -> dict | None:
    try:
        verdict = json.loads(data.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return verdict if isinstance(verdict, dict) else None


# The worker ----------------------------------------------------------------------------------------

def _limit_self(mb: float, seconds: float) -> None:
    """Memory, CPU time and core-file limits, soft and hard alike, before the file is touched."""
    import resource

    data = int(mb * (1 << 20))
    cpu = int(seconds * (os.cpu_count() or 1)) + 5  # CPU time adds up over TensorFlow's threads
    for kind, value in ((resource.RLIMIT_DATA, data), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, cpu)):
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):  # e.g. an operator's hard limit already lower: that one holds
            pass
    # Should the server die and never kill this process, the kernel ends it (SIGALRM's default action).
    signal.alarm(int(seconds) + 5)


def _open(path: Path) -> dict:
    """Load ``path`` as the dashboard would and predict once: the verdict."""
    import numpy as np

    from .model_files import load_model_file

    name = _name(path)
    try:
        model = load_model_file(path)
        size = int(model.input_size)
        probs = np.asarray(model.predict_batch(np.zeros((1, size, size, 3), np.float32)))
        if probs.shape != (1, len(model.classes)):
            return {"ok": False, "error": f"{name!r} gives outputs of shape {list(probs.shape)} for one image of "
                                          f"{len(model.classes)} classes"}
    except TLError as exc:
        return {"ok": False, "error": str(exc)}
    except MemoryError:
        return {"ok": False, "memory": True}
    except Exception as exc:  # noqa: BLE001 - whatever the loaders raise for a crafted file is a refusal
        memory = type(exc).__name__ == "ResourceExhaustedError"  # TensorFlow's out-of-memory
        return {"ok": False, "memory": memory,
                "error": f"{name!r} cannot be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"}
    return {"ok": True, "classes": len(model.classes), "input_size": size}


def check_here(path: str | Path, mb: float = DEFAULT_MB, seconds: float = DEFAULT_SECONDS) -> dict:
    """In the checking process (``python -m tlcore check-model``): limit this process to ``mb`` megabytes and
    ``seconds`` (no core file), then open ``path`` as the dashboard would and predict once; the verdict,
    ``{"ok": true, "classes", "input_size"}`` or ``{"ok": false, "error"?, "memory"?}``. Whatever the loaders print
    on standard output goes to standard error while they run: the verdict is the last line the command prints."""
    for value, option in ((mb, "--max-mb"), (seconds, "--max-seconds")):
        if not value > 0:
            raise TLError(f"{option} {value:g} is not allowed; give a number above 0")
    _limit_self(mb, seconds)
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        return _open(Path(path))
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)


def refusal_of(path: str | Path, verdict: dict, mb: float) -> str:
    """The sentence a refused ``verdict`` of :func:`check_here` gives (the dashboard's own wording)."""
    return _refusal(_name(Path(path)), verdict, None, 0, DEFAULT_SECONDS, mb)
