"""Export of a trained run: the seven formats, their contract, verification against Keras, and failures.

The conversions are expensive (over a minute for Lite0's graph on a small CPU), so one tiny run is
exported once per session to every format (plus an INT8 file with uint8 input and output) by
:func:`shared_exports`; the tests here and in test_tflite_model.py, test_bundle.py, test_produced.py and
test_export_contract.py read those files and never modify them. Its backbone is a Lite0-named stand-in
of test_finetune (convolutions, BatchNorm, the same feature size, half a million weights), which every one
of those modules also reloads (``shared_export_standin``); the real Lite0 graph is converted and verified by the Export page's job
(tests/ui/test_export_page.py), the bench and the browser test. Failure paths use cheap exports
(``keras``), a stop request before the first format, or a converter that raises.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import tlcore.export.formats as export_mod
import tlcore.models.run as run_mod
from tests.conftest import make_image_folder, write_image
from tests.core.test_finetune import wide_lite0_standin
from tlcore.io.atomic import replace_dir, write_bytes_atomic
from tlcore.io.errors import TLError
from tlcore.export.formats import (FORMATS, TFLITE_FORMATS, VERIFIED_FORMATS, ExportConfig, calibration_files,
                                   default_filename, export_formats, export_model, labelled_files, load_calibration)
from tlcore.models.conversion import convert_tflite, export_saved_model, tflite_converter
from tlcore.data.images import load_image
from tlcore.models.classifier import build_classifier, build_head
from tlcore.backbones.registry import create_backbone, get_spec
from tlcore.models.run import load_run, save_run

pytestmark = pytest.mark.usefixtures("shared_export_standin")  # the shared run's backbone

BACKBONE = "efficientnet_lite0"
SIZE = 64  # a small input keeps the conversions and the Keras reference fast; the run records it
IMAGE_SIZE = 48  # the generated files are resized to SIZE on the way in, as photos are
CLASSES = ["red", "green", "blue"]  # not sorted: labels.txt and the outputs follow this order
SPLITS = ["train", "train", "train", "val", "test", "test"]  # per class: 9 train, 3 val, 6 test images
N_HELD_OUT = 2 * len(CLASSES)
# Every format but the web folder, whose ONNX Runtime Web comes from npm and whose page a browser runs:
# test_onnx_export.py exports and tests it on the real Lite0 graph.
SHARED_FORMATS = tuple(f for f in FORMATS if f != "web")
CALIBRATION = 8  # fewer than the 9 training images, so the limit is visible


# A tiny run ---------------------------------------------------------------------------------------

def make_export_run(root: Path, backbone=create_backbone, seed: int = 1, splits=SPLITS) -> SimpleNamespace:
    """A saved run like `train --weights none` makes: random backbone, standardised head, samples.json.

    ``backbone`` builds the network (``create_backbone``, or a stand-in that ``tlcore.models.run`` must
    then also use to reload the run).
    """
    data = make_image_folder(root / "data", n_per_class=len(splits), classes=CLASSES, size=IMAGE_SIZE, seed=seed)
    samples = []
    for name in CLASSES:
        files = sorted((data / name).glob("*.png"))
        samples += [{"path": str(f), "label": name, "split": split} for f, split in zip(files, splits)]

    keras.utils.set_random_seed(seed)
    dim = get_spec(BACKBONE).feature_dim
    net = backbone(BACKBONE, weights=None, input_shape=(SIZE, SIZE, 3))
    head = build_head(dim, len(CLASSES), 0.2, standardize=True)
    model = build_classifier(net, head)
    # As training does: standardise the (tiny, arbitrary-scale) random features, then a head whose
    # logits are of order 1, so the probabilities vary by image and are not saturated.
    x = np.stack([load_image(s["path"], SIZE) for s in samples]).astype(np.float32)
    head.get_layer("head_standardize").set_statistics(np.asarray(net(x, training=False)))
    kernel = head.get_layer("head_dense").kernel
    kernel.assign(np.random.default_rng(seed).normal(0, 1 / np.sqrt(dim), kernel.shape).astype(np.float32))
    config = {"backbone": BACKBONE, "weights": None, "input_size": SIZE, "fine_tuned": False,
              "train": {"epochs": 3, "lr": 0.001, "dropout": 0.2, "weights": None}}
    metrics = {"val_accuracy": 0.5, "test_accuracy": 0.5}
    run = save_run(root / "run", model, CLASSES, config, metrics, extra={"samples.json": samples})
    return SimpleNamespace(run=run, data=data, samples=samples,
                           held_out=[s for s in samples if s["split"] == "test"],
                           train=[s for s in samples if s["split"] == "train"])


_SHARED: dict = {}


def shared_exports(tmp_path_factory) -> SimpleNamespace:
    """The tiny run exported to every format, once per session (shared by several test modules).

    ``result`` is the :func:`export_formats` result for all of :data:`SHARED_FORMATS` into ``out``;
    ``uint8io`` the one for a ``tflite-int8`` file with uint8 input and output. Read only.
    """
    if "error" in _SHARED:
        raise _SHARED["error"]
    if "value" not in _SHARED:
        root = tmp_path_factory.mktemp("shared-export")
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))  # outside the autouse fixture's reach
                mp.setattr(run_mod, "create_backbone", wide_lite0_standin)  # export_formats reloads the run
                built = make_export_run(root, backbone=wide_lite0_standin)
                events = []
                result = export_formats(built.run, SHARED_FORMATS, root / "out",
                                        ExportConfig(calibration_samples=CALIBRATION),
                                        on_progress=lambda step, logs: events.append((step, dict(logs))))
                uint8io = export_formats(built.run, ["tflite-int8"], root / "uint8io" / "model_int8_uint8io.tflite",
                                         ExportConfig(calibration_samples=CALIBRATION, int8_io=True))
        except BaseException as exc:
            _SHARED["error"] = exc
            raise
        _SHARED["value"] = SimpleNamespace(**vars(built), root=root, out=root / "out", result=result,
                                           events=events, uint8io=uint8io)
    return _SHARED["value"]


def entry(result: dict, fmt: str) -> dict:
    (found,) = [e for e in result["exports"] if e["format"] == fmt]
    return found


def interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    model = Interpreter(model_path=str(path))
    model.allocate_tensors()
    return model


def run_interpreter(model, x: np.ndarray) -> np.ndarray:
    inp, out = model.get_input_details()[0], model.get_output_details()[0]
    model.set_tensor(inp["index"], x)
    model.invoke()
    return model.get_tensor(out["index"])[0]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture(scope="module")
def result(shared):
    return copy.deepcopy(shared.result)  # a test that changed it would not spoil the others


@pytest.fixture(scope="module")
def run_model(shared):
    return load_run(shared.run)


@pytest.fixture(scope="module")
def held_out(shared, run_model):
    """The held-out files and the Keras model's probabilities on them."""
    paths = [s["path"] for s in shared.held_out]
    probs, kept, skipped = run_model.predict_files(paths)
    assert kept == list(range(len(paths))) and skipped == []
    return SimpleNamespace(paths=paths, probs=probs, y=np.array([CLASSES.index(s["label"]) for s in shared.held_out]))


@pytest.fixture
def run_copy(shared, tmp_path):
    """A private copy of the run (its samples.json still points at the shared images)."""
    return Path(shutil.copytree(shared.run, tmp_path / "run"))


def tree(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, hidden ones included (temporary names start with a dot)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# Every format, in one export -----------------------------------------------------------------------

def test_every_format_is_exported_with_its_default_name(shared, result):
    assert [e["format"] for e in result["exports"]] == list(SHARED_FORMATS)
    assert result["stopped"] is False
    assert result["run_dir"] == str(shared.run)
    assert result["seconds"] > 0
    for e in result["exports"]:
        assert e["path"] == str(shared.out / default_filename(e["format"]))
        assert e["labels"] == str(shared.out / "labels.txt")
        path = Path(e["path"])
        if e["format"] == "saved-model":
            assert path.is_dir() and (path / "saved_model.pb").is_file()
            assert e["size_bytes"] == sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            assert path.is_file() and e["size_bytes"] == path.stat().st_size
        assert e["convert_seconds"] >= 0
        batch = 1 if e["format"] in TFLITE_FORMATS else None
        assert e["input"] == {"shape": [batch, SIZE, SIZE, 3], "dtype": "float32", "pixels": "RGB 0..255"}
        assert ("verification" in e) == (e["format"] in VERIFIED_FORMATS)
    # Nothing else in the folder: no temporary files or folders left by the atomic writes.
    assert sorted(p.name for p in shared.out.iterdir()) == sorted(
        ["labels.txt", *(default_filename(f) for f in SHARED_FORMATS)])
    json.dumps(result)  # the CLI prints it and the bundle stores it


def test_labels_txt_beside_the_exports_in_class_order(shared):
    assert (shared.out / "labels.txt").read_text(encoding="utf-8") == "red\ngreen\nblue\n"
    uint8io_labels = Path(shared.uint8io["exports"][0]["labels"])
    assert uint8io_labels == Path(shared.uint8io["exports"][0]["path"]).with_name("labels.txt")
    assert uint8io_labels.read_text(encoding="utf-8").splitlines() == CLASSES


@pytest.mark.parametrize("fmt", TFLITE_FORMATS)
def test_tflite_files_follow_the_contract(shared, fmt):
    """float32 RGB 0..255 in, shape [1, H, W, 3]; one probability per class out, summing to 1."""
    model = interpreter(shared.out / default_filename(fmt))
    (inp,), (out,) = model.get_input_details(), model.get_output_details()
    assert inp["dtype"] == np.float32
    assert inp["shape"].tolist() == [1, SIZE, SIZE, 3]
    assert out["dtype"] == np.float32
    assert out["shape"].tolist() == [1, len(CLASSES)]
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(3):
        probs = run_interpreter(model, rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32))
        assert np.all(probs >= 0)
        # INT8 outputs are quantised in steps of 1/256.
        assert probs.sum() == pytest.approx(1.0, abs=0.02 if fmt == "tflite-int8" else 1e-4)
        outputs.append(probs)
    assert not np.allclose(outputs[0], outputs[1])  # the input reaches the output


def test_int8_io_export_takes_uint8_pixels(shared):
    (e,) = shared.uint8io["exports"]
    assert e["format"] == "tflite-int8"
    assert e["input"] == {"shape": [1, SIZE, SIZE, 3], "dtype": "uint8", "pixels": "RGB 0..255"}
    assert e["calibration_samples"] == CALIBRATION
    model = interpreter(e["path"])
    (inp,), (out,) = model.get_input_details(), model.get_output_details()
    assert inp["dtype"] == np.uint8 and inp["shape"].tolist() == [1, SIZE, SIZE, 3]
    assert out["dtype"] == np.uint8 and out["shape"].tolist() == [1, len(CLASSES)]
    scale, zero = out["quantization"]
    q = run_interpreter(model, np.full((1, SIZE, SIZE, 3), 128, np.uint8))
    assert ((q.astype(np.float32) - zero) * scale).sum() == pytest.approx(1.0, abs=0.02)
    # Verified like the others, through the uint8 path of TFLiteModel.
    assert e["verification"]["n"] == N_HELD_OUT
    assert 0 <= e["verification"]["exported_accuracy"] == e["verification"]["tflite_accuracy"] <= 1


def test_float32_tflite_predicts_what_keras_predicts(shared, held_out):
    from tlcore.models.tflite_model import TFLiteModel

    v = entry(shared.result, "tflite-float32")["verification"]
    assert v["agreement"] == 1.0
    assert v["exported_accuracy"] == v["tflite_accuracy"] == v["keras_accuracy"]
    assert v["max_probability_difference"] < 1e-3
    probs, kept, skipped = TFLiteModel(shared.out / "model_float32.tflite").predict_files(held_out.paths)
    assert kept == list(range(N_HELD_OUT)) and skipped == []
    np.testing.assert_allclose(probs, held_out.probs, atol=1e-3)
    assert v["max_probability_difference"] == pytest.approx(np.abs(probs - held_out.probs).max(), abs=1e-6)
    # The comparison has teeth: the probabilities vary by image.
    assert np.ptp(held_out.probs, axis=0).max() > 0.05


@pytest.mark.parametrize("fmt", ["tflite-float16", "tflite-dynamic", "tflite-int8"])
def test_quantised_files_are_smaller(result, fmt):
    float32 = entry(result, "tflite-float32")["size_bytes"]
    size = entry(result, fmt)["size_bytes"]
    # float16 halves the weights, int8 quarters them; the graph itself adds a little. (Lite0's own
    # 3.4 M parameters are checked on its real export in test_export_page.)
    assert size < float32 * (0.55 if fmt == "tflite-float16" else 0.35), (fmt, size, float32)


def test_verification_fields_are_consistent(shared, result, held_out):
    keras_accuracy = float((held_out.probs.argmax(axis=1) == held_out.y).mean())
    data = result["verification_data"]
    assert data["source"] == "run test split"
    assert data["n"] == N_HELD_OUT and data["skipped"] == []
    assert data["keras_accuracy"] == pytest.approx(keras_accuracy)
    assert data["keras_latency_ms"] > 0
    for fmt in (f for f in VERIFIED_FORMATS if f in SHARED_FORMATS):
        v = entry(result, fmt)["verification"]
        assert v["n"] == N_HELD_OUT
        assert v["keras_accuracy"] == pytest.approx(keras_accuracy)
        # Every format's accuracy is `exported_accuracy`; a TFLite file's is also `tflite_accuracy`, as before ONNX.
        assert ("tflite_accuracy" in v) == (fmt in TFLITE_FORMATS)
        assert v.get("tflite_accuracy", v["exported_accuracy"]) == v["exported_accuracy"]
        assert 0 <= v["exported_accuracy"] <= 1 and 0 <= v["agreement"] <= 1
        assert v["accuracy_change"] == pytest.approx(v["exported_accuracy"] - v["keras_accuracy"])
        assert 0 <= v["max_probability_difference"] <= 1
        assert v["latency_ms"] > 0 and v["keras_latency_ms"] == data["keras_latency_ms"]
        assert list(v["per_class"]) == CLASSES  # every class is in the test split, in class order
        assert sum(c["n"] for c in v["per_class"].values()) == N_HELD_OUT
        for name, c in v["per_class"].items():
            mask = held_out.y == CLASSES.index(name)
            assert c["n"] == mask.sum()
            assert c["keras_accuracy"] == pytest.approx((held_out.probs[mask].argmax(axis=1) == held_out.y[mask]).mean())
            assert 0 <= c["exported_accuracy"] <= 1
            assert c.get("tflite_accuracy", c["exported_accuracy"]) == c["exported_accuracy"]
            assert c["change"] == pytest.approx(c["exported_accuracy"] - c["keras_accuracy"])
        # Overall accuracy is the per-class accuracies weighted by their counts.
        assert v["exported_accuracy"] == pytest.approx(
            sum(c["n"] * c["exported_accuracy"] for c in v["per_class"].values()) / N_HELD_OUT)


def test_int8_calibration_and_warnings(result):
    e = entry(result, "tflite-int8")
    assert e["calibration_samples"] == CALIBRATION and e["calibration_skipped"] == []
    codes = [w["code"] for w in result["warnings"]]
    assert "few_calibration_images" in codes
    (few,) = [w for w in result["warnings"] if w["code"] == "few_calibration_images"]
    assert f"used {CALIBRATION} images" in few["message"] and "100-500" in few["message"]
    assert "no_verification_data" not in codes
    assert all(w["message"] and "\n" not in w["message"] for w in result["warnings"])


def test_progress_reports_each_stage_in_order(shared):
    steps = [step for step, _ in shared.events]
    assert steps == list(range(len(steps)))
    stages = [(logs["stage"], logs["format"]) for _, logs in shared.events]
    expected = [("reference", "keras"), ("calibration", "tflite-int8")]
    for fmt in SHARED_FORMATS:
        expected += [("convert", fmt)] + ([("verify", fmt)] if fmt in VERIFIED_FORMATS else []) + [("exported", fmt)]
    assert stages == expected
    logs = dict(((s, f), l) for _, l in shared.events for s, f in [(l["stage"], l["format"])])
    assert logs[("reference", "keras")]["n"] == N_HELD_OUT
    assert logs[("calibration", "tflite-int8")]["n"] == CALIBRATION
    assert logs[("exported", "keras")]["size_bytes"] == entry(shared.result, "keras")["size_bytes"]


def test_keras_file_reloads_with_the_same_predictions(shared, held_out):
    from tlcore.models.classifier import Standardize  # importing tlcore registers its layers with Keras

    model = keras.models.load_model(shared.out / "model.keras")
    assert any(isinstance(layer, Standardize) for layer in model.get_layer("head").layers)
    x = np.stack([load_image(p, SIZE) for p in held_out.paths]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), held_out.probs, atol=1e-5)


def test_saved_model_serves_the_same_predictions(shared, held_out):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(shared.out / "saved_model"))
    serve = loaded.signatures["serving_default"]
    x = np.stack([load_image(p, SIZE) for p in held_out.paths]).astype(np.float32)
    (probs,) = serve(pixels=tf.constant(x)).values()  # any batch size: the batch dimension is free
    np.testing.assert_allclose(probs.numpy(), held_out.probs, atol=1e-5)
    np.testing.assert_allclose(loaded.serve(tf.constant(x[:1])).numpy(), held_out.probs[:1], atol=1e-5)


# Cheap exports ------------------------------------------------------------------------------------

def test_export_model_writes_one_keras_file(shared, tmp_path, held_out):
    out = tmp_path / "deep" / "mine.keras"
    done = export_model(shared.run, "keras", out)
    assert done["format"] == "keras" and done["path"] == str(out) and out.is_file()
    assert done["size_bytes"] == out.stat().st_size
    assert done["verification_data"] is None and done["warnings"] == []  # nothing to verify for Keras
    assert (tmp_path / "deep" / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES
    assert tree(tmp_path / "deep") == ["labels.txt", "mine.keras"]


def test_export_replaces_an_existing_file(shared, tmp_path):
    out = tmp_path / "model.keras"
    out.write_bytes(b"an older export")
    export_formats(shared.run, ["keras"], out, ExportConfig(verify=False))
    assert out.read_bytes()[:2] == b"PK"  # a .keras file is a zip
    assert tree(tmp_path) == ["labels.txt", "model.keras"]


def test_should_stop_stops_before_the_next_format(shared, tmp_path):
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) > 1  # after the first format

    events = []
    result = export_formats(shared.run, ["keras", "saved-model", "tflite-float32"], tmp_path / "out",
                            ExportConfig(verify=False), should_stop=should_stop,
                            on_progress=lambda step, logs: events.append(logs["stage"]))
    assert result["stopped"] is True
    assert [e["format"] for e in result["exports"]] == ["keras"]
    assert len(asked) == 2
    assert tree(tmp_path / "out") == ["labels.txt", "model.keras"]
    assert events == ["convert", "exported"]


def test_no_held_out_images_is_a_warning(shared, run_copy):
    samples = [{**s, "split": "train"} for s in shared.samples]
    (run_copy / "samples.json").write_text(json.dumps(samples), encoding="utf-8")
    # A stop before the first format: the checks before converting are what this test is about.
    result = export_formats(run_copy, ["tflite-float32"], run_copy / "m.tflite", should_stop=lambda: True)
    assert result["stopped"] is True and result["exports"] == []
    (w,) = result["warnings"]
    assert w["code"] == "no_verification_data" and "the run kept no held-out images" in w["message"]
    assert result["verification_data"] == {"source": "none", "n": 0, "skipped": []}
    assert not (run_copy / "m.tflite").exists()


def test_validation_split_is_used_without_a_test_split(shared, run_copy):
    samples = [{**s, "split": "val" if s["split"] == "test" else s["split"]} for s in shared.samples]
    (run_copy / "samples.json").write_text(json.dumps(samples), encoding="utf-8")
    events = []
    result = export_formats(run_copy, ["tflite-float32"], run_copy / "m.tflite", should_stop=lambda: True,
                            on_progress=lambda step, logs: events.append(logs))
    assert result["verification_data"]["source"] == "run val split"
    assert result["verification_data"]["n"] == 3 * len(CLASSES)
    assert events == [{"stage": "reference", "format": "keras", "n": 3 * len(CLASSES)}]


def test_held_out_images_that_are_gone_are_not_counted(shared, run_copy, tmp_path):
    samples = copy.deepcopy(shared.samples)
    gone = [s for s in samples if s["split"] == "test"][0]
    gone["path"] = str(tmp_path / "deleted.png")
    (run_copy / "samples.json").write_text(json.dumps(samples), encoding="utf-8")
    result = export_formats(run_copy, ["tflite-float32"], run_copy / "m.tflite", should_stop=lambda: True)
    assert result["verification_data"]["n"] == N_HELD_OUT - 1


def test_verification_counts_only_the_images_it_could_read(shared, tmp_path):
    data = make_image_folder(tmp_path / "verify", n_per_class=2, classes=("red", "blue"), size=16)
    (data / "blue" / "notes.txt").write_text("not a photo")
    result = export_formats(shared.run, ["tflite-float32"], tmp_path / "m.tflite", verify=data,
                            should_stop=lambda: True)
    v = result["verification_data"]
    assert v["source"] == str(data) and v["n"] == 4
    assert v["skipped"] == [{"path": str(data / "blue" / "notes.txt"), "reason": "not an image file Pillow can read"}]
    assert 0 <= v["keras_accuracy"] <= 1 and result["warnings"] == []


def test_verification_photos_that_cannot_be_read_are_a_warning(shared, tmp_path):
    data = tmp_path / "verify"
    for name in ("red", "blue"):
        (data / name).mkdir(parents=True)
        (data / name / "x.jpg").write_bytes(b"")
    result = export_formats(shared.run, ["tflite-float32"], tmp_path / "m.tflite", verify=data,
                            should_stop=lambda: True)
    (w,) = result["warnings"]
    assert w["code"] == "unreadable_verification_data" and w["values"] == {"images": 2}
    assert "none of the 2 verification images could be read" in w["message"]
    assert result["verification_data"]["n"] == 0 and len(result["verification_data"]["skipped"]) == 2
    assert "keras_accuracy" not in result["verification_data"]


def test_few_calibration_images_warning(shared, tmp_path):
    result = export_formats(shared.run, ["tflite-int8"], tmp_path / "m.tflite",
                            ExportConfig(calibration_samples=500, verify=False), should_stop=lambda: True)
    (w,) = result["warnings"]
    assert w["code"] == "few_calibration_images"
    assert "used 9 images" in w["message"]  # all the training images there are
    assert tree(tmp_path) == []


def test_enough_calibration_images_give_no_warning(shared, tmp_path):
    folder = tmp_path / "calib"
    for i in range(100):
        # Tiny files: the images are resized on loading; what counts is how many decode.
        write_image(folder / f"{i}.png", (i, 255 - i, 128), size=4, rng=np.random.default_rng(i))
    events = []
    result = export_formats(shared.run, ["tflite-int8"], tmp_path / "m.tflite",
                            ExportConfig(calibration_samples=100, verify=False), calibration=folder,
                            should_stop=lambda: True, on_progress=lambda step, logs: events.append(logs))
    assert result["warnings"] == []
    assert events == [{"stage": "calibration", "format": "tflite-int8", "n": 100}]


# Failures: a TLError, and nothing half-written -------------------------------------------------------

def test_unknown_format_is_named(shared, tmp_path):
    with pytest.raises(TLError, match="'tflite-float64'") as info:
        export_formats(shared.run, ["keras", "tflite-float64"], tmp_path / "out")
    assert "tflite-float32" in str(info.value)  # the choices are listed
    with pytest.raises(TLError, match="'tensorrt'"):
        default_filename("tensorrt")
    with pytest.raises(TLError, match="at least one"):
        export_formats(shared.run, [], tmp_path / "out")
    assert tree(tmp_path) == []


@pytest.mark.parametrize("n", [0, -5])
def test_calibration_size_below_one(shared, tmp_path, n):
    with pytest.raises(TLError, match=f"calibration size must be a whole number >= 1, got {n}"):
        export_formats(shared.run, ["tflite-int8"], tmp_path / "m.tflite", ExportConfig(calibration_samples=n))
    with pytest.raises(TLError, match=f"got {n}"):
        load_calibration([], SIZE, n)
    assert tree(tmp_path) == []


def test_several_formats_need_a_folder(shared, tmp_path):
    out = tmp_path / "exports"
    out.write_text("a file the user keeps")
    with pytest.raises(TLError, match="is a file") as info:
        export_formats(shared.run, ["tflite-float32", "keras"], out)
    assert str(out) in str(info.value)
    assert out.read_text() == "a file the user keeps"
    assert tree(tmp_path) == ["exports"]


def test_one_file_format_into_an_existing_folder_is_refused(shared, tmp_path):
    out = tmp_path / "exports"
    (out / "keep.txt").parent.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(TLError, match="is a folder") as info:
        export_formats(shared.run, ["keras"], out, ExportConfig(verify=False))
    assert str(out) in str(info.value)
    assert tree(tmp_path) == ["exports", "exports/keep.txt"]


def test_saved_model_never_replaces_a_folder_that_is_not_one(shared, tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    (out / "model_float32.tflite").write_bytes(b"an earlier export")
    with pytest.raises(TLError, match="not a SavedModel") as info:
        export_formats(shared.run, ["saved-model"], out, ExportConfig(verify=False))
    assert str(out) in str(info.value)
    assert tree(tmp_path) == ["exports", "exports/model_float32.tflite"]


def test_saved_model_over_a_file_is_refused(shared, tmp_path):
    out = tmp_path / "model"
    out.write_text("a file")
    with pytest.raises(TLError, match="is a file"):
        export_formats(shared.run, ["saved-model"], out, ExportConfig(verify=False))
    assert out.read_text() == "a file" and tree(tmp_path) == ["model"]


def test_calibration_folder_without_readable_images(shared, tmp_path):
    calib = tmp_path / "calib"
    (calib / "sub").mkdir(parents=True)
    (calib / "a.png").write_text("not an image")
    (calib / "sub" / "b.jpg").write_bytes(b"")
    (calib / ".hidden.png").write_bytes(Path(shared.train[0]["path"]).read_bytes())  # hidden: not a candidate
    out = tmp_path / "out"
    with pytest.raises(TLError, match="none of the calibration files is a readable image"):
        export_formats(shared.run, ["tflite-int8"], out / "model.tflite", ExportConfig(verify=False),
                       calibration=calib)
    assert not out.exists()
    assert not list(tmp_path.rglob("*.tflite")) and not list(tmp_path.rglob("*.tmp"))


def test_calibration_sources_that_hold_nothing(shared, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TLError, match="holds no files"):
        calibration_files(shared.run, tmp_path / "empty")
    with pytest.raises(TLError, match="does not exist"):
        calibration_files(shared.run, tmp_path / "nowhere")


def test_calibration_files_default_to_the_training_split(shared, tmp_path):
    assert calibration_files(shared.run) == [s["path"] for s in shared.train]
    # A labelled folder (or zip) is read as a dataset: every class folder's images.
    assert sorted(calibration_files(shared.run, shared.data)) == sorted(s["path"] for s in shared.samples)


def test_calibration_from_a_run_whose_training_images_are_gone(shared, run_copy, tmp_path):
    samples = [{**s, "path": str(tmp_path / "gone" / Path(s["path"]).name)} for s in shared.samples]
    (run_copy / "samples.json").write_text(json.dumps(samples), encoding="utf-8")
    with pytest.raises(TLError, match="training images are gone"):
        calibration_files(run_copy)


def test_load_calibration_skips_unreadable_files_and_is_seeded(shared, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    files = [s["path"] for s in shared.train] + [str(bad)]
    images, skipped = load_calibration(files, SIZE, n=len(files), seed=3)
    assert images.shape == (len(files) - 1, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert skipped == [{"path": str(bad), "reason": "not an image file Pillow can read"}]
    few, _ = load_calibration(files, SIZE, n=4, seed=3)
    again, _ = load_calibration(files, SIZE, n=4, seed=3)
    other, _ = load_calibration(files, SIZE, n=4, seed=4)
    assert len(few) == 4
    np.testing.assert_array_equal(few, again)
    assert not np.array_equal(few, other)


def test_labelled_files_in_the_models_class_order(shared, tmp_path):
    data = make_image_folder(tmp_path / "v", n_per_class=2, classes=("blue", "red"), size=8)
    paths, y, skipped = labelled_files(CLASSES, data)
    assert [CLASSES[i] for i in y] == [Path(p).parent.name for p in paths]
    assert sorted(y) == [0, 0, 2, 2] and skipped == []
    other = make_image_folder(tmp_path / "w", n_per_class=1, classes=("red", "green"), size=8)
    (other / "purple").mkdir()
    shutil.copy(next((other / "red").iterdir()), other / "purple" / "x.png")
    with pytest.raises(TLError, match="'purple'"):
        labelled_files(CLASSES, other)


class FailingConverter:
    """Stands in for TFLiteConverter: takes the settings, then fails as the real one can."""

    def __init__(self, path):
        self.target_spec = SimpleNamespace(supported_types=None, supported_ops=None)

    def convert(self):
        raise RuntimeError("failed to legalize operation 'tf.Foo'\n  see the op at loc(\"head\")")


@pytest.fixture
def failing_converter(monkeypatch):
    import tensorflow as tf

    saved = []
    # Skip the SavedModel (seconds) and make the converter fail.
    monkeypatch.setattr(export_mod, "export_saved_model", lambda model, directory, batch: saved.append(batch))
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", FailingConverter)
    return saved


def test_converter_failure_leaves_the_previous_file(shared, tmp_path, failing_converter):
    out = tmp_path / "model.tflite"
    out.write_bytes(b"the previous export")
    with pytest.raises(TLError) as info:
        export_formats(shared.run, ["tflite-float32"], out, ExportConfig(verify=False))
    message = str(info.value)
    assert message.startswith("conversion to tflite-float32 failed (failed to legalize operation 'tf.Foo'")
    assert "\n" not in message
    assert failing_converter == [1]  # the TFLite converter gets a batch-1 model
    assert out.read_bytes() == b"the previous export"
    assert tree(tmp_path) == ["model.tflite"]  # no temporary file, and labels.txt is not written either


def test_converter_failure_in_a_folder_export_leaves_no_partial_file(shared, tmp_path, failing_converter):
    with pytest.raises(TLError, match="conversion to tflite-int8 failed"):
        export_formats(shared.run, ["tflite-int8", "tflite-float32"], tmp_path / "out",
                       ExportConfig(verify=False, calibration_samples=2))
    assert not list(tmp_path.rglob("*.tflite")) and not list(tmp_path.rglob(".*"))


def test_convert_tflite_argument_errors(tmp_path, failing_converter):
    with pytest.raises(TLError, match="'keras' is not a TFLite format"):
        convert_tflite(tmp_path, "keras")
    with pytest.raises(TLError, match="calibration images"):
        convert_tflite(tmp_path, "tflite-int8", calibration=None)
    with pytest.raises(TLError, match="calibration images"):
        convert_tflite(tmp_path, "tflite-int8", calibration=np.zeros((0, SIZE, SIZE, 3), np.uint8))


def test_one_converter_for_several_formats_carries_no_setting_from_one_to_the_next(shared, run_model, tmp_path):
    export_saved_model(run_model.model, tmp_path / "batch1", batch=1)
    calib, _ = load_calibration(calibration_files(shared.run, None), run_model.input_size, 8, 0)
    # The hardest order: the uint8-in/out INT8 settings first, then the formats that must not keep any of them.
    order = [("tflite-int8", True), ("tflite-float16", False), ("tflite-dynamic", False), ("tflite-float32", False)]
    converter = tflite_converter(tmp_path / "batch1")
    reused = [convert_tflite(converter, fmt, calib, int8_io) for fmt, int8_io in order]
    fresh = [convert_tflite(tmp_path / "batch1", fmt, calib, int8_io) for fmt, int8_io in order]
    assert [len(b) for b in reused] == [len(b) for b in fresh]
    assert reused == fresh


# The warnings from verification -----------------------------------------------------------------------

def verification(keras_accuracy, exported_accuracy, agreement=1.0):
    return {"keras_accuracy": keras_accuracy, "exported_accuracy": exported_accuracy, "agreement": agreement}


def test_int8_accuracy_drop_warning():
    (w,) = export_mod._verification_warnings("tflite-int8", verification(0.90, 0.85, 0.9))
    assert w["code"] == "int8_accuracy_drop"
    assert "5.0 points" in w["message"] and "90.0% to 85.0%" in w["message"]
    assert "tflite-float16" in w["message"]


@pytest.mark.parametrize("keras_acc, tflite_acc", [
    (0.90, 0.89),  # exactly one point (0.9 - 0.89 is 0.010000000000000009 in floats): allowed
    (0.57, 0.56),
    (0.9, 0.895),
    (0.8, 0.85),   # INT8 did better
    (0.5, 0.5),
])
def test_int8_within_one_point_gives_no_warning(keras_acc, tflite_acc):
    assert export_mod._verification_warnings("tflite-int8", verification(keras_acc, tflite_acc, 0.5)) == []


def test_int8_just_over_one_point_warns():
    # 100 images: 90 right with Keras, 88 with INT8.
    assert [w["code"] for w in export_mod._verification_warnings("tflite-int8", verification(0.9, 0.88))] == [
        "int8_accuracy_drop"]


@pytest.mark.parametrize("fmt", ["tflite-float32", "tflite-float16", "onnx"])
def test_low_agreement_warning_for_float_formats(fmt):
    (w,) = export_mod._verification_warnings(fmt, verification(0.9, 0.9, 0.95))
    assert w["code"] == "low_agreement" and fmt in w["message"] and "95.0%" in w["message"]
    assert export_mod._verification_warnings(fmt, verification(0.9, 0.9, 0.99)) == []
    # An accuracy drop alone is the INT8 warning only.
    assert export_mod._verification_warnings(fmt, verification(0.9, 0.5, 1.0)) == []


def test_dynamic_range_losing_more_than_one_point_suggests_float16():
    (w,) = export_mod._verification_warnings("tflite-dynamic", verification(0.9, 0.5, 0.5))
    assert w["code"] == "quantized_accuracy_drop" and "40.0 points" in w["message"] and "tflite-float16" in w["message"]
    assert export_mod._verification_warnings("tflite-dynamic", verification(0.9, 0.89, 0.5)) == []


# Atomic writes ------------------------------------------------------------------------------------

def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"new bytes")
    assert target.read_bytes() == b"old"
    assert tree(tmp_path) == ["model.tflite"]


def test_atomic_write_and_folder_replacement(tmp_path):
    assert write_bytes_atomic(tmp_path / "a" / "b.bin", b"x" * 10) == tmp_path / "a" / "b.bin"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"x" * 10
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "saved_model.pb").write_text("new")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "stale.txt").write_text("old")
    assert replace_dir(tmp_path / "new", tmp_path / "target") == tmp_path / "target"
    assert tree(tmp_path) == ["a", "a/b.bin", "target", "target/saved_model.pb"]
