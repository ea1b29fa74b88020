"""Calibration: does the model's confidence match how often it is right?

A reliability diagram groups predictions into equal-width bins of their
top-class confidence and compares each bin's mean confidence with its
accuracy; the expected calibration error (ECE) is the count-weighted mean
gap. A confidence threshold, chosen on validation predictions only, turns
low-confidence answers into "unknown".
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.errors import TLError
from ..models.run_files import read_run_json, run_classes

__all__ = ["reliability", "expected_calibration_error", "threshold_effect", "suggest_threshold",
           "suggest_run_threshold", "apply_threshold", "DEFAULT_TARGET_PRECISION"]

DEFAULT_TARGET_PRECISION = 0.95
_STEP = 0.01  # thresholds are suggested on the grid a slider offers, so the reported figures hold exactly


def _check_probability(value: float, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TLError(f"{what} {value!r} must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise TLError(f"{what} {value!r} must be between 0 and 1")
    return value


def _checked(probs) -> np.ndarray:
    """Probabilities as a float64 (n, k) array, refused when they cannot be probabilities.

    Rows need not sum to exactly 1: float32 softmax and dequantized TFLite
    outputs miss it by rounding. Confidences are clipped to [0, 1] where they
    are used, so 1.0000001 still falls in the last bin.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] == 0:
        raise TLError(f"probabilities of shape {probs.shape} must be one row of class probabilities per image")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise TLError("probabilities must be finite numbers of at least 0")
    return probs


def _top(y_true: Sequence[int], probs) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidence and whether the top class is right, per prediction."""
    y_true = np.asarray(y_true, dtype=int).reshape(-1)
    if len(y_true) == 0 and np.size(probs) == 0:
        return np.zeros(0), np.zeros(0, bool)
    probs = _checked(probs)
    if len(probs) != len(y_true):
        raise TLError(f"{len(probs)} rows of probabilities do not match {len(y_true)} labels")
    outside = (y_true < 0) | (y_true >= probs.shape[1])
    if outside.any():
        raise TLError(f"label {int(y_true[outside][0])!r} is not one of the {probs.shape[1]} class indices")
    return np.clip(probs.max(axis=1), 0.0, 1.0), probs.argmax(axis=1) == y_true


def reliability(y_true: Sequence[int], probs, n_bins: int = 10) -> dict:
    """Reliability diagram data for integer labels ``y_true`` and probabilities ``probs`` (n, k).

    Bins are equal-width on the top-class confidence: bin ``i`` holds
    confidences in ``[i/n_bins, (i+1)/n_bins)``, the last one also 1.0.
    Returns ``{"n", "n_bins", "ece", "accuracy", "mean_confidence",
    "bins": [{"lower", "upper", "count", "confidence", "accuracy"}]}`` where an
    empty bin's confidence and accuracy are ``None``, and ``ece``,
    ``accuracy`` and ``mean_confidence`` are ``None`` when there are no
    predictions. ``mean_confidence - accuracy`` above 0 means over-confident.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise TLError(f"n_bins {n_bins!r} must be a whole number of at least 1")
    n_bins = int(n_bins)
    confidence, correct = _top(y_true, probs)
    which = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    bins, ece = [], 0.0
    for i in range(n_bins):
        members = which == i
        count = int(members.sum())
        conf = float(confidence[members].mean()) if count else None
        acc = float(correct[members].mean()) if count else None
        if count:
            ece += count / len(confidence) * abs(acc - conf)
        bins.append({"lower": i / n_bins, "upper": (i + 1) / n_bins, "count": count, "confidence": conf,
                     "accuracy": acc})
    n = int(len(confidence))
    return {
        "n": n,
        "n_bins": n_bins,
        "ece": float(ece) if n else None,
        "accuracy": float(correct.mean()) if n else None,
        "mean_confidence": float(confidence.mean()) if n else None,
        "bins": bins,
    }


def expected_calibration_error(y_true: Sequence[int], probs, n_bins: int = 10) -> float | None:
    """Count-weighted mean of ``|accuracy - confidence|`` over the reliability bins (0 is perfect).

    ``None`` when there are no predictions.
    """
    return reliability(y_true, probs, n_bins)["ece"]


def threshold_effect(y_true: Sequence[int], probs, threshold: float) -> dict:
    """What answering "unknown" below ``threshold`` does to these predictions.

    Returns ``{"threshold", "n", "answered", "unknown_share", "precision"}``:
    ``precision`` is the accuracy of the answered predictions (``None`` when
    none is answered), ``unknown_share`` the fraction turned into "unknown"
    (``None`` when there are no predictions).
    """
    return _effect(*_top(y_true, probs), _check_probability(threshold, "threshold"))


def _effect(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict:
    answered = confidence >= threshold
    n = int(len(confidence))
    return {
        "threshold": threshold,
        "n": n,
        "answered": int(answered.sum()),
        "unknown_share": float(1 - answered.mean()) if n else None,
        "precision": float(correct[answered].mean()) if answered.any() else None,
    }


def suggest_threshold(y_true: Sequence[int], probs, target_precision: float = DEFAULT_TARGET_PRECISION) -> dict:
    """The lowest confidence threshold at which the answered predictions are at least ``target_precision`` right.

    Pass VALIDATION predictions: a threshold chosen on the test split would
    make the test score optimistic. Thresholds are tried on a 0.01 grid from
    0 to 1 (the lowest keeps the most answers). Returns
    :func:`threshold_effect`'s figures at the chosen threshold plus
    ``"target_precision"`` and ``"reached"``; when no threshold reaches the
    target (or there are no predictions) ``"threshold"`` is ``None``.
    """
    target = _check_probability(target_precision, "target precision")
    confidence, correct = _top(y_true, probs)
    for threshold in np.round(np.arange(0.0, 1.0 + _STEP / 2, _STEP), 2):
        effect = _effect(confidence, correct, float(threshold))
        if effect["answered"] == 0:  # higher thresholds answer nothing either
            break
        if effect["precision"] >= target:
            return {**effect, "target_precision": target, "reached": True}
    return {"threshold": None, "n": int(len(confidence)), "answered": 0, "unknown_share": None, "precision": None,
            "target_precision": target, "reached": False}


def suggest_run_threshold(run_dir: str | Path, target_precision: float = DEFAULT_TARGET_PRECISION) -> dict:
    """:func:`suggest_threshold` on a run's saved validation predictions (never its test split).

    ``"threshold"`` is ``None`` when the run kept no validation images or
    none reaches the target.
    """
    classes = run_classes(run_dir)
    rows = [r for r in read_run_json(run_dir, "predictions.json") if r.get("split") == "val"]
    try:
        y_true = [classes.index(r["label"]) for r in rows]
        probs = np.array([r["probs"] for r in rows], dtype=np.float64).reshape(len(rows), len(classes))
    except (KeyError, TypeError, ValueError) as exc:
        raise TLError(f"the predictions.json of {str(run_dir)!r} is damaged ({exc})") from None
    return suggest_threshold(y_true, probs, target_precision)


def apply_threshold(probs, classes: Sequence[str], threshold: float) -> str | None:
    """The top class of one row of probabilities, or ``None`` ("unknown") when its confidence is below ``threshold``."""
    threshold = _check_probability(threshold, "threshold")
    row = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(row) != len(classes) or len(row) == 0:
        raise TLError(f"{len(row)} probabilities do not match the {len(classes)} classes")
    row = _checked(row[None])[0]
    return classes[int(row.argmax())] if min(row.max(), 1.0) >= threshold else None
