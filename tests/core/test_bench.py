"""The bench command: every figure the performance issue asks for, from one run (values are not asserted)."""
from __future__ import annotations

import math

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.lab.bench import extraction_limit, measure_parts

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
    # The parts of extraction and the limit they set, from the same run (tests run as on a CPU without int8 dot
    # products, so the extraction is float32 and no INT8 engine was made).
    assert result["extract_engine"] == "float32" and set(result["engine_images_per_s"]) == {"float32"}
    decode, engine = result["decode_images_per_s"], result["engine_images_per_s"]["float32"]
    assert result["limit_images_per_s"] == pytest.approx(
        extraction_limit(result["cpu_count"], decode["one_core"], engine["one_thread"]), rel=0.01, abs=0.2)
    assert result["extract_fraction_of_limit"] == pytest.approx(
        result["extract_images_per_s"] / result["limit_images_per_s"], rel=0.02, abs=0.01)
    assert set(result["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
    assert result["cpu"]["model"] and result["cpu"]["int8_dot_product"] is False
    assert result["extraction"]["engine"] == "float32" and "no int8 dot-product" in result["extraction"]["reason"]


def test_limit_is_the_cores_over_the_core_seconds_of_a_photo():
    # 2 cores, 5 ms decoding and 5 ms inference per photo on one core: 10 ms of a core per photo, 200 photos/s.
    assert extraction_limit(2, 200.0, 200.0) == pytest.approx(200.0)
    assert extraction_limit(1, 300.0, 150.0) == pytest.approx(100.0)


def test_parts_measure_decoding_and_each_engine(tmp_path):
    from tests.core.test_engine import SIZE, tiny_backbone
    from tlcore.training.engine import convert_backbone

    data = make_image_folder(tmp_path / "data", n_per_class=4, size=32)
    paths = sorted(str(p) for p in data.rglob("*.png")) + [str(tmp_path / "missing.png")]
    (tmp_path / "f32.tflite").write_bytes(convert_backbone(tiny_backbone()))
    parts = measure_parts(paths, SIZE, {"float32": tmp_path / "f32.tflite"}, cores=2, repeats=1)
    assert set(parts["decode_images_per_s"]) == {"one_core", "all_cores"}
    assert set(parts["engine_images_per_s"]["float32"]) == {"one_thread", "all_cores"}
    rates = [*parts["decode_images_per_s"].values(), *parts["engine_images_per_s"]["float32"].values()]
    assert all(math.isfinite(r) and r > 0 for r in rates)


def test_bench_on_a_missing_folder_is_one_line(tmp_path):
    assert_user_error(*run_cli(["bench", tmp_path / "nowhere"]), "does not exist")
