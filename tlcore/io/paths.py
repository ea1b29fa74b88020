"""Where tlcore keeps its caches, and where its own processes find it."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "tlcore_environment"]


def default_cache_dir() -> Path:
    """``$TLCORE_CACHE_DIR`` or ``~/.cache/tlcore``."""
    return Path(os.environ.get("TLCORE_CACHE_DIR", Path.home() / ".cache" / "tlcore"))


def tlcore_environment() -> dict[str, str]:
    """This process's environment with tlcore's folder first on ``PYTHONPATH``: what a ``python -m tlcore...``
    process started from here needs to import this very tlcore, whatever its working directory."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
