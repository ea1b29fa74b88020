"""The downloadable bundle: TFLite and ONNX files, labels.txt, a model card, the example scripts, export.json.

Reads the session's shared export (see test_export.shared_exports).
"""
from __future__ import annotations

import copy
import io
import json
import time
import zipfile
from pathlib import Path

import pytest

from tests.core.test_export import CALIBRATION, CLASSES, N_HELD_OUT, SIZE, shared_exports
from tlcore.export.bundle import EXAMPLE_SCRIPT, ONNX_EXAMPLE_SCRIPT, bundle_bytes, model_card, write_bundle
from tlcore.io.errors import TLError
from tlcore.export.formats import BUNDLED_FORMATS, TFLITE_FORMATS, default_filename

pytestmark = pytest.mark.usefixtures("shared_export_standin")  # the shared run's backbone (test_export)

TEMPLATE = Path(__file__).resolve().parents[2] / "tlcore" / "export" / "templates" / "predict_tflite.py"
TFLITE_FILES = [default_filename(f) for f in TFLITE_FORMATS]
VERIFIED_FILES = [*TFLITE_FILES, "model.onnx"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture(scope="module")
def result(shared):
    return copy.deepcopy(shared.result)


@pytest.fixture(scope="module")
def bundle(shared, result):
    """Today before and after making it (the card is dated), and the open ZIP."""
    before = time.strftime("%Y-%m-%d")
    data = bundle_bytes(result, shared.run)
    after = time.strftime("%Y-%m-%d")
    return zipfile.ZipFile(io.BytesIO(data)), {before, after}


def card_lines(bundle):
    return bundle[0].read("MODEL_CARD.md").decode("utf-8").splitlines()


def test_bundle_holds_the_tflite_and_onnx_files_and_their_companions(bundle):
    z, _ = bundle
    assert z.testzip() is None
    assert sorted(z.namelist()) == sorted([*VERIFIED_FILES, "labels.txt", "MODEL_CARD.md", "predict_tflite.py",
                                           "predict_onnx.py", "export.json"])
    # Flat: no folders, and no .keras or SavedModel (a LiteRT and ONNX Runtime bundle).
    assert all("/" not in name for name in z.namelist())


def test_bundle_files_are_the_exported_bytes(shared, bundle):
    z, _ = bundle
    for name in VERIFIED_FILES:
        assert z.read(name) == (shared.out / name).read_bytes(), name
    assert z.read("labels.txt").decode("utf-8") == "red\ngreen\nblue\n"
    assert z.read("predict_tflite.py") == TEMPLATE.read_bytes() == EXAMPLE_SCRIPT.read_bytes()
    assert z.read("predict_onnx.py") == TEMPLATE.with_name("predict_onnx.py").read_bytes() == \
        ONNX_EXAMPLE_SCRIPT.read_bytes()


def test_bundle_export_json_is_the_result(result, bundle):
    z, _ = bundle
    assert json.loads(z.read("export.json")) == json.loads(json.dumps(result))


def test_model_card_describes_the_run(bundle):
    lines = card_lines(bundle)
    assert lines[0] == "# Model card"
    (date,) = [line for line in lines if line.startswith("- Date: ")]
    assert date.removeprefix("- Date: ") in bundle[1]
    (backbone,) = [line for line in lines if line.startswith("- Backbone: ")]
    assert backbone == f"- Backbone: efficientnet_lite0 (weights: random initialisation), input {SIZE}x{SIZE} RGB"
    assert "- Training: head 3 epochs at lr 0.001, backbone frozen (feature extraction)" in lines
    assert "- Validation accuracy: 50.0%; test accuracy: 50.0%" in lines


def test_model_card_counts_images_per_class_and_split(bundle):
    lines = card_lines(bundle)
    header = lines.index("| class | train | val | test |")
    assert lines[header + 2: header + 2 + len(CLASSES)] == [f"| {c} | 3 | 1 | 2 |" for c in CLASSES]


def test_model_card_verification_table(result, bundle):
    lines = card_lines(bundle)
    assert (f"Checked against the Keras model on {N_HELD_OUT} held-out images (run test split); "
            "latency is one image on the exporting machine's CPU.") in lines
    assert "| file | quantization | size (MB) | Keras accuracy | exported accuracy | agreement | latency (ms) |" in lines
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines if line.startswith("| model")}
    assert sorted(rows) == sorted(VERIFIED_FILES)
    for e in result["exports"]:
        name = Path(e["path"]).name
        if e["format"] not in BUNDLED_FORMATS:
            assert name not in "\n".join(lines)
            continue
        v = e["verification"]
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert cells[0] == name
        assert cells[2] == f"{e['size_bytes'] / 1e6:.2f}"
        assert cells[3:6] == [f"{v['keras_accuracy']:.1%}", f"{v['exported_accuracy']:.1%}", f"{v['agreement']:.1%}"]
        assert cells[6] == f"{v['latency_ms']:.1f}"
    assert "none (float32 weights and activations)" in rows["model_float32.tflite"]
    assert f"calibrated on {CALIBRATION} training images" in rows["model_int8.tflite"]
    assert "uint8" not in rows["model_int8.tflite"]
    assert "ONNX opset 17, any batch size" in rows["model.onnx"]


def test_model_card_lists_the_warnings_and_usage(result, bundle):
    text = "\n".join(card_lines(bundle))
    assert "## Warnings" in text
    for w in result["warnings"]:
        assert f"- {w['message']}" in text
    assert "python predict_tflite.py model_float32.tflite photo.jpg" in text
    assert "pip install ai-edge-litert pillow numpy" in text
    assert "python predict_onnx.py model.onnx photo.jpg" in text
    assert "pip install onnxruntime pillow numpy" in text


def test_model_card_with_a_date_and_a_uint8_model(shared):
    card = model_card(shared.uint8io, shared.run, date="2031-02-03")
    assert "- Date: 2031-02-03" in card.splitlines()
    (row,) = [line for line in card.splitlines() if line.startswith("| model_int8_uint8io.tflite |")]
    assert "uint8 input and output" in row


def test_model_card_without_verification_or_samples(shared, result, tmp_path):
    import shutil

    run = Path(shutil.copytree(shared.run, tmp_path / "run"))
    (run / "samples.json").unlink()
    unchecked = copy.deepcopy(result)
    unchecked["verification_data"], unchecked["warnings"] = None, []
    for e in unchecked["exports"]:
        e.pop("verification", None)
    lines = model_card(unchecked, run, date="2031-02-03").splitlines()
    assert [f"| {c} | 0 | 0 | 0 |" for c in CLASSES] == [line for line in lines if line.startswith(tuple(
        f"| {c} |" for c in CLASSES))]
    assert "Checked against the Keras model on 0 held-out images (none); latency is one image on the " \
           "exporting machine's CPU." in lines
    (row,) = [line for line in lines if line.startswith("| model_float32.tflite |")]
    assert row.endswith("| – | – | – | – |")
    assert "## Warnings" not in lines


def test_write_bundle_is_atomic(shared, result, tmp_path):
    out = tmp_path / "new" / "model.zip"
    assert write_bundle(result, shared.run, out) == out
    with zipfile.ZipFile(out) as z:
        assert "MODEL_CARD.md" in z.namelist()
    out.write_bytes(b"an old bundle")
    write_bundle(result, shared.run, out)
    assert zipfile.is_zipfile(out)
    assert [p.name for p in out.parent.iterdir()] == ["model.zip"]  # no temporary file left


def test_bundle_of_one_kind_holds_its_script_only(shared, result):
    for kept, script, other in ((TFLITE_FORMATS, "predict_tflite.py", "predict_onnx.py"),
                                (["onnx"], "predict_onnx.py", "predict_tflite.py")):
        one = {**result, "exports": [e for e in result["exports"] if e["format"] in kept]}
        z = zipfile.ZipFile(io.BytesIO(bundle_bytes(one, shared.run)))
        assert script in z.namelist() and other not in z.namelist()
        card = z.read("MODEL_CARD.md").decode("utf-8")
        assert f"python {script}" in card and f"python {other}" not in card


def test_bundle_needs_a_tflite_or_onnx_export(shared, result, tmp_path):
    keras_only = {**result, "exports": [e for e in result["exports"] if e["format"] not in BUNDLED_FORMATS]}
    assert [e["format"] for e in keras_only["exports"]] == ["keras", "saved-model"]
    with pytest.raises(TLError, match="at least one TFLite or ONNX export"):
        bundle_bytes(keras_only, shared.run)
    with pytest.raises(TLError, match="at least one TFLite or ONNX export"):
        write_bundle({**result, "exports": []}, shared.run, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()


def test_bundle_of_a_file_that_is_gone(shared, result, tmp_path):
    gone = copy.deepcopy(result)
    gone["exports"][0]["path"] = str(tmp_path / "model_float32.tflite")
    with pytest.raises(TLError, match="is gone") as info:
        write_bundle(gone, shared.run, tmp_path / "b.zip")
    assert str(tmp_path / "model_float32.tflite") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_model_card_of_an_export_from_before_onnx(shared, result):
    """An export job's result written before ONNX existed names the exported file's accuracy `tflite_accuracy`."""
    old = copy.deepcopy(result)
    old["exports"] = [e for e in old["exports"] if e["format"] != "onnx"]
    for e in old["exports"]:
        (e.get("verification") or {}).pop("exported_accuracy", None)
    v = old["exports"][0]["verification"]
    (row,) = [line for line in model_card(old, shared.run).splitlines() if line.startswith("| model_float32.tflite |")]
    assert f"| {v['tflite_accuracy']:.1%} | {v['agreement']:.1%} |" in row
