"""ONNX and web exports of the real Lite0 graph (random weights, 64 px), from the command line, checked from outside.

One `export --format onnx,web --json` of a tiny run, made once for the module (tf2onnx takes about 4 s on Lite0's
graph here, once for both); the tests read the ONNX file with ONNX Runtime directly, as a client would, and compare
it with the Keras model. The export's own verification (ONNX Runtime on the held-out photos) is in its JSON. The
ONNX example script of the bundle is run here on this file, and on the shared export's in test_export_contract.py.
The web folder is served by `python -m http.server` and its page run in headless Chromium, offline.
"""
from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASS_COLOURS, SMALL_INPUT, write_image
from tests.core.test_cli import assert_user_error, last_json, read_progress, run_cli
from tests.core.test_events import assert_each_phase_announced, phase_story
from tests.core.test_export import CLASSES, N_HELD_OUT, SIZE, make_export_run
from tests.core.test_export_contract import ONNX_TEMPLATE, parse, run_script
from tests.ui.browser import browser_page, missing_browser_reason
from tlcore.data.images import load_image
from tlcore.export.web import RUNTIME_FILES, missing_runtime, runtime_version
from tlcore.io.errors import TLError
from tlcore.io.produced import record_produced

assert SIZE == SMALL_INPUT  # the run is made at the unit tests' small input

# ONNX Runtime and TensorFlow run the same float32 graph with different kernels (fused convolutions, another
# order of the sums): Lite0's 3.4 M multiply-adds per pixel row leave differences of a few 1e-6 in the
# probabilities (measured: at most 6e-6 on random pixels). 1e-4 leaves room for other CPUs' kernels and is
# still far below what a wrong preprocessing (pixels not 0..255, BGR, a missing normalisation) changes.
TOLERANCE = 1e-4
# Without ONNX Runtime Web (npm ci) the module exports ONNX alone and the web's tests skip, saying why.
WEB_MISSING = missing_runtime()
FORMATS = "onnx" if WEB_MISSING else "onnx,web"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random-weight Lite0 run at 64 px and its `export --format onnx,web --json` (one conversion for both),
    with its progress events and the Keras model's probabilities for three of the run's held-out photos."""
    from tlcore.models.run import load_run

    root = tmp_path_factory.mktemp("onnx-export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
        built = make_export_run(root)
        out = root / "out"
        events = root / "events.jsonl"
        # Several formats go into the folder --out; one format is written at --out itself.
        target = out / "model.onnx" if WEB_MISSING else out
        code, stdout, stderr = run_cli(["export", built.run, "--format", FORMATS, "--out", target, "--json",
                                        "--progress", events])
        run = load_run(built.run)
    images = np.stack([load_image(s["path"], SIZE) for s in built.held_out[:3]]).astype(np.float32)
    return SimpleNamespace(**vars(built), root=root, out=out, model=out / "model.onnx", web=out / "web",
                           events=events, code=code, stdout=stdout, stderr=stderr, keras=run, images=images,
                           keras_probs=run.predict_batch(images))


def exported_entry(exported, fmt: str) -> dict:
    (found,) = [e for e in last_json(exported.stdout)["exports"] if e["format"] == fmt]
    return found


def needs_web():
    if WEB_MISSING:
        pytest.skip(WEB_MISSING)


@pytest.fixture(scope="module")
def session(exported):
    import onnxruntime as ort

    assert exported.code == 0, exported.stderr
    return ort.InferenceSession(str(exported.model), providers=["CPUExecutionProvider"])


def test_onnx_export_json_has_the_contract_and_its_verification(exported):
    assert exported.code == 0, exported.stderr
    assert exported.stderr == ""  # --json is quiet: nothing from tf2onnx or ONNX Runtime either
    result = last_json(exported.stdout)
    assert [e["format"] for e in result["exports"]] == FORMATS.split(",")
    e = exported_entry(exported, "onnx")
    assert e["path"] == str(exported.model)
    assert e["size_bytes"] == exported.model.stat().st_size > 4 * 3_000_000  # Lite0's weights in float32
    # Any batch: the shape's first dimension is free (null in JSON).
    assert e["input"] == {"shape": [None, SIZE, SIZE, 3], "dtype": "float32", "pixels": "RGB 0..255"}
    v = e["verification"]
    assert v["n"] == N_HELD_OUT == result["verification_data"]["n"]
    assert v["exported_accuracy"] == v["keras_accuracy"]
    assert "tflite_accuracy" not in v  # TFLite's name stays TFLite's
    assert v["agreement"] == 1.0 and v["max_probability_difference"] < TOLERANCE
    assert v["latency_ms"] > 0 and set(v["per_class"]) <= set(CLASSES)
    assert all("exported_accuracy" in row for row in v["per_class"].values())
    assert result["warnings"] == []


def test_labels_txt_is_written_beside_the_file(exported):
    assert exported.code == 0, exported.stderr
    assert sorted(p.name for p in exported.out.iterdir()) == ["labels.txt", "model.onnx"] + (
        [] if WEB_MISSING else ["web"])
    assert (exported.out / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES


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
    formats = FORMATS.split(",")
    assert phase_story(events) == ["starting", "loading", "evaluating"] + ["converting", "verifying"] * len(formats)
    phases = [e for e in events if e["type"] == "phase"]
    assert [e.get("format") for e in phases if e["phase"] == "converting"] == formats
    for fmt in formats:
        verifying = [(e["done"], e["total"]) for e in phases if e["phase"] == "verifying" and e["format"] == fmt]
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
    (tmp_path / "notes.txt").write_text("mine")  # a folder of the user's: never replaced by a web export
    code, stdout, stderr = run_cli(["export", exported.run, "--format", "web", "--out", tmp_path, "--json"])
    assert_user_error(code, stdout, stderr, WEB_MISSING or "is a folder that is not a web export")
    assert (tmp_path / "notes.txt").read_text() == "mine"


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


# The web folder ---------------------------------------------------------------------------------------------

def test_the_web_folder_holds_the_page_the_model_its_labels_and_the_pinned_runtime(exported):
    needs_web()
    assert exported.code == 0, exported.stderr
    names = sorted(p.name for p in exported.web.iterdir())
    assert names == sorted(["index.html", "classify.js", "model.onnx", "labels.txt", *RUNTIME_FILES.values()])
    assert (exported.web / "model.onnx").read_bytes() == exported.model.read_bytes()  # one conversion, one model
    assert (exported.web / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES
    # The runtime is the version package.json pins (installed by npm ci), never a CDN's.
    pinned = json.loads((Path(__file__).resolve().parents[2] / "package.json").read_text())
    assert pinned["dependencies"]["onnxruntime-web"] == runtime_version()
    page = "\n".join((exported.web / name).read_text(encoding="utf-8") for name in ("index.html", "classify.js"))
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    e = exported_entry(exported, "web")
    assert e["path"] == str(exported.web)
    assert e["size_bytes"] == sum(p.stat().st_size for p in exported.web.iterdir())
    # Its model is verified like the ONNX file (the same bytes, in ONNX Runtime).
    assert e["verification"]["exported_accuracy"] == e["verification"]["keras_accuracy"]
    assert e["verification"]["agreement"] == 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(folder: Path):
    """`python -m http.server` in ``folder``, as the README says; yields its address."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/labels.txt", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("python -m http.server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


# A camera without a camera, and no prompt to allow it.
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")

# Decode and resize a photo with classify.js, the bytes handed over from Python (the photo is not in the folder).
_PIXELS_JS = """async ([data, type, size]) => {
  const m = await import("./classify.js");
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const rgba = await m.decodePhoto(new Blob([bytes], { type }), { width: size, height: size });
  const out = m.resizeBilinear(rgba, size, size).data;
  return Array.from(out).filter((_, i) => i % 4 !== 3);
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_the_web_page_classifies_photos_offline_in_chromium_as_keras_does(exported, tmp_path):
    """The issue's check: served by `python -m http.server`, the page classifies chosen photos in Chromium with
    every request kept on this machine, and gives the Keras model's top class and probability within 1e-3 (from
    the very pixels training reads); the camera's picture is classified too."""
    needs_web()
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    rng = np.random.default_rng(11)
    photos = [write_image(tmp_path / "green.png", CLASS_COLOURS["green"], 90, rng),  # shrunk both ways
              write_image(tmp_path / "blue.png", CLASS_COLOURS["blue"], 40, rng)]  # enlarged
    stacked = np.concatenate([np.asarray(load_image(photos[0])), np.asarray(load_image(photos[1], 90))[:50]])
    photos.append(tmp_path / "tall.png")
    Image.fromarray(stacked[:, :70]).save(photos[-1])  # 70 x 140: the columns first (Pillow 13), each by its factor
    photos.append(tmp_path / "narrow.png")
    Image.fromarray(stacked[:100, :SIZE]).save(photos[-1])  # 64 x 100: the columns only
    expected, kept, _ = exported.keras.predict_files([str(p) for p in photos])
    assert kept == list(range(len(photos)))
    outside, answers, pixels = [], [], []
    with http_server(exported.web) as base, browser_page(extra_flags=FAKE_CAMERA) as page:
        def local_only(route):
            if route.request.url.startswith(base + "/"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", local_only)
        page.goto(f"{base}/index.html")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert f"photos resized to {SIZE}x{SIZE}" in page.inner_text("#status")
        for photo in photos:
            page.evaluate("document.getElementById('answer').removeAttribute('data-label')")
            page.set_input_files("#photo", str(photo))
            answer = page.wait_for_selector("#answer[data-label]", timeout=60_000)
            answers.append((answer.get_attribute("data-label"), float(answer.get_attribute("data-probability")),
                            json.loads(answer.get_attribute("data-probabilities"))))
            data = base64.b64encode(photo.read_bytes()).decode("ascii")
            pixels.append(np.array(page.evaluate(_PIXELS_JS, [data, "image/png", SIZE]), np.uint8))
        # The camera (Chromium's fake one, a moving test pattern): its picture goes through the same classify().
        page.evaluate("document.getElementById('answer').removeAttribute('data-label')")
        page.click("#camera")
        page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=30_000)
        page.click("#shoot")
        camera = page.wait_for_selector("#answer[data-label]", timeout=60_000)
        assert camera.get_attribute("data-label") in CLASSES
        assert sum(json.loads(camera.get_attribute("data-probabilities"))) == pytest.approx(1, abs=1e-4)
    assert outside == []  # nothing fetched from elsewhere: the runtime is in the folder
    for photo, (label, probability, probabilities), shown, keras in zip(photos, answers, pixels, expected):
        # The same preprocessing: Pillow's resize, rewritten in JavaScript, gives the very pixels training reads.
        np.testing.assert_array_equal(shown.reshape(SIZE, SIZE, 3), load_image(photo, SIZE), err_msg=photo.name)
        assert label == CLASSES[int(keras.argmax())], photo.name
        assert abs(probability - float(keras.max())) < 1e-3, (photo.name, probability, keras)
        np.testing.assert_allclose(probabilities, keras, atol=1e-3, err_msg=photo.name)
    # Teeth: the photos give the model different answers, which the page follows.
    assert np.ptp(expected, axis=0).max() > 0.01
