"""Reliability bins, ECE and the "unknown" threshold against figures worked out by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tlcore.analysis.calibration import (apply_threshold, expected_calibration_error, reliability,
                                         suggest_run_threshold, suggest_threshold, threshold_effect)
from tlcore.io.errors import TLError
from tlcore.analysis.evaluate import classification_metrics


def two_class(confidences, correct):
    """Labels and 2-class probabilities whose top class has ``confidences`` and is right where ``correct``."""
    confidences = np.asarray(confidences, float)
    y_pred = np.zeros(len(confidences), int)
    probs = np.stack([confidences, 1 - confidences], axis=1)
    y_true = np.where(np.asarray(correct, bool), y_pred, 1)
    return y_true, probs


def test_perfectly_calibrated_bins_have_zero_ece():
    # Each bin's accuracy equals its confidence exactly: 8 of 10 right at 0.8, 3 of 5 right at 0.6, all at 1.0.
    y, probs = two_class([0.8] * 10 + [0.6] * 5 + [1.0] * 4, [1] * 8 + [0] * 2 + [1] * 3 + [0] * 2 + [1] * 4)
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-12)


def test_randomly_drawn_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.5, 1.0, 20000)
    y, probs = two_class(confidences, rng.uniform(size=confidences.size) < confidences)
    assert expected_calibration_error(y, probs) < 0.02


def test_over_confident_predictions_have_the_hand_computed_ece():
    # Bin [0.9, 1.0): 4 at 0.95, 2 right -> gap 0.45. Bin [0.7, 0.8): 4 at 0.75, 3 right -> gap 0.
    # ECE = 4/8 * 0.45 + 4/8 * 0 = 0.225.
    y, probs = two_class([0.95] * 4 + [0.75] * 4, [1, 1, 0, 0, 1, 1, 1, 0])
    r = reliability(y, probs)
    assert r["ece"] == pytest.approx(0.225)
    assert r["mean_confidence"] - r["accuracy"] == pytest.approx(0.85 - 5 / 8)  # > 0: over-confident
    top = r["bins"][9]
    assert (top["lower"], top["upper"], top["count"]) == (0.9, 1.0, 4)
    assert top["confidence"] == pytest.approx(0.95) and top["accuracy"] == pytest.approx(0.5)
    assert r["bins"][7]["accuracy"] == pytest.approx(0.75)
    assert [b["count"] for b in r["bins"]] == [0] * 7 + [4, 0, 4]
    assert r["bins"][0]["confidence"] is None and r["bins"][0]["accuracy"] is None


def test_bins_cover_zero_to_one_and_counts_sum_to_n():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=137)
    y = rng.integers(0, 4, size=137)
    for n_bins in (1, 7, 15):
        r = reliability(y, probs, n_bins=n_bins)
        assert sum(b["count"] for b in r["bins"]) == r["n"] == 137
        assert r["bins"][0]["lower"] == 0 and r["bins"][-1]["upper"] == pytest.approx(1.0)
        assert all(a["upper"] == pytest.approx(b["lower"]) for a, b in zip(r["bins"], r["bins"][1:]))


def test_confidence_of_exactly_one_and_rows_not_summing_to_one():
    # float32 softmax rows miss 1 by rounding; a confidence above 1 still lands in the last bin.
    probs = np.array([[1.0000001, 0.0], [0.4999999, 0.4999999], [0.7, 0.29999]], np.float64)
    r = reliability([0, 1, 0], probs)
    assert r["bins"][9]["count"] == 1 and r["bins"][4]["count"] == 1 and r["bins"][7]["count"] == 1
    assert r["bins"][9]["confidence"] == 1.0
    assert apply_threshold(probs[0], ["a", "b"], 1.0) == "a"


def test_one_class_is_always_right_and_confident():
    r = reliability([0, 0, 0], np.ones((3, 1)))
    assert r["ece"] == 0.0 and r["bins"][-1]["count"] == 3
    assert suggest_threshold([0, 0, 0], np.ones((3, 1)))["threshold"] == 0.0


def test_empty_input_has_no_ece_and_no_suggestion():
    r = reliability([], np.zeros((0, 3)))
    assert r["n"] == 0 and r["ece"] is None and sum(b["count"] for b in r["bins"]) == 0
    assert expected_calibration_error([], np.zeros((0, 3))) is None
    s = suggest_threshold([], np.zeros((0, 3)))
    assert s["threshold"] is None and s["reached"] is False and s["n"] == 0


def test_metrics_include_calibration_and_stay_json():
    y, probs = two_class([0.95] * 4 + [0.75] * 4, [1, 1, 0, 0, 1, 1, 1, 0])
    m = classification_metrics(y, probs, ["a", "b"])
    assert m["calibration"]["ece"] == pytest.approx(0.225)
    assert json.loads(json.dumps(m)) == m
    assert classification_metrics([], np.zeros((0, 2)), ["a", "b"])["calibration"]["ece"] is None


def test_suggested_threshold_is_the_lowest_reaching_the_target_precision():
    # Sorted by confidence: 0.55 wrong, 0.62 wrong, 0.7 right, 0.8 right, 0.85 wrong, 0.9, 0.95, 0.99 right.
    y, probs = two_class([0.55, 0.62, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99], [0, 0, 1, 1, 0, 1, 1, 1])
    s = suggest_threshold(y, probs, target_precision=0.8)
    # From 0.63 up: 5 right of 6 answered (0.83 >= 0.8); from 0.56: 5 of 7 (0.71) is not enough.
    assert s["threshold"] == pytest.approx(0.63) and s["reached"]
    assert s["precision"] == pytest.approx(5 / 6) and s["answered"] == 6
    assert s["unknown_share"] == pytest.approx(2 / 8)
    strict = suggest_threshold(y, probs, target_precision=1.0)
    assert strict["threshold"] == pytest.approx(0.86) and strict["precision"] == 1.0
    assert strict["unknown_share"] == pytest.approx(5 / 8)
    # The same figures as applying the threshold directly, and the answer below it is "unknown".
    assert threshold_effect(y, probs, strict["threshold"]) == {k: strict[k] for k in
                                                              ("threshold", "n", "answered", "unknown_share",
                                                               "precision")}
    classes = ["yes", "no"]
    assert apply_threshold(probs[4], classes, strict["threshold"]) is None  # 0.85 < 0.86
    assert apply_threshold(probs[5], classes, strict["threshold"]) == "yes"


def test_everything_right_needs_no_threshold_and_unreachable_target_gives_none():
    y, probs = two_class([0.6, 0.7, 0.9], [1, 1, 1])
    assert suggest_threshold(y, probs)["threshold"] == 0.0
    y, probs = two_class([0.6, 0.7, 0.9], [1, 1, 0])  # the most confident one is wrong
    s = suggest_threshold(y, probs, target_precision=0.9)
    assert s["threshold"] is None and not s["reached"]


def test_suggest_run_threshold_reads_validation_predictions_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"classes": ["ant", "bee"]}))  # the run's classes
    rows = [{"path": f"v{i}.png", "label": "ant", "split": "val", "probs": [c, 1 - c]}
            for i, c in enumerate([0.9, 0.8])]
    rows.append({"path": "v2.png", "label": "bee", "split": "val", "probs": [0.6, 0.4]})  # wrong at 0.6
    # A wrong and very confident test image: were it used, no threshold would reach the target.
    rows.append({"path": "t0.png", "label": "bee", "split": "test", "probs": [0.99, 0.01]})
    (tmp_path / "predictions.json").write_text(json.dumps(rows))
    s = suggest_run_threshold(tmp_path)
    assert s["n"] == 3 and s["threshold"] == pytest.approx(0.61)


def test_suggest_run_threshold_without_predictions_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"classes": ["ant", "bee"]}))  # the run's classes
    with pytest.raises(TLError, match="predictions.json"):
        suggest_run_threshold(tmp_path)


@pytest.mark.parametrize("call, message", [
    (lambda: reliability([0], np.array([[0.5, 0.5]]), n_bins=0), "n_bins 0"),
    (lambda: reliability([0, 1], np.array([[0.5, 0.5]])), "do not match 2 labels"),
    (lambda: reliability([3], np.array([[0.5, 0.5]])), "label 3"),
    (lambda: reliability([0], np.array([[np.nan, 0.5]])), "finite"),
    (lambda: reliability([0], np.array([0.5, 0.5])), "one row of class probabilities"),
    (lambda: suggest_threshold([0], np.array([[0.5, 0.5]]), target_precision=1.5), "target precision 1.5"),
    (lambda: apply_threshold([0.5, 0.5], ["a", "b"], -0.1), "threshold -0.1"),
    (lambda: apply_threshold([0.5, 0.5], ["a"], 0.5), "do not match the 1 classes"),
])
def test_bad_values_are_named_in_the_error(call, message):
    with pytest.raises(TLError, match=message):
        call()
