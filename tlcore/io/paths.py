"""Where tlcore keeps its caches, and where its own processes find it."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["default_cache_dir", "tlcore_environment", "start_tlcore"]

log = logging.getLogger("tlcore")


def default_cache_dir() -> Path:
    """``$TLCORE_CACHE_DIR`` or ``~/.cache/tlcore``."""
    return Path(os.environ.get("TLCORE_CACHE_DIR", Path.home() / ".cache" / "tlcore"))


def tlcore_environment() -> dict[str, str]:
    """This process's environment with tlcore's folder first on ``PYTHONPATH``: what a ``python -m tlcore...``
    process started from here needs to import this very tlcore, whatever its working directory."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


def start_tlcore(args: list[str], errors: Path, what: str) -> subprocess.Popen | None:
    """Start ``python -m tlcore ARGS`` in the background, in a session of its own (it outlives whoever started
    it), its standard error in ``errors`` (the last run's only). It is reaped when it ends, and an exit other than
    0 is logged naming ``what`` (a background step never fails anyone's work); None, logged, when it cannot start."""
    try:
        errors.parent.mkdir(parents=True, exist_ok=True)
        with open(errors, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tlcore", *args], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, env=tlcore_environment(),
                                    start_new_session=True)
    except OSError as exc:
        log.warning("could not start %s (%s)", what, exc)
        return None

    def reap() -> None:
        if proc.wait() != 0:
            log.warning("%s failed (status %s); see %s", what, proc.returncode, errors)

    threading.Thread(target=reap, daemon=True, name=f"reap-{proc.pid}").start()
    return proc
