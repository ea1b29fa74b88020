"""How many runs have been scored on each test set, kept across runs in the cache folder.

Every run reports its test accuracy; choosing among runs by that number
tunes the model on the test set. The ledger lets a run say how often its
test set has been looked at already.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from ..io.atomic import write_bytes_atomic
from ..io.paths import default_cache_dir

__all__ = ["fingerprint_test_set", "record_test_scoring", "times_scored"]

_FILE = "test_ledger.json"


def fingerprint_test_set(paths) -> str | None:
    """The identity of a test split by its images' contents (not names): sha256 of their sorted sha256s.

    None for an empty split (nothing is scored). Unreadable files count by
    their path, so a split with one is still recognised.
    """
    hashes = []
    for p in paths:
        try:
            hashes.append(hashlib.sha256(Path(p).read_bytes()).hexdigest())
        except OSError:
            hashes.append(f"unreadable:{p}")
    if not hashes:
        return None
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def _ledger_path(cache_dir) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / _FILE


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: counting starts again rather than failing a finished run
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _locked(path: Path):
    # Two runs finishing together must not lose each other's count.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no locking here: a rare lost count is acceptable
            pass
        yield


def times_scored(fingerprint: str, cache_dir=None) -> int:
    """How many runs have been scored on the test set ``fingerprint``."""
    return int(_read(_ledger_path(cache_dir)).get(fingerprint, 0))


def record_test_scoring(fingerprint: str, cache_dir=None) -> int:
    """Count one more run scored on the test set ``fingerprint``; returns the new count (1 = first look)."""
    path = _ledger_path(cache_dir)
    with _locked(path):
        ledger = _read(path)
        ledger[fingerprint] = int(ledger.get(fingerprint, 0)) + 1
        write_bytes_atomic(path, json.dumps(ledger, indent=1, sort_keys=True).encode("utf-8"))
    return ledger[fingerprint]
