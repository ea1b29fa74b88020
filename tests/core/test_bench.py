"""The bench command: every figure the performance issue asks for, from one run (values are not asserted)."""
from __future__ import annotations

import math

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli

FIGURES = ("extract_images_per_s", "baseline_keras_predict_images_per_s", "head_train_seconds",
           "tflite_float32_latency_ms", "tflite_int8_latency_ms", "peak_rss_mb", "time_to_first_model_seconds")


@pytest.mark.slow
def test_bench_reports_every_figure(tmp_path):
    # Every figure reported, at 64 pixels: every stage runs at the size asked, and the first training run in the
    # bench's own empty cache converts the backbone at that size (`make bench` measures the default 224).
    data = make_image_folder(tmp_path / "data", n_per_class=12, size=64)
    code, stdout, stderr = run_cli(["bench", data, "--input-size", SMALL_INPUT, "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    for key in FIGURES:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]) and result[key] > 0, key
    assert result["images"] == 24 and result["backbone"] == "efficientnet_lite0" and result["input_size"] == SMALL_INPUT
    # Both rates are rounded to 0.1 image/s: allow for that in their ratio.
    assert result["extract_speedup"] == pytest.approx(
        result["extract_images_per_s"] / result["baseline_keras_predict_images_per_s"], rel=0.05, abs=0.01)
    assert result["time_to_first_model_seconds"] > result["head_train_seconds"]
    assert result["tflite_int8_mb"] < result["tflite_float32_mb"] / 2  # 8-bit weights: the point of INT8


def test_bench_on_a_missing_folder_is_one_line(tmp_path):
    assert_user_error(*run_cli(["bench", tmp_path / "nowhere"]), "does not exist")
