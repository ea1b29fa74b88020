"""Where tlcore keeps its caches."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir() -> Path:
    """``$TLCORE_CACHE_DIR`` or ``~/.cache/tlcore``."""
    return Path(os.environ.get("TLCORE_CACHE_DIR", Path.home() / ".cache" / "tlcore"))
