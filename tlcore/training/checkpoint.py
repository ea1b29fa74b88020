"""Per-epoch training checkpoints, so a killed run resumes from its last completed epoch.

A checkpoint folder (``RUN.checkpoint`` beside the run's ``--out`` folder)
holds ``state.json`` (phase, epochs done, history, the settings and data it
belongs to), ``model.npz`` (the weights of the model being trained, in
``get_weights`` order: the architecture is always rebuilt by this code),
``optimizer.npz`` (Adam's moments and step count) and, while fine-tuning
with early stopping, ``best.npz`` (the best weights so far). It is written
as a whole folder and renamed into place (see :mod:`tlcore.io.atomic`), so a
kill at any moment leaves the previous epoch's checkpoint loadable.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ..io.atomic import recover_dir, staged_dir
from ..io.errors import TLError

__all__ = ["Checkpoint", "checkpoint_dir", "load_checkpoint", "save_checkpoint", "restore_training",
           "data_fingerprint", "CheckpointCallback"]

_STATE, _WEIGHTS, _OPTIMIZER, _BEST = "state.json", "model.npz", "optimizer.npz", "best.npz"


def _save_arrays(path: Path, arrays) -> None:
    # npz rather than Keras's .weights.h5: about 20x faster for a head, and a checkpoint is written every epoch.
    np.savez(path, *[np.asarray(a) for a in arrays])


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def checkpoint_dir(out: str | Path) -> Path:
    """Where the checkpoints of a run saved to ``out`` live."""
    out = Path(out)
    return out.with_name(f"{out.name}.checkpoint")


def data_fingerprint(items) -> str:
    """A short hash of the training data description (paths, labels and splits), to match a checkpoint."""
    return hashlib.sha256(json.dumps(list(items), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``state`` is the parsed ``state.json``."""

    folder: Path
    state: dict

    @property
    def phase(self) -> str:
        return self.state["phase"]

    @property
    def epochs_done(self) -> int:
        """Epochs completed in the checkpoint's phase."""
        return int(self.state["epochs_done"])

    @property
    def history(self) -> list[dict]:
        return [dict(h) for h in self.state["history"]]


def load_checkpoint(folder: str | Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None when there is none (a damaged one is an error)."""
    folder = recover_dir(folder)
    if not (folder / _STATE).is_file():
        return None
    try:
        state = json.loads((folder / _STATE).read_text(encoding="utf-8"))
        for key in ("phase", "epochs_done", "history", "settings", "data"):
            state[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TLError(f"the checkpoint in {str(folder)!r} is damaged ({exc}); train again without --resume") from None
    return Checkpoint(folder, state)


def check_matches(checkpoint: Checkpoint, settings: dict, data: str, defaults: dict | None = None) -> None:
    """Refuse to resume a checkpoint made with other settings or other data.

    A setting the checkpoint does not record (it predates the setting) counts
    as its value in ``defaults``: the run was made with that behaviour.
    """
    if checkpoint.state["data"] != data:
        raise TLError(f"the checkpoint in {str(checkpoint.folder)!r} was made on other images; "
                      "train again without --resume")
    saved = {**(defaults or {}), **checkpoint.state["settings"]}
    changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if changed:
        k = changed[0]
        raise TLError(f"the checkpoint in {str(checkpoint.folder)!r} was made with {k} {saved.get(k)!r}, "
                      f"not {settings.get(k)!r}; resume with the same settings or train again without --resume")


def _keras_optimizer_arrays(model: keras.Model) -> list | None:
    optimizer = model.optimizer
    return list(optimizer.variables) if optimizer is not None and optimizer.built else None


def save_checkpoint(folder: str | Path, model: keras.Model, state: dict, best_weights=None,
                    optimizer_arrays=None) -> Path:
    """Write ``model``'s weights, its optimizer's state and ``state`` as the new checkpoint in ``folder``.

    ``optimizer_arrays`` defaults to the variables of the model's own Keras optimizer.
    """
    folder = Path(folder)
    if optimizer_arrays is None:
        optimizer_arrays = _keras_optimizer_arrays(model)
    with staged_dir(folder) as tmp:
        _save_arrays(tmp / _WEIGHTS, model.get_weights())
        if optimizer_arrays is not None:
            _save_arrays(tmp / _OPTIMIZER, optimizer_arrays)
        if best_weights is not None:
            _save_arrays(tmp / _BEST, best_weights)
        (tmp / _STATE).write_text(json.dumps(state), encoding="utf-8")
    return folder


def _assign_keras_optimizer(model: keras.Model, values: list) -> None:
    model.optimizer.build(model.trainable_variables)
    if len(values) != len(model.optimizer.variables):
        raise ValueError(f"{len(values)} optimizer variables saved, {len(model.optimizer.variables)} expected")
    for variable, value in zip(model.optimizer.variables, values):
        variable.assign(value)


def restore_training(checkpoint: Checkpoint, model: keras.Model, load_optimizer=None) -> list | None:
    """Load the checkpoint's weights into ``model`` and its optimizer state; returns the best weights, if kept.

    ``load_optimizer(arrays)`` receives the optimizer state; by default it goes
    into the compiled model's own Keras optimizer.
    """
    try:
        model.set_weights(_load_arrays(checkpoint.folder / _WEIGHTS))
        optimizer_file = checkpoint.folder / _OPTIMIZER
        if optimizer_file.is_file():
            values = _load_arrays(optimizer_file)
            (load_optimizer or (lambda v: _assign_keras_optimizer(model, v)))(values)
        best_file = checkpoint.folder / _BEST
        if best_file.is_file():
            return _load_arrays(best_file)
    except TLError:
        raise
    except Exception as exc:  # Keras raises several types for a file that does not fit
        raise TLError(f"the checkpoint in {str(checkpoint.folder)!r} does not fit this model ({type(exc).__name__}); "
                      "train again without --resume") from exc
    return None


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint after every epoch (after the history has recorded it).

    ``state()`` gives the JSON state to store; ``early_stopping``, when given,
    is the run's :class:`keras.callbacks.EarlyStopping`, whose counters and
    best weights are saved too, so a resumed run stops where the original would.
    ``optimizer_arrays()``, when given, supplies the optimizer state (for a
    model trained outside Keras's ``fit``).
    """

    def __init__(self, folder: Path, state, early_stopping: keras.callbacks.EarlyStopping | None = None,
                 optimizer_arrays=None):
        super().__init__()
        self.folder, self.state, self.early_stopping = Path(folder), state, early_stopping
        self.optimizer_arrays = optimizer_arrays

    def on_epoch_end(self, epoch, logs=None):
        state = {**self.state(), "epochs_done": epoch + 1}
        best = None
        es = self.early_stopping
        if es is not None:
            state["early_stopping"] = {"wait": int(es.wait), "best": float(es.best) if es.best is not None else None,
                                       "best_epoch": int(es.best_epoch)}
            best = es.best_weights
        save_checkpoint(self.folder, self.model, state, best,
                        self.optimizer_arrays() if self.optimizer_arrays else None)
