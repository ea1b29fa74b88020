"""The files of a run folder, read without Keras: ``config.json`` (backbone, classes, training settings),
``metrics.json`` (scores, curves, the layers fine-tuning trained, the test photos' fingerprint, whether class
weights were applied), ``samples.json`` (each photo's split), ``predictions.json`` (held-out predictions) and
``labels.txt``, ``corruptions.json`` (the latest accuracy under everyday corruptions, when measured), and the
folder ``tensorboard/`` (:data:`TENSORBOARD_DIR`: the run's TensorBoard logs, written by
:mod:`tlcore.training.tensorboard_log` and read by TensorBoard only). :mod:`tlcore.models.run` writes them and rebuilds
the model; pages, views and the other layers read them here, never by hand. A run may come from a project a
user supplied: paths inside these files are open only through :func:`tlcore.jobs.folder.job_path`.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..io.errors import TLError

__all__ = ["is_run", "read_run_json", "run_classes", "held_out_samples", "fine_tuned_layers", "training_done",
           "CORRUPTIONS_FILE", "corruptions_result", "TENSORBOARD_DIR"]

_REQUIRED = object()

CORRUPTIONS_FILE = "corruptions.json"  # written by tlcore.adversarial.corruptions through models.run
# The run's TensorBoard logs (tlcore.training.tensorboard_log writes them, models.run moves them in with the run).
# Nothing of Transfer Lab reads them back: they are for `tensorboard --logdir`.
TENSORBOARD_DIR = "tensorboard"


def is_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run (its ``config.json``): what a listing of finished runs shows."""
    return (Path(folder) / "config.json").is_file()


def read_run_json(run_dir: str | Path, name: str, default=_REQUIRED):
    """The parsed JSON file ``name`` of a run, or a :class:`TLError` saying what is missing or damaged; with a
    ``default``, that instead (for listings that pass over a damaged run), also when the file holds no object."""
    path = Path(run_dir) / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if default is not _REQUIRED:
            return default
        raise TLError(f"{str(run_dir)!r} has no {name}; train it again with this version") from None
    except (OSError, ValueError) as exc:
        if default is not _REQUIRED:
            return default
        raise TLError(f"{str(path)!r} is damaged ({exc})") from None
    if default is not _REQUIRED and not isinstance(value, type(default)):
        return default
    return value


def run_classes(run_dir: str | Path) -> list[str]:
    """The run's classes in output order (its ``config.json``), or a :class:`TLError` saying why not."""
    if not is_run(run_dir):  # as load_run says it (not "train it again")
        raise TLError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    config = read_run_json(run_dir, "config.json")
    classes = config.get("classes") if isinstance(config, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise TLError(f"{str(run_dir)!r} is not a run directory (its config.json names no classes)")
    return list(classes)


def held_out_samples(run_dir: str | Path) -> tuple[str, list[dict]]:
    """The run's test split, or its validation split when it has no test split: ``(split, samples)``.

    These images never trained the weights, so they are where an exported
    model is checked against the Keras one. Returns ``("", [])`` when the
    run kept neither.
    """
    samples = read_run_json(run_dir, "samples.json")
    for split in ("test", "val"):
        chosen = [s for s in samples if s.get("split") == split]
        if chosen:
            return split, chosen
    return "", []


def fine_tuned_layers(run_dir: str | Path) -> list[str]:
    """The backbone layers fine-tuning trained in this run (none for a head-only run): what the pages, the
    run history and the model card count, whatever unit the run's settings were given in."""
    config = read_run_json(run_dir, "config.json", default={})
    if not config.get("fine_tuned"):
        return []
    layers = read_run_json(run_dir, "metrics.json", default={}).get("fine_tuned_layers")
    return [str(name) for name in layers] if isinstance(layers, list) else []


def training_done(run_dir: str | Path) -> dict[str, bool]:
    """What training already did to the run, as :class:`tlcore.analysis.diagnosis.Done` takes it (its remedies
    skip those): ``fine_tuned``, ``augmented``, ``class_weighted`` (class weights applied), ``oversampled``,
    ``undersampled``. All False for what the run's files do not say."""
    config = read_run_json(run_dir, "config.json", default={})
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    weighted = read_run_json(run_dir, "metrics.json", default={}).get("class_weighted")
    if not isinstance(weighted, bool):
        # A run of an earlier version: "balanced" always weighed (without resampling); whether "auto" did depended
        # on the classes' balance, which is not recorded, so it counts as not done (the remedy is then shown).
        weighted = train.get("class_weights") == "balanced" and train.get("resample", "none") == "none"
    return {"fine_tuned": bool(config.get("fine_tuned")), "augmented": bool(train.get("augment")),
            "class_weighted": weighted, "oversampled": train.get("resample") == "oversample",
            "undersampled": train.get("resample") == "undersample"}


def corruptions_result(run_dir: str | Path) -> dict | None:
    """The run's latest accuracy under everyday corruptions (:mod:`tlcore.adversarial.corruptions`), or None when
    it was never measured (or the file is damaged)."""
    found = read_run_json(run_dir, CORRUPTIONS_FILE, default={})
    results = found.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        return None
    return found
