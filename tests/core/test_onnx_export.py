"""ONNX export of the real Lite0 graph (random weights, 64 px), from the command line, checked from the outside.

One `export --format onnx --json` of a tiny run, made once for the module (tf2onnx takes about 4 s on Lite0's
graph here); the tests read its file with ONNX Runtime directly, as a client would, and compare it with the Keras
model. The export's own verification (ONNX Runtime on the held-out photos) is in its JSON. The ONNX example
script of the bundle is run here on this file, and on the shared export's in test_export_contract.py.
"""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import CLASS_COLOURS, SMALL_INPUT, write_image
from tests.core.test_cli import assert_user_error, last_json, read_progress, run_cli
from tests.core.test_events import assert_each_phase_announced, phase_story
from tests.core.test_export import CLASSES, N_HELD_OUT, SIZE, make_export_run
from tests.core.test_export_contract import ONNX_TEMPLATE, parse, run_script
from tlcore.data.images import load_image
from tlcore.io.errors import TLError
from tlcore.io.produced import record_produced

assert SIZE == SMALL_INPUT  # the run is made at the unit tests' small input

# ONNX Runtime and TensorFlow run the same float32 graph with different kernels (fused convolutions, another
# order of the sums): Lite0's 3.4 M multiply-adds per pixel row leave differences of a few 1e-6 in the
# probabilities (measured: at most 6e-6 on random pixels). 1e-4 leaves room for other CPUs' kernels and is
# still far below what a wrong preprocessing (pixels not 0..255, BGR, a missing normalisation) changes.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random-weight Lite0 run at 64 px and its `export --format onnx --json`, with its progress events and
    the Keras model's probabilities for the run's held-out photos."""
    from tlcore.models.run import load_run

    root = tmp_path_factory.mktemp("onnx-export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
        built = make_export_run(root)
        model = root / "out" / "model.onnx"
        events = root / "events.jsonl"
        code, stdout, stderr = run_cli(["export", built.run, "--format", "onnx", "--out", model, "--json",
                                        "--progress", events])
        run = load_run(built.run)
    images = np.stack([load_image(s["path"], SIZE) for s in built.held_out[:3]]).astype(np.float32)
    return SimpleNamespace(**vars(built), root=root, model=model, events=events, code=code, stdout=stdout,
                           stderr=stderr, keras=run, images=images, keras_probs=run.predict_batch(images))


@pytest.fixture(scope="module")
def session(exported):
    import onnxruntime as ort

    assert exported.code == 0, exported.stderr
    return ort.InferenceSession(str(exported.model), providers=["CPUExecutionProvider"])


def test_onnx_export_json_has_the_contract_and_its_verification(exported):
    assert exported.code == 0, exported.stderr
    assert exported.stderr == ""  # --json is quiet: nothing from tf2onnx or ONNX Runtime either
    result = last_json(exported.stdout)
    assert result["format"] == "onnx" and result["path"] == str(exported.model)
    assert result["size_bytes"] == exported.model.stat().st_size > 4 * 3_000_000  # Lite0's weights in float32
    # Any batch: the shape's first dimension is free (null in JSON).
    assert result["input"] == {"shape": [None, SIZE, SIZE, 3], "dtype": "float32", "pixels": "RGB 0..255"}
    v = result["verification"]
    assert v["n"] == N_HELD_OUT == result["verification_data"]["n"]
    assert result["exported_accuracy"] == v["exported_accuracy"] == v["keras_accuracy"]
    assert "tflite_accuracy" not in v and "tflite_accuracy" not in result  # TFLite's name stays TFLite's
    assert v["agreement"] == 1.0 and v["max_probability_difference"] < TOLERANCE
    assert v["latency_ms"] > 0 and set(v["per_class"]) <= set(CLASSES)
    assert all("exported_accuracy" in row for row in v["per_class"].values())
    assert result["warnings"] == []


def test_labels_txt_is_written_beside_the_file(exported):
    assert exported.code == 0, exported.stderr
    assert sorted(p.name for p in exported.model.parent.iterdir()) == ["labels.txt", "model.onnx"]
    assert (exported.model.parent / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES


def test_onnx_runtime_runs_it_with_any_batch_as_keras_does(exported, session):
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("pixels", ["batch", SIZE, SIZE, 3], "tensor(float)")
    assert (out.name, out.shape) == ("probabilities", ["batch", len(CLASSES)])
    three = session.run(None, {"pixels": exported.images})[0]
    assert three.shape == (3, len(CLASSES))
    np.testing.assert_allclose(three, exported.keras_probs, atol=TOLERANCE)
    for i in range(3):
        one = session.run(None, {"pixels": exported.images[i:i + 1]})[0]
        assert one.shape == (1, len(CLASSES))
        np.testing.assert_allclose(one[0], exported.keras_probs[i], atol=TOLERANCE)
    # Teeth: the photos give different answers (a constant graph would pass the above for a constant model).
    assert np.ptp(exported.keras_probs, axis=0).max() > 0.05


def test_the_file_names_its_labels_and_its_contract(exported, session):
    meta = session.get_modelmeta()
    assert json.loads(meta.custom_metadata_map["labels"]) == CLASSES
    assert meta.producer_name == "Transfer Lab" and "0..255" in meta.description


def test_onnx_export_announces_converting_then_verifying(exported):
    events = read_progress(exported.events)
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "evaluating", "converting", "verifying"]
    phases = [e for e in events if e["type"] == "phase"]
    assert {e.get("format") for e in phases if e["phase"] in ("converting", "verifying")} == {"onnx"}
    verifying = [(e["done"], e["total"]) for e in phases if e["phase"] == "verifying"]
    assert verifying[0] == (0, N_HELD_OUT) and verifying[-1] == (N_HELD_OUT, N_HELD_OUT)


def test_the_onnx_example_script_gives_keras_top_class_and_probability(exported, tmp_path):
    """The bundle's predict_onnx.py, in an isolated Python, on generated photos (PNG and JPEG, odd sizes)."""
    assert exported.code == 0, exported.stderr
    shutil.copy(ONNX_TEMPLATE, tmp_path / "predict_onnx.py")
    shutil.copy(exported.model, tmp_path)
    shutil.copy(exported.model.with_name("labels.txt"), tmp_path)
    rng = np.random.default_rng(3)
    photos = [write_image(tmp_path / "green.png", CLASS_COLOURS["green"], 90, rng).name,
              write_image(tmp_path / "blue.jpg", CLASS_COLOURS["blue"], 50, rng, fmt="JPEG").name]
    proc = run_script(tmp_path, "model.onnx", photos, script="predict_onnx.py")
    assert proc.returncode == 0, proc.stderr
    rows = parse(proc.stdout)
    probs, kept, _ = exported.keras.predict_files([str(tmp_path / p) for p in photos])
    assert kept == [0, 1] and [path for path, _, _ in rows] == photos
    for (path, label, prob), expected in zip(rows, probs):
        assert label == CLASSES[int(expected.argmax())], path
        assert prob == pytest.approx(float(expected.max()), abs=5e-4), path  # printed with 4 decimals


def test_a_folder_as_the_onnx_target_is_one_sentence(exported, tmp_path):
    assert exported.code == 0, exported.stderr
    code, stdout, stderr = run_cli(["export", exported.run, "--format", "onnx", "--out", tmp_path, "--json"])
    assert_user_error(code, stdout, stderr, "is a folder", str(tmp_path / "model.onnx"))


def test_only_onnx_files_exported_here_are_run(exported, tmp_path):
    """This test's cache is not the export's: the same bytes are unknown until recorded as produced here."""
    from tlcore.models.onnx_model import OnnxModel

    with pytest.raises(TLError, match="was not exported by this server"):
        OnnxModel(exported.model)
    code, stdout, stderr = run_cli(["predict", exported.model, exported.held_out[0]["path"], "--json"])
    assert_user_error(code, stdout, stderr, "'model.onnx' was not exported by this server")
    record_produced(exported.model)
    model = OnnxModel(exported.model)
    assert (model.classes, model.input_size, model.input_dtype) == (CLASSES, SIZE, "float32")
    np.testing.assert_allclose(model.predict_batch(exported.images), exported.keras_probs, atol=TOLERANCE)
    code, stdout, stderr = run_cli(["predict", exported.model, exported.held_out[0]["path"], "--json"])
    assert code == 0, stderr
    (prediction,) = last_json(stdout)["predictions"]
    assert prediction["label"] == CLASSES[int(exported.keras_probs[0].argmax())]


def test_a_damaged_onnx_file_is_one_sentence(tmp_path):
    from tlcore.models.onnx_model import OnnxModel

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all")
    (tmp_path / "labels.txt").write_text("a\nb\n", encoding="utf-8")
    record_produced(bad)  # trusted, so that ONNX Runtime is the one refusing it
    with pytest.raises(TLError, match="is not an ONNX model ONNX Runtime can run") as info:
        OnnxModel(bad)
    assert "\n" not in str(info.value)
