"""A run directory: everything needed to reload a trained classifier.

Layout: ``config.json`` (backbone, classes, training settings),
``model.weights.h5`` (backbone and head weights, so reloading never needs
the network), ``labels.txt`` (one class per line, output order) and
``metrics.json``, and the sub-folders the caller hands over finished (the TensorBoard logs,
``tensorboard/``). The directory is written beside its target, flushed to
disk and renamed into place, so a crash never leaves a half-written run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from .. import __version__
from ..io.atomic import recover_dir, staged_dir, write_bytes_atomic
from ..io.errors import TLError
from ..data.images import ImageDecodeError, load_image
from .classifier import build_classifier, build_head
from .inference import traced_inference
from ..io.produced import model_digest, record_digest
from ..backbones.registry import BackboneSpec, create_backbone, get_spec
from .run_files import read_run_json

__all__ = ["FilePredictions", "RunModel", "run_digest", "predict_image_files", "save_run", "save_run_json", "load_run", "build_run_model", "model_description"]

_WEIGHTS = "model.weights.h5"


class FilePredictions:
    """``predict_files`` for every kind of model (a run, a ``.keras``, TFLite and ONNX files): photos decoded the
    one way (:func:`predict_image_files`), then the model's own ``predict_batch`` at its ``input_size``."""

    def predict_files(self, paths: Sequence[str], batch_size: int = 16,
                      on_progress: Callable[[int, int], None] | None = None):
        """Probabilities for each decodable file; returns ``(probs, kept indices, skipped)``; ``on_progress(done,
        total)`` hears each batch."""
        return predict_image_files(self.predict_batch, self.input_size, len(self.classes), paths, batch_size,
                                   on_progress)


@dataclass
class RunModel(FilePredictions):
    """A reloaded classifier with its labels and configuration."""

    model: keras.Model
    classes: list[str]
    spec: BackboneSpec
    config: dict

    @property
    def input_size(self) -> int:
        """The square image size the model was built at."""
        return int(self.config.get("input_size", self.spec.input_size))

    _inference: Callable | None = field(default=None, init=False, repr=False, compare=False)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of RGB pixels 0..255, shape ``(n, size, size, 3)``."""
        if self._inference is None:
            self._inference = traced_inference(self.model)
        return self._inference(images)


def predict_image_files(predict_batch: Callable[[np.ndarray], np.ndarray], size: int, n_classes: int,
                        paths: Sequence[str], batch_size: int = 16,
                        on_progress: Callable[[int, int], None] | None = None):
    """Decode ``paths`` with the one image path and run ``predict_batch`` on them in batches.

    Returns ``(probs, kept indices, skipped)``; undecodable files are skipped
    with their reason, never fatal. ``on_progress(done, total)`` hears 0 first, then each batch.
    """
    probs, kept, skipped = [], [], []
    if on_progress:
        on_progress(0, len(paths))
    for start in range(0, len(paths), batch_size):
        batch, idx = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                batch.append(load_image(paths[i], size))
                idx.append(i)
            except ImageDecodeError as exc:
                skipped.append({"path": str(paths[i]), "reason": str(exc)})
        if batch:
            probs.append(predict_batch(np.stack(batch).astype(np.float32)))
            kept += idx
        if on_progress:
            on_progress(min(start + batch_size, len(paths)), len(paths))
    out = np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32)
    return np.asarray(out), kept, skipped


def save_run(run_dir: str | Path, model: keras.Model, classes: Sequence[str], config: dict, metrics: dict,
             extra: dict | None = None, folders: dict[str, Path] | None = None) -> Path:
    """Write a run directory atomically (replacing an existing one).

    ``extra`` maps further JSON file names to their content (e.g. the
    train/val/test assignment in ``samples.json``); ``folders`` maps sub-folder
    names to finished folders that are moved into the run (best beside
    ``run_dir``, so the move is a rename; an empty or missing one is left
    out), so the run appears with them or not at all. The run is recorded as
    produced by this server (:mod:`tlcore.io.produced`), so the dashboard loads
    it without a checking process.
    """
    run_dir = Path(run_dir)
    with staged_dir(run_dir) as tmp:
        model.save_weights(str(tmp / _WEIGHTS))
        (tmp / "labels.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        (tmp / "config.json").write_text(
            json.dumps({**config, "classes": list(classes), "tlcore_version": __version__}, indent=2),
            encoding="utf-8",
        )
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        for name, content in (extra or {}).items():
            (tmp / name).write_text(json.dumps(content), encoding="utf-8")
        for name, folder in (folders or {}).items():
            if Path(folder).is_dir() and any(Path(folder).iterdir()):
                shutil.move(str(folder), str(tmp / name))  # a rename on one file system
    record_digest(run_digest(run_dir))
    return run_dir


def save_run_json(run_dir: str | Path, name: str, content) -> Path:
    """Add or replace one JSON file of a finished run (a measurement made after training, e.g.
    ``corruptions.json``), atomically: a reader sees the old file or the new one, never half of one. The weights
    and ``config.json`` are untouched, so the run keeps its digest."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise TLError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    return write_bytes_atomic(run_dir / name, json.dumps(content, indent=2).encode("utf-8"))


def load_run(run_dir: str | Path) -> RunModel:
    """Rebuild the classifier saved in ``run_dir`` (no network needed)."""
    run_dir = recover_dir(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file() or not (run_dir / _WEIGHTS).is_file():
        raise TLError(f"{str(run_dir)!r} is not a run directory (no config.json or {_WEIGHTS})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TLError(f"{str(config_path)!r} is damaged ({exc})") from exc
    run = build_run_model(config, str(config_path))
    try:
        with warnings.catch_warnings():
            # Keras only warns for a weights group it cannot place, leaving those layers random.
            warnings.simplefilter("error", UserWarning)
            run.model.load_weights(str(run_dir / _WEIGHTS))
    except Exception as exc:  # Keras raises several types for a mismatched file
        # Keras's message spans many lines (it dumps the tensors); the cause stays chained.
        raise TLError(f"the weights in {str(run_dir)!r} cannot be read or do not match its config.json "
                      f"(backbone {run.spec.name!r}, {len(run.classes)} classes, input size {run.input_size})") from exc
    return run


def build_run_model(config: dict, source: str) -> RunModel:
    """The classifier a run's ``config`` describes, with fresh weights, for the caller to load weights into.

    The architecture always comes from the backbone registry and
    :mod:`tlcore.models.classifier`, never from a file, so loading a model file only
    ever reads numbers. ``source`` names the config in error messages.
    """
    described = model_description(config, source)
    spec = get_spec(described["backbone"])
    size = described["input_size"]
    backbone = create_backbone(spec.name, weights=None, input_shape=(size, size, 3))
    head = build_head(spec.feature_dim, len(described["classes"]), described["dropout"],
                      standardize=described["standardize"])
    return RunModel(build_classifier(backbone, head), list(described["classes"]), spec, config)


def model_description(config: dict, source: str) -> dict:
    """Everything of a run's ``config`` that :func:`build_run_model` builds from, resolved.

    ``{"backbone", "classes", "input_size", "dropout", "standardize"}``: two
    configs with the same description give the same network, whatever else
    (paths, metrics, settings) they hold. Raises :class:`TLError` naming
    ``source`` for a damaged config.
    """
    try:
        classes = list(config["classes"])
        spec = get_spec(config["backbone"])
        size = int(config.get("input_size", spec.input_size))
        train_config = config.get("train", {})
        dropout = float(train_config.get("dropout", 0.2))
        standardize = train_config.get("weights", "imagenet") is None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TLError(f"{source!r} is damaged ({exc})") from exc
    return {"backbone": spec.name, "classes": classes, "input_size": size, "dropout": dropout,
            "standardize": standardize}


def run_digest(run_dir: str | Path) -> str:
    """The SHA-256 a run folder is known by in :mod:`tlcore.io.produced`: of its weights and its
    :func:`model_description`, so rewritten paths in ``config.json`` keep the trust and a changed network
    loses it. :class:`TLError` when ``run_dir`` is not a readable run."""
    run_dir = Path(run_dir)
    if not (run_dir / _WEIGHTS).is_file():
        raise TLError(f"{str(run_dir)!r} is not a run directory (no {_WEIGHTS})")
    description = model_description(read_run_json(run_dir, "config.json"), str(run_dir / "config.json"))
    h = hashlib.sha256(b"tlcore-run\n")
    h.update(model_digest(run_dir / _WEIGHTS).encode("ascii") + b"\n")
    h.update(json.dumps(description, sort_keys=True).encode("utf-8"))
    return h.hexdigest()
