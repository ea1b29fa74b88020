"""Rebalancing a training set by repeating or leaving out examples of some classes."""
from __future__ import annotations

import numpy as np

from ..io.errors import TLError

__all__ = ["RESAMPLE_MODES", "check_resample", "resample_indices"]

RESAMPLE_MODES = ("none", "oversample", "undersample")


def check_resample(mode: str) -> None:
    """Raise :class:`TLError` unless ``mode`` is one of :data:`RESAMPLE_MODES`."""
    if mode not in RESAMPLE_MODES:
        raise TLError(f"unknown resampling {mode!r}; choose one of {', '.join(RESAMPLE_MODES)}")


def resample_indices(labels, mode: str, seed: int) -> np.ndarray:
    """Positions into ``labels`` that make every present class equally frequent.

    ``"oversample"`` keeps every example and draws extra ones (with
    replacement) from the smaller classes up to the largest class's count;
    ``"undersample"`` keeps, per class, a random subset the size of the
    smallest class; ``"none"`` keeps every position in order. The draw and
    the returned order are fixed by ``seed``, so a run is reproducible.
    """
    check_resample(mode)
    labels = np.asarray(labels)
    if mode == "none" or len(labels) == 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    target = max(len(g) for g in groups) if mode == "oversample" else min(len(g) for g in groups)
    chosen = []
    for group in groups:
        if mode == "oversample":
            chosen += [group, rng.choice(group, target - len(group), replace=True)]
        else:
            chosen.append(rng.choice(group, target, replace=False))
    # Shuffled, so batches mix classes even for trainers that do not shuffle.
    return rng.permutation(np.concatenate(chosen))
