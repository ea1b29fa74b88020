"""Labelling help: a trained model suggests a class for each unlabelled photo, least confident first.

The photos the model is least sure of are the ones worth labelling by hand (they teach the next run most); the
confident ones can be accepted in bulk. Photos come from a folder or a ZIP (:mod:`tlcore.data.unlabelled`, which
extracts a ZIP safely), are decoded by the one image path and predicted in batches by any model
:func:`tlcore.models.model_files.load_model_file` loads (a run folder, a safe ``.keras``, a ``.tflite``). A file
that is not a readable image is skipped with its reason; only "nothing to suggest for" is an error.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.unlabelled import UnlabelledPhoto, unlabelled_photos
from ..io.errors import TLError
from ..io.settings import check_settings, setting

__all__ = ["SuggestConfig", "Suggestion", "Suggestions", "suggest_labels", "suggest"]


@dataclass(frozen=True)
class SuggestConfig:
    """Settings of a suggestion pass; checked by :func:`suggest_labels`."""

    batch_size: int = setting(16, "photos decoded and predicted at once", minimum=1, maximum=256, metavar="N")
    # 0.9: on ants and bees (docs/BENCHMARKS.md, "Labelling help") the suggestions above it were the reliable
    # ones; the page starts its slider here and the user moves it.
    threshold: float = setting(0.9, "confidence from which a suggestion counts as sure (the Data page pre-selects "
                                    "those for acceptance)", minimum=0.0, maximum=1.0, offered=(0.0, 1.0),
                               metavar="P")


@dataclass(frozen=True)
class Suggestion:
    """The model's class for one photo: ``path`` as the user knows it, ``file`` where it is read from."""

    path: str
    suggested: str
    confidence: float
    file: Path = field(compare=False)
    # Every class's probability, in the model's class order: the page offers the others by likelihood.
    probabilities: tuple[float, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict:
        """``{path, suggested, confidence}``: one entry of ``suggest --json``."""
        return {"path": self.path, "suggested": self.suggested, "confidence": self.confidence}


@dataclass(frozen=True)
class Suggestions:
    """Every suggestion, least confident first, and the files skipped (``{path, reason}``)."""

    classes: list[str]
    rows: list[Suggestion]
    skipped: list[dict]

    def sure(self, threshold: float) -> list[Suggestion]:
        """The suggestions at or above ``threshold``: the ones to accept without a look."""
        return [s for s in self.rows if s.confidence >= threshold]


def suggest_labels(model, photos: Sequence[UnlabelledPhoto], config: SuggestConfig = SuggestConfig(),
                   on_progress: Callable[[int, int], None] | None = None) -> Suggestions:
    """Suggest a class for each of ``photos`` with ``model`` (anything with ``classes`` and ``predict_files``, as
    :func:`~tlcore.models.model_files.load_model_file` returns), least confident first.

    Ties keep the photos' order. ``on_progress(done, total)`` hears 0 first, then each batch. A photo that does
    not decode is skipped with its reason; :class:`TLError` when none decodes or there is none.
    """
    check_settings(config)
    if not photos:
        raise TLError("there are no photos to suggest classes for")
    probs, kept, unreadable = model.predict_files([str(p.path) for p in photos], config.batch_size, on_progress)
    by_file = {str(p.path): p.name for p in photos}
    skipped = [{"path": by_file.get(s["path"], s["path"]), "reason": s["reason"]} for s in unreadable]
    if not kept:
        first = skipped[0]
        raise TLError(f"no readable photo among the {len(photos)} given ({first['path']}: {first['reason']})")
    probs = np.asarray(probs, np.float64)
    top = probs.argmax(axis=1)
    rows = [Suggestion(photos[i].name, model.classes[int(top[j])], float(probs[j, top[j]]), Path(photos[i].path),
                       tuple(float(v) for v in probs[j]))
            for j, i in enumerate(kept)]
    rows.sort(key=lambda s: s.confidence)  # stable: equal confidences keep the photos' order
    return Suggestions(list(model.classes), rows, skipped)


def suggest(model_path: str | Path, source: str | Path, config: SuggestConfig = SuggestConfig(),
            on_progress: Callable[[int, int], None] | None = None) -> Suggestions:
    """Suggest classes for the photos of ``source`` (a folder, searched recursively, a ``.zip`` or one photo) with
    the model at ``model_path`` (a run folder, ``.keras`` or ``.tflite``): what ``python -m tlcore suggest`` does.

    The ZIP entries refused by the safe extraction come first in ``skipped``. A ZIP is extracted into a temporary
    folder removed before returning (the suggestions then name the files by their path inside the ZIP; their
    ``file`` is gone). Raises :class:`TLError` for a missing or unloadable model, a missing source, an unusable
    ZIP, or no readable photo.
    """
    from .model_files import load_model_file  # TensorFlow: only once the inputs are known to exist

    check_settings(config)
    if not Path(source).exists():
        raise TLError(f"{str(source)!r} does not exist; give a folder of photos, a .zip of photos or a photo")
    model = load_model_file(model_path)
    with tempfile.TemporaryDirectory(prefix="tlcore-suggest-") as tmp:
        photos, refused = unlabelled_photos(source, Path(tmp) / "photos")
        result = suggest_labels(model, photos, config, on_progress)
    return Suggestions(result.classes, result.rows, refused + result.skipped)
