"""TFLiteModel: an exported .tflite with its labels, run by LiteRT through the export contract.

Uses the files of the session's shared export (see test_export.shared_exports); copies them before
changing anything beside them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.core.test_export import CLASSES, SIZE, shared_exports
from tlcore.io.errors import TLError
from tlcore.models.tflite_model import TFLiteModel, load_tflite, read_labels

pytestmark = pytest.mark.usefixtures("shared_export_standin")  # the shared run's backbone (test_export)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture(scope="module")
def float32(shared):
    return TFLiteModel(shared.out / "model_float32.tflite")


@pytest.fixture(scope="module")
def images(shared):
    return [s["path"] for s in shared.samples]


def copy_model(shared, folder: Path, name="model_float32.tflite") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(shared.out / name, folder / name))


def one_line_error(info, *fragments):
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# Loading ---------------------------------------------------------------------------------------------

def test_loads_with_the_labels_beside_it(shared, float32):
    assert float32.classes == CLASSES
    assert float32.input_size == SIZE and float32.input_dtype == "float32"
    assert float32.path == shared.out / "model_float32.tflite"
    model = load_tflite(shared.out / "model_float32.tflite", num_threads=1)
    assert model.classes == CLASSES and model.input_size == SIZE


def test_explicit_classes_override_labels_txt(shared):
    model = TFLiteModel(shared.out / "model_float32.tflite", classes=["a", "b", "c"])
    assert model.classes == ["a", "b", "c"]


def test_wrong_number_of_labels(shared, tmp_path):
    with pytest.raises(TLError) as info:
        TFLiteModel(shared.out / "model_float32.tflite", classes=["red", "green"])
    one_line_error(info, "has 3 outputs", "names 2 classes", "model_float32.tflite")

    path = copy_model(shared, tmp_path)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\npurple\n", encoding="utf-8")
    with pytest.raises(TLError) as info:
        load_tflite(path)
    one_line_error(info, "has 3 outputs", "names 4 classes")


def test_blank_lines_in_labels_txt_are_ignored(shared, tmp_path):
    path = copy_model(shared, tmp_path)
    (tmp_path / "labels.txt").write_text("\nred\r\n  green \n\nblue\n\n", encoding="utf-8")
    assert read_labels(tmp_path / "labels.txt") == CLASSES
    assert load_tflite(path).classes == CLASSES


def test_missing_labels_txt(shared, tmp_path):
    path = copy_model(shared, tmp_path)
    with pytest.raises(TLError) as info:
        load_tflite(path)
    one_line_error(info, "cannot read the labels file", str(tmp_path / "labels.txt"))


def test_missing_model_file(tmp_path):
    with pytest.raises(TLError) as info:
        TFLiteModel(tmp_path / "nope.tflite", classes=["a", "b"])
    one_line_error(info, "does not exist", str(tmp_path / "nope.tflite"))
    with pytest.raises(TLError, match="does not exist"):
        TFLiteModel(tmp_path, classes=["a", "b"])  # a folder is not a model file


@pytest.mark.parametrize("content", [
    pytest.param(b"", id="empty"),
    pytest.param(b"hello, I am not a model\n", id="text"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(200), id="png"),
    pytest.param(None, id="truncated"),
])
def test_not_a_tflite_file(shared, tmp_path, content):
    if content is None:
        content = (shared.out / "model_float32.tflite").read_bytes()[:100_000]
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(TLError) as info:
        load_tflite(path)
    one_line_error(info, str(path), "is not a TFLite model LiteRT can run")


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """Two tiny TFLite models outside the contract: a non-square input and a one-channel one."""
    import keras
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("odd")
    paths = {}
    for name, shape in [("wide", (8, 12, 3)), ("grey", (8, 8, 1))]:
        model = keras.Sequential([keras.Input(shape, batch_size=1), keras.layers.Flatten(),
                                  keras.layers.Dense(2, activation="softmax")])
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return paths


@pytest.mark.parametrize("name, shape", [("wide", "[1, 8, 12, 3]"), ("grey", "[1, 8, 8, 1]")])
def test_input_outside_the_contract(odd_models, name, shape):
    with pytest.raises(TLError) as info:
        TFLiteModel(odd_models[name], classes=["a", "b"])
    one_line_error(info, shape, "expected [1, H, H, 3]")


# Predicting ------------------------------------------------------------------------------------------

def test_predict_files_skips_a_broken_image(float32, images, tmp_path):
    broken = tmp_path / "broken.png"
    data = Path(images[0]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a PNG cut in the middle of its pixels
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    paths = [images[0], str(broken), images[1], str(text), str(tmp_path / "missing.png"), images[2]]
    probs, kept, skipped = float32.predict_files(paths, batch_size=2)
    assert kept == [0, 2, 5]
    assert [s["path"] for s in skipped] == [str(broken), str(text), str(tmp_path / "missing.png")]
    reasons = [s["reason"] for s in skipped]
    assert reasons[0].startswith("corrupt or truncated image")
    assert reasons[1] == "not an image file Pillow can read"
    assert reasons[2]
    alone, _, _ = float32.predict_files([images[0], images[1], images[2]])
    np.testing.assert_allclose(probs, alone, atol=1e-6)


def test_predictions_are_probabilities_that_vary(float32, images):
    probs, kept, skipped = float32.predict_files(images)
    assert probs.shape == (len(images), len(CLASSES)) and probs.dtype == np.float32
    assert kept == list(range(len(images))) and skipped == []
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert np.ptp(probs, axis=0).max() > 0.05
    from tlcore.data.images import load_image

    batch = np.stack([load_image(p, SIZE) for p in images[:2]]).astype(np.float32)
    np.testing.assert_allclose(float32.predict_batch(batch), probs[:2], atol=1e-6)


def test_predict_files_matches_the_keras_model(shared, float32, images):
    from tlcore.models.run import load_run

    keras_probs, _, _ = load_run(shared.run).predict_files(images)
    probs, _, _ = float32.predict_files(images)
    np.testing.assert_allclose(probs, keras_probs, atol=1e-3)


def test_uint8_io_round_trip(shared, images):
    """uint8 pixels in, uint8 scores out: the same integer model as the float-interface INT8 file."""
    uint8io = TFLiteModel(shared.uint8io["exports"][0]["path"])
    int8 = TFLiteModel(shared.out / "model_int8.tflite")
    assert uint8io.input_dtype == "uint8" and int8.input_dtype == "float32"
    scale, zero = uint8io._in["quantization"]
    assert (scale, zero) == (1.0, 0)  # pixels 0..255 map to themselves, as the README says
    probs, kept, _ = uint8io.predict_files(images)
    reference, _, _ = int8.predict_files(images)
    assert probs.dtype == np.float32 and kept == list(range(len(images)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)  # dequantised: steps of 1/256
    np.testing.assert_allclose(probs, reference, atol=1 / 256 + 1e-6)
    assert np.ptp(probs, axis=0).max() > 0.05  # the outputs depend on the image


class FakeInterpreter:
    """Records what TFLiteModel._invoke sets and answers with fixed integer scores."""

    def __init__(self, in_dtype, in_q, out_dtype, out_q, raw_output):
        self.inp = {"index": 0, "dtype": in_dtype, "quantization": in_q}
        self.out = {"index": 1, "dtype": out_dtype, "quantization": out_q}
        self.raw_output, self.set = np.asarray(raw_output, out_dtype), None

    def set_tensor(self, index, value):
        self.set = value

    def invoke(self):
        pass

    def get_tensor(self, index):
        return self.raw_output[None]


def fake_model(interp):
    model = TFLiteModel.__new__(TFLiteModel)
    model.interpreter, model._in, model._out = interp, interp.inp, interp.out
    return model


def test_quantisation_uses_the_tensors_scale_and_zero_point():
    interp = FakeInterpreter(np.int8, (2.0, -10), np.int8, (1 / 256, -128), [-128, 0, 127])
    model = fake_model(interp)
    pixels = np.array([[[0.0, 1.0, 255.0], [100.0, 300.0, -50.0]]], np.float32)
    probs = model._invoke(pixels)
    assert interp.set.dtype == np.int8 and interp.set.shape == (1, 1, 2, 3)
    # q = round(x / 2 - 10), clipped to int8
    assert interp.set[0].tolist() == [[[-10, -10, 118], [40, 127, -35]]]
    np.testing.assert_allclose(probs, [0.0, 0.5, 255 / 256])
    assert probs.dtype == np.float32


def test_float_interface_is_passed_through():
    interp = FakeInterpreter(np.float32, (0.0, 0), np.float32, (0.0, 0), [0.25, 0.75])
    probs = fake_model(interp)._invoke(np.full((2, 2, 3), 7.5, np.float32))
    assert interp.set.dtype == np.float32 and np.all(interp.set == 7.5)
    np.testing.assert_allclose(probs, [0.25, 0.75])


def test_latency(float32, images):
    from tlcore.data.images import load_image

    ms = float32.latency_ms(load_image(images[0], SIZE), repeats=3, warmup=1)
    assert 0 < ms < 10_000
