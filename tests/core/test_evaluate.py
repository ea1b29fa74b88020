"""classification_metrics against metrics computed by hand from the label lists."""
from __future__ import annotations

import numpy as np
import pytest

from tlcore.analysis.evaluate import classification_metrics

CLASSES = ["ant", "bee", "wasp"]
Y_TRUE = [0, 0, 0, 1, 1, 1, 1, 2, 2, 0]
Y_PRED = [0, 1, 0, 1, 1, 2, 1, 2, 0, 0]


def one_hot_probs(pred, k, rng):
    """Probabilities whose argmax is ``pred`` (random, not one-hot, so argmax matters)."""
    probs = rng.uniform(0.0, 0.3, size=(len(pred), k))
    probs[np.arange(len(pred)), pred] = rng.uniform(0.5, 1.0, size=len(pred))
    return probs / probs.sum(axis=1, keepdims=True)


def hand_metrics(y_true, y_pred, k):
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred):
        confusion[t][p] += 1
    per_class = {}
    for c in range(k):
        tp = confusion[c][c]
        predicted = sum(confusion[r][c] for r in range(k))
        actual = sum(confusion[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = (precision, recall, f1, actual)
    accuracy = sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)
    return accuracy, per_class, confusion


def test_metrics_match_hand_computation():
    probs = one_hot_probs(Y_PRED, len(CLASSES), np.random.default_rng(0))
    m = classification_metrics(Y_TRUE, probs, CLASSES)
    accuracy, per_class, confusion = hand_metrics(Y_TRUE, Y_PRED, len(CLASSES))
    assert m["n"] == len(Y_TRUE)
    assert m["accuracy"] == pytest.approx(accuracy)
    assert m["confusion"] == confusion  # rows true, columns predicted
    assert m["predictions"] == Y_PRED
    assert list(m["per_class"]) == CLASSES
    for c, name in enumerate(CLASSES):
        precision, recall, f1, support = per_class[c]
        got = m["per_class"][name]
        assert got["precision"] == pytest.approx(precision)
        assert got["recall"] == pytest.approx(recall)
        assert got["f1"] == pytest.approx(f1)
        assert got["support"] == support


def test_class_never_predicted_nor_present_scores_zero():
    # "wasp" never occurs and is never predicted: zero, not NaN, and a full k x k matrix.
    y_true, y_pred = [0, 1, 1, 0], [0, 1, 0, 0]
    m = classification_metrics(y_true, one_hot_probs(y_pred, 3, np.random.default_rng(1)), CLASSES)
    assert m["per_class"]["wasp"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert len(m["confusion"]) == 3 and all(len(row) == 3 for row in m["confusion"])
    _, _, confusion = hand_metrics(y_true, y_pred, 3)
    assert m["confusion"] == confusion


def test_result_is_json_serialisable():
    import json

    m = classification_metrics(Y_TRUE, one_hot_probs(Y_PRED, 3, np.random.default_rng(2)), CLASSES)
    assert json.loads(json.dumps(m)) == m


def test_empty_input_has_no_accuracy():
    m = classification_metrics([], np.zeros((0, 3)), CLASSES)
    assert m["n"] == 0
    assert m["accuracy"] is None
    assert m["confusion"] == [] and m["predictions"] == [] and m["per_class"] == {}
