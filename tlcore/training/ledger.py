"""Which runs a person has scored on each test set: the looks at test-split scores, kept across runs.

Choosing among runs by their test accuracy tunes the model on the test set,
and its score becomes too optimistic. Training and fine-tuning compute the
test split's predictions (the Evaluate page and the model card read them) but
do not count as a look: a look is a person reading a run's test-split scores
(the Evaluate page with the test split chosen, ``python -m tlcore evaluate``
on a run's own test photos). The ledger records, per test set (by its
images' contents), the runs scored on it; each run counts once however often
it is looked at, since looking at the same run again teaches nothing new.

The ledger is a JSON file, ``{fingerprint: [run key, ...]}``, in a folder the
caller chooses: the tlcore cache by default (the command line), the session's
workspace on the dashboard (sessions sharing the sample photos must not count
each other's looks).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from ..io.atomic import write_bytes_atomic
from ..io.paths import default_cache_dir
from ..jobs.folder import job_path
from ..models.run_files import read_run_json

__all__ = ["fingerprint_test_set", "record_test_scoring", "times_scored", "scored_runs", "run_key",
           "predictions_key", "run_fingerprint", "score_run_test_set", "score_if_test_set"]

_FILE = "test_ledger.json"


def _file_hash(path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return f"unreadable:{path}"


def _combined(hashes: list[str]) -> str | None:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest() if hashes else None


def fingerprint_test_set(paths) -> str | None:
    """The identity of a test split by its images' contents (not names): sha256 of their sorted sha256s.

    None for an empty split (nothing is scored). Unreadable files count by
    their path, so a split with one is still recognised.
    """
    return _combined([_file_hash(p) for p in paths])


def _ledger_path(folder) -> Path:
    return Path(folder if folder is not None else default_cache_dir()) / _FILE


def _read(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: counting starts again rather than failing a page or a command
    if not isinstance(data, dict):
        return {}
    # Earlier versions kept a bare count per test set, made by training runs, which no longer count as looks.
    return {fp: [k for k in runs if isinstance(k, str)] for fp, runs in data.items() if isinstance(runs, list)}


@contextlib.contextmanager
def _locked(path: Path):
    # Two looks recorded together must not lose each other's run.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no locking here: a rare lost look is acceptable
            pass
        yield


def times_scored(fingerprint: str, folder=None) -> int:
    """How many runs have been scored on the test set ``fingerprint`` (ledger in ``folder``, default the cache)."""
    return len(_read(_ledger_path(folder)).get(fingerprint, []))


def scored_runs(folder=None) -> frozenset[str]:
    """The keys (:func:`run_key`) of every run scored on any test set of the ledger in ``folder``."""
    return frozenset(k for runs in _read(_ledger_path(folder)).values() for k in runs)


def record_test_scoring(fingerprint: str, run: str, folder=None) -> int:
    """Count the run ``run`` (its :func:`run_key`) as scored on the test set ``fingerprint``; returns how many
    runs have been scored on it, this one included (1 = the first). A run already counted is not counted again."""
    path = _ledger_path(folder)
    if run in _read(path).get(fingerprint, []):
        return times_scored(fingerprint, folder)  # a look again at the same run: nothing to write
    with _locked(path):
        ledger = _read(path)
        runs = ledger.setdefault(fingerprint, [])
        if run not in runs:
            runs.append(run)
            write_bytes_atomic(path, json.dumps(ledger, indent=1, sort_keys=True).encode("utf-8"))
    return len(runs)


def predictions_key(rows) -> str | None:
    """:func:`run_key` from a run's parsed ``predictions.json`` rows (for a reader that has them already)."""
    test = [r for r in rows if isinstance(r, dict) and r.get("split") == "test"] if isinstance(rows, list) else []
    if not test:
        return None
    seen = sorted(json.dumps([r.get("label"), r.get("probs")]) for r in test)
    return hashlib.sha256("\n".join(seen).encode("utf-8")).hexdigest()


def run_key(run_dir: str | Path) -> str | None:
    """What identifies a run in the ledger: the sha256 of its test split's predictions (labels and
    probabilities, not paths), i.e. of exactly what a look shows. None when the run kept no test predictions.

    A copy of the run (a project opened elsewhere) keeps its key; a fine-tuned or hardened run gets its own.
    """
    return predictions_key(read_run_json(run_dir, "predictions.json", default=[]))


def run_fingerprint(run_dir: str | Path, root: str | Path | None = None) -> str | None:
    """The :func:`fingerprint_test_set` of a run's test split: recorded in its ``metrics.json`` by training, else
    (a run from an earlier version) computed from the photos its ``samples.json`` lists. With ``root`` (a
    workspace), only photos inside it are read, as every path of a run folder is. None without a test split."""
    recorded = read_run_json(run_dir, "metrics.json", default={}).get("test_fingerprint")
    if isinstance(recorded, str) and recorded:
        return recorded
    samples = read_run_json(run_dir, "samples.json", default=[])
    paths = [s.get("path") for s in samples if isinstance(s, dict) and s.get("split") == "test"]
    if root is None:
        return fingerprint_test_set(paths)
    # A path leading out of the workspace is not opened; it counts by its text, as an unreadable file does.
    return _combined([_file_hash(inside) if (inside := job_path(root, p, "photo")) is not None
                      else f"unreadable:{p}" for p in paths])


def score_run_test_set(run_dir: str | Path, folder=None, root: str | Path | None = None) -> int:
    """Record a look at the test-split scores of the run in ``run_dir``; returns how many runs have been scored
    on that test set, this one included (0 when the run kept no test split). ``folder`` holds the ledger
    (default: the cache); ``root`` confines the photos read, as in :func:`run_fingerprint`."""
    key = run_key(run_dir)
    fingerprint = run_fingerprint(run_dir, root) if key is not None else None
    if key is None or fingerprint is None:
        return 0
    return record_test_scoring(fingerprint, key, folder)


def score_if_test_set(run_dir: str | Path, paths, folder=None) -> int | None:
    """When ``paths`` (the photos a model was just evaluated on) are exactly the test split of the run in
    ``run_dir`` (by content), record the look as :func:`score_run_test_set` does and return the count; None
    when ``run_dir`` is no run or the photos are others (nothing recorded). Only a set of photos as large as the
    run's test split is read again, so evaluating on other data costs nothing."""
    paths = list(paths)
    n_test = read_run_json(run_dir, "metrics.json", default={}).get("n_test")
    if not paths or n_test != len(paths):
        return None
    fingerprint, key = run_fingerprint(run_dir), run_key(run_dir)
    if fingerprint is None or key is None or fingerprint_test_set(paths) != fingerprint:
        return None
    return record_test_scoring(fingerprint, key, folder)
