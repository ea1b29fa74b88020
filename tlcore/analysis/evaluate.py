"""Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix, calibration."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .calibration import reliability

__all__ = ["classification_metrics"]


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Metrics of predicted probabilities ``probs`` (n, k) against integer labels.

    Returns ``{"n", "accuracy", "per_class": {name: {precision, recall, f1,
    support}}, "confusion": k x k list (rows true, columns predicted),
    "predictions": list of predicted indices, "calibration": reliability
    diagram bins and expected calibration error (see
    :func:`tlcore.analysis.calibration.reliability`)}``; ``accuracy`` is ``None`` when n is 0.
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs)
    labels = list(range(len(classes)))
    if len(y_true) == 0:
        return {"n": 0, "accuracy": None, "per_class": {}, "confusion": [], "predictions": [],
                "calibration": reliability(y_true, probs)}
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "predictions": y_pred.tolist(),
        "calibration": reliability(y_true, probs),
    }
