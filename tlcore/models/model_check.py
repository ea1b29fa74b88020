"""Open a model file from outside this server in a separate process with time and memory limits first.

The dashboard's server process is shared by every user: a crafted model file parsed there (HDF5,
Keras, the TFLite interpreter are native code) could crash it, hang it or exhaust its memory for
everyone. So before the dashboard loads a model this server did not produce (:mod:`tlcore.io.produced`),
:func:`ensure_checked` runs ``python -m tlcore.models.model_check PATH`` with the very loader the dashboard
uses (:func:`tlcore.models.model_files.load_model_file`) and one prediction on a blank image. The worker
limits itself before it touches the file (``RLIMIT_DATA``, which counts heap and anonymous maps but
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

__all__ = ["digest_of", "is_trusted", "ensure_checked", "check_in_worker", "check_seconds", "check_mb", "main"]

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


def _worker_argv(path: Path, mb: float, seconds: float) -> list[str]:
    return [sys.executable, "-m", "tlcore.models.model_check", str(path.absolute()), "--max-mb", f"{mb:g}",
            "--max-seconds", f"{seconds:g}"]


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


def _kill(proc: subprocess.Popen) -> None:
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
    with _CHECKS, tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(_worker_argv(path, mb, seconds), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=errors, env=env, start_new_session=True)
        except OSError as exc:
            raise TLError(f"cannot start the process that checks model files ({exc.strerror or exc})") from None
        over = None
        with proc:
            try:
                over = _watch(proc, seconds, mb)
            except BaseException:  # never leave a worker behind, whatever stops this thread
                _kill(proc)
                raise
            verdict = _read_verdict(proc.stdout.read(_MAX_VERDICT)) if over is None else None
        passed = verdict is not None and verdict.get("ok") is True and proc.returncode == 0
        if not passed:
            errors.seek(0, os.SEEK_END)
            errors.seek(max(0, errors.tell() - 4000))
            log.warning("model check of %s refused (exit %s, %s): %s", path, proc.returncode, over or verdict,
                        errors.read().decode("utf-8", "replace"))
    if passed:
        return
    if over == "time":
        raise TLError(f"{name!r} is refused: opening it in the process that checks model files took more than "
                      f"{seconds:g} s")
    if over == "memory" or (verdict is not None and verdict.get("memory")):
        raise TLError(f"{name!r} is refused: opening it in the process that checks model files needed more than "
                      f"{mb:g} MB of memory")
    if verdict is not None and not verdict.get("ok") and isinstance(verdict.get("error"), str):
        raise TLError(verdict["error"])
    code = proc.returncode
    if code < 0:
        how = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        raise TLError(f"{name!r} is refused: it crashed the process that checks model files ({how})")
    raise TLError(f"{name!r} is refused: the process that checks model files ended without passing it "
                  f"(exit {code})")


def _watch(proc: subprocess.Popen, seconds: float, mb: float) -> str | None:
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


def main(argv: list[str] | None = None) -> int:
    """``python -m tlcore.models.model_check PATH --max-mb MB --max-seconds S``: one JSON verdict line on stdout."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tlcore.models.model_check")
    parser.add_argument("path")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MB)
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_SECONDS)
    args = parser.parse_args(argv)
    _limit_self(args.max_mb, args.max_seconds)
    # The verdict goes to the real stdout; anything the loaders print goes to stderr (the server's log).
    verdict_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    verdict = _open(Path(args.path))
    verdict_out.write(json.dumps(verdict) + "\n")
    verdict_out.flush()
    return 0 if verdict.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
