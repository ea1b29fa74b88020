"""Calibration on the command line: `evaluate --json` reports the ECE and bins, `predict --threshold` says unknown.

Uses the tiny stand-in classifier of test_attacks saved as a run, as test_cli_attack does (probabilities
around 0.8, not saturated), so a high threshold turns answers into "unknown" and a low one does not.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.core.test_attacks import CLASSES, SIZE, tiny_classifier
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.analysis.calibration import expected_calibration_error
from tlcore.models.run import save_run


@pytest.fixture(scope="module")
def built(run_standin, tmp_path_factory):
    """A saved tiny run and a labelled folder of 3 x 4 generated images."""
    root = tmp_path_factory.mktemp("cli-calibration")
    model, _ = tiny_classifier()
    config = {"backbone": "efficientnet_lite0", "weights": None, "input_size": SIZE, "fine_tuned": False,
              "train": {"epochs": 20, "dropout": 0.2, "weights": None}}
    run = save_run(root / "run", model, CLASSES, config, {"val_accuracy": 1.0, "test_accuracy": None})
    data = make_image_folder(root / "data", n_per_class=4, classes=CLASSES, size=40, seed=5)
    return SimpleNamespace(run=run, data=data)


def images(built) -> list[str]:
    return sorted(str(p) for p in Path(built.data).rglob("*.png"))


def test_evaluate_json_has_ece_and_reliability_bins(built):
    code, stdout, stderr = run_cli(["evaluate", built.run, built.data, "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    bins = result["calibration"]["bins"]
    assert len(bins) == 10 and sum(b["count"] for b in bins) == result["n"] == len(images(built))
    assert result["ece"] == result["calibration"]["ece"]
    # The same ECE from predict's probabilities (three classes: top 3 is all of them) and the folder labels.
    code, stdout, stderr = run_cli(["predict", built.run, *images(built), "--json"])
    assert code == 0, stderr
    rows = last_json(stdout)["predictions"]
    probs = np.array([[next(t["probability"] for t in r["top_k"] if t["label"] == c) for c in CLASSES] for r in rows])
    y = [CLASSES.index(Path(r["path"]).parent.name) for r in rows]
    assert result["ece"] == pytest.approx(expected_calibration_error(y, probs), abs=1e-6)
    assert 0 < result["ece"] < 1


def test_evaluate_human_readable_prints_the_calibration_error(built):
    code, stdout, stderr = run_cli(["evaluate", built.run, built.data])
    assert code == 0, stderr
    assert any(line.startswith("expected calibration error 0.") for line in stdout.splitlines())


def test_predict_threshold_answers_unknown_below_it(built):
    paths = images(built)[:4]
    code, stdout, stderr = run_cli(["predict", built.run, *paths, "--threshold", "0.99", "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert result["threshold"] == 0.99
    assert all(p["confidence"] < 0.99 for p in result["predictions"])  # the stand-in is never that sure
    assert [(p["label"], p["unknown"]) for p in result["predictions"]] == [(None, True)] * 4
    assert all(p["top_k"][0]["label"] in CLASSES for p in result["predictions"])  # the best guess is still given

    code, stdout, stderr = run_cli(["predict", built.run, *paths, "--threshold", "0", "--json"])
    answered = last_json(stdout)["predictions"]
    assert [p["unknown"] for p in answered] == [False] * 4
    assert [p["label"] for p in answered] == [p["top_k"][0]["label"] for p in answered]

    code, stdout, stderr = run_cli(["predict", built.run, paths[0], "--threshold", "0.99"])
    assert code == 0, stderr
    assert stdout.strip().startswith(f"{paths[0]}: unknown (best guess ")
    assert "below the threshold 99.0%" in stdout


@pytest.mark.parametrize("value", ["1.5", "-0.1", "high"])
def test_predict_refuses_a_threshold_outside_zero_to_one(built, value):
    code, stdout, stderr = run_cli(["predict", built.run, images(built)[0], "--threshold", value])
    assert_user_error(code, stdout, stderr, f"threshold {value!r}", "between 0 and 1")
