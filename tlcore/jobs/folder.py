"""Which values of a job folder's JSON files are paths, and how they travel in a project.

Every JSON file tlcore writes into a job folder, and the keys that hold paths in it (audited for
issue 14; a key means a path wherever it appears, at any depth, alone or in a list):

- ``job.json`` (:func:`tlcore.jobs.runner.start_job`): ``parent`` (the run a fine-tune, export,
  robustness, harden or ideal job works on), ``scratch_of`` (the run a from-scratch twin repeats);
  ``argv`` is a command line, never kept from a project (see :mod:`tlcore.lab.project`).
- ``result.json`` and the ``done`` event of ``events.jsonl`` (a command's result): ``run_dir``
  (train, finetune, harden, export), ``path`` (every ``skipped`` file, every export, every
  prediction), ``labels`` (an export's ``labels.txt``), ``bundle`` (the export bundle), ``source``
  (the photos an export was verified on: a folder, or the texts ``"run test split"``,
  ``"run val split"``, ``"none"``), ``image`` and ``snapshots`` (ideal-class image and its frames),
  ``out`` (attack images).
- ``events.jsonl``: ``image`` (``ideal`` events); other events hold numbers and texts.
- The run folder: ``config.json`` ``weights`` (top level and under ``train``: ``"imagenet"``,
  None or a weights file), ``samples.json`` and ``predictions.json`` ``path``, ``metrics.json``
  ``path`` (its ``skipped`` files).
- A checkpoint's ``state.json``: ``settings.weights`` (as in ``config.json``); its ``data`` is a
  hash of the training list, not a path.

In a saved project these values are relative to the workspace root (:func:`paths_relative`);
opening puts each through :func:`tlcore.io.confine.confine` against the receiving workspace
(:func:`paths_confined`), so no value of a job file names anything outside it. Readers (pages,
views) open such a path only through :func:`job_path`, in case a file was damaged after opening.
"""
from __future__ import annotations

from pathlib import Path

from ..io.confine import confine, confined_or_none, relative_to
from ..io.errors import TLError

__all__ = ["PATH_KEYS", "TEXT_VALUES", "paths_relative", "paths_confined", "inside_form", "job_path"]

PATH_KEYS = frozenset({"path", "parent", "scratch_of", "run_dir", "labels", "bundle", "image", "snapshots",
                       "out", "source", "weights"})
# Values some path keys also take that are words, not paths (kept as they are).
TEXT_VALUES = {"source": frozenset({"run test split", "run val split", "none"}),
               "weights": frozenset({"imagenet", "none"})}


def _is_text(key: str, value) -> bool:
    return isinstance(value, str) and value in TEXT_VALUES.get(key, ())


def paths_relative(value, root: str | Path, key: str | None = None):
    """``value`` (parsed JSON) with every path under a :data:`PATH_KEYS` key that lies inside ``root`` written
    relative to it (POSIX form); paths outside, words and everything else are left as they are."""
    if isinstance(value, dict):
        return {k: paths_relative(v, root, k if k in PATH_KEYS else None) for k, v in value.items()}
    if isinstance(value, list):
        return [paths_relative(v, root, key) for v in value]
    if key is not None and isinstance(value, str) and not _is_text(key, value):
        return relative_to(root, value)
    return value


def inside_form(root: str | Path, path: Path) -> Path:
    """``path`` (resolved, inside ``root`` resolved) written under ``root`` as the workspace names itself, so
    it compares equal to the paths pages build from the workspace folder."""
    return Path(root).absolute() / path.relative_to(Path(root).resolve())


def _confined(value, root: Path, key: str):
    if value is None or _is_text(key, value):
        return value
    if isinstance(value, list):
        return [_confined(v, root, key) for v in value]
    if isinstance(value, dict):
        return paths_confined(value, root)
    if not isinstance(value, str):
        raise TLError(f"the project's value {value!r} for {key!r} is not a path; it cannot be opened")
    try:
        return str(inside_form(root, confine(root, value, f"path for {key!r}")))
    except TLError:
        raise TLError(f"the project refers to {value!r} (under {key!r}), outside its workspace; "
                      "it cannot be opened") from None


def paths_confined(value, root: str | Path):
    """``value`` (parsed JSON) with every path under a :data:`PATH_KEYS` key, relative (to ``root``) or absolute,
    turned into an absolute path inside ``root`` after resolving symbolic links; :class:`TLError` naming the
    first value that is not a path or leads outside."""
    root = Path(root)
    if isinstance(value, dict):
        return {k: _confined(v, root, k) if k in PATH_KEYS else paths_confined(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [paths_confined(v, root) for v in value]
    return value


def job_path(root: str | Path, value, what: str = "file") -> Path | None:
    """A path read from a job file as a reader may open it: through :func:`tlcore.io.confine.confine` (inside
    ``root`` after resolving links) and written under ``root`` as the workspace names itself; None when the
    value is missing or refused (a damaged file: the reader skips it)."""
    path = confined_or_none(root, value, what)
    return None if path is None else inside_form(root, path)
