"""A dataset's suspicious labels and embedding map, from its photos' cached embeddings.

The photos are embedded as training embeds them (same backbone key, same feature cache), so after a
training run, or a first check, the check only reads the cache and fits the small k-fold heads of
:mod:`tlcore.analysis.labels`. Pages that must not wait use :func:`cached_features` (no backbone at all)
and start ``python -m tlcore check DATA --labels`` as a job when photos are missing from the cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..analysis.embedding_map import project
from ..analysis.labels import FOLDS, check_folds, find_label_issues
from ..backbones.registry import DEFAULT_BACKBONE
from ..data.datasets import Dataset, load_dataset
from ..io.errors import TLError
from ..jobs.events import SCORING, PhaseCallback, no_phase
from ..training.features import FeatureCache, extract_features

__all__ = ["feature_key", "cached_features", "embed_photos", "check_labels", "map_points"]


def feature_key(backbone: str = DEFAULT_BACKBONE, weights: str | None = "imagenet", input_size: int | None = None):
    """The feature cache's key for ``backbone`` (as a training run with these settings keys it) and its input size."""
    from ..training.frozen import FrozenBackbone

    frozen = FrozenBackbone(backbone, weights, input_size)
    return frozen.key, frozen.size


def cached_features(paths: Sequence[str], key: str | None, cache: FeatureCache | None = None):
    """``(features, kept)``: the embeddings already cached under ``key`` for ``paths`` (``kept`` indexes into
    ``paths``), read without building any backbone; None when even one photo is missing from the cache."""
    if key is None:
        return None
    cache = cache if cache is not None else FeatureCache()

    def never():  # extract_features asks for an encoder only when a photo is not cached
        raise LookupError

    try:
        result = extract_features(list(paths), key, never, 0, cache)
    except LookupError:
        return None
    if result.skipped:
        return None
    return result.features, result.kept


def embed_photos(paths: Sequence[str], backbone: str = DEFAULT_BACKBONE, weights: str | None = "imagenet",
                 input_size: int | None = None, cache: FeatureCache | None = None,
                 on_extract: Callable[[int, int], None] | None = None,
                 on_phase: PhaseCallback | None = None) -> np.ndarray:
    """Every photo's embedding ``(n, d)``, in the order of ``paths``, through the feature cache (the training
    pipeline's encoder when one is missing). An unreadable photo is refused with :class:`TLError`: a label
    check that silently leaves photos out would call the rest clean."""
    from ..training.frozen import FrozenBackbone

    # Seed 0: random weights (tests) embed the same way every time.
    frozen = FrozenBackbone(backbone, weights, input_size, 0, on_phase)
    result = extract_features(list(paths), frozen.key, frozen.encoder,
                              frozen.size, cache if cache is not None else FeatureCache(), on_progress=on_extract)
    if result.skipped:
        bad = result.skipped[0]
        more = f" (and {len(result.skipped) - 1} more)" if len(result.skipped) > 1 else ""
        raise TLError(f"photo {bad['path']!r} cannot be read: {bad['reason']}{more}; remove or replace it "
                      f"before checking labels")
    return result.features


def map_points(features: np.ndarray, paths: Sequence[str], labels: Sequence[str], seed: int = 0) -> list[dict]:
    """The embedding map: ``{"path", "label", "x", "y"}`` per photo (:func:`tlcore.analysis.embedding_map.project`)."""
    xy = project(features, seed=seed)
    return [{"path": str(p), "label": label, "x": round(float(a), 3), "y": round(float(b), 3)}
            for p, label, (a, b) in zip(paths, labels, xy)]


def check_labels(source, backbone: str = DEFAULT_BACKBONE, weights: str | None = "imagenet",
                 input_size: int | None = None, folds: int = FOLDS, seed: int = 0, with_map: bool = False,
                 cache: FeatureCache | None = None, on_extract: Callable[[int, int], None] | None = None,
                 on_phase: PhaseCallback | None = None) -> dict:
    """Suspicious labels of every photo of ``source`` (anything :func:`load_dataset` takes; every split counts).

    Returns ``{"label_issues": [{path, given, suggested, confidence}], "photos", "backbone"}``, most
    suspicious first (:func:`tlcore.analysis.labels.find_label_issues`), plus ``"embedding_map"``
    (:func:`map_points`) with ``with_map``. Files the loader already refused (not images) are left out
    as training leaves them out; a photo that cannot be decoded is refused in one sentence.
    """
    dataset = source if isinstance(source, Dataset) else load_dataset(source)
    paths = [s.path for s in dataset.samples]
    index = {c: i for i, c in enumerate(dataset.classes)}
    labels = [index[s.label] for s in dataset.samples]
    # The cheap checks first: a dataset the folds cannot handle is refused before any embedding.
    check_folds(np.asarray(labels, int), dataset.classes, folds)
    features = embed_photos(paths, backbone, weights, input_size, cache, on_extract, on_phase)
    (on_phase or no_phase)(SCORING, name=backbone)
    result = {"label_issues": find_label_issues(features, labels, dataset.classes, paths, folds, seed),
              "photos": len(paths), "backbone": backbone}
    if with_map:
        result["embedding_map"] = map_points(features, paths, [s.label for s in dataset.samples], seed)
    return result

