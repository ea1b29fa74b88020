"""The export contract, from the outside: an exported model run by the documented script alone.

The README's examples (the python blocks after ``<!-- example:predict_tflite -->`` and
``<!-- example:predict_onnx -->``) are the scripts the bundle ships (tlcore/export/templates/). They are
run here in a separate, isolated Python (``-I``: no PYTHONPATH, no user site, not started from the
repository) where tlcore, TensorFlow and Keras cannot be imported, on an exported model (LiteRT's and
ONNX Runtime's) and generated photos, and must give the labels and probabilities tlcore gives for the
same images.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASS_COLOURS
from tests.core.test_export import CLASSES, SIZE, shared_exports
from tlcore.export.formats import TFLITE_FORMATS, default_filename

pytestmark = pytest.mark.usefixtures("shared_export_standin")  # the shared run's backbone (test_export)

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
TEMPLATE = REPO_ROOT / "tlcore" / "export" / "templates" / "predict_tflite.py"
ONNX_TEMPLATE = TEMPLATE.with_name("predict_onnx.py")

# Run the script with tlcore, TensorFlow and Keras made unimportable: it needs LiteRT, Pillow, NumPy only.
BLOCKING_RUNNER = ("import runpy, sys\n"
                   "for name in ('tlcore', 'tensorflow', 'keras'):\n"
                   "    sys.modules[name] = None\n"
                   "sys.argv = sys.argv[1:]\n"
                   "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def readme_example(name: str = "predict_tflite") -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(f"<!-- example:{name} -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no python block after <!-- example:{name} -->"
    return match.group(1)


def isolated_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TLCORE"))}


def run_script(folder: Path, model: str, images: list[str], blocking=False,
               script="predict_tflite.py") -> subprocess.CompletedProcess:
    argv = [sys.executable, "-I"] + (["-c", BLOCKING_RUNNER] if blocking else []) + [script, model, *images]
    return subprocess.run(argv, cwd=folder, env=isolated_env(), capture_output=True, text=True, timeout=120)


def parse(stdout: str) -> list[tuple[str, str, float]]:
    rows = []
    for line in stdout.splitlines():
        path, label, prob = line.split("\t")
        rows.append((path, label, float(prob)))
    return rows


def photos(folder: Path) -> list[str]:
    """Photos in the ways they arrive: several sizes and shapes, PNG and JPEG, grey, palette, rotated, large, transparent."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)

    def noisy(colour, h, w):
        return np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)

    names = []
    for i, (name, (h, w)) in enumerate(zip(CLASS_COLOURS, [(48, 48), (60, 100), (SIZE, SIZE)])):
        Image.fromarray(noisy(CLASS_COLOURS[name], h, w)).save(folder / f"{name}_{i}.png")
        names.append(f"{name}_{i}.png")
    mixed = np.concatenate([noisy(CLASS_COLOURS["red"], 40, 20), noisy(CLASS_COLOURS["blue"], 40, 20)], axis=1)
    Image.fromarray(mixed).save(folder / "mixed.png")
    Image.fromarray(noisy((128, 128, 128), 50, 30)[..., 0]).save(folder / "grey.png")  # mode L
    Image.fromarray(noisy(CLASS_COLOURS["green"], 36, 36)).convert("P", palette=Image.ADAPTIVE).save(
        folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    Image.fromarray(np.concatenate([noisy(CLASS_COLOURS["red"], 30, 70), noisy(CLASS_COLOURS["green"], 30, 70)])).save(
        folder / "rotated.jpg", quality=95, exif=exif)
    # A photo-sized JPEG (decoded at reduced scale by both) and a half-transparent PNG (blended on white by both).
    Image.fromarray(noisy(CLASS_COLOURS["blue"], 600, 800)).save(folder / "large.jpg", quality=90)
    rgba = np.concatenate([noisy(CLASS_COLOURS["red"], 40, 40), rng.integers(0, 256, (40, 40, 1), dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(folder / "transparent.png")
    return names + ["mixed.png", "grey.png", "palette.png", "rotated.jpg", "large.jpg", "transparent.png"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture(scope="module")
def client(shared, tmp_path_factory):
    """A folder like an unpacked bundle: the README's scripts, the TFLite and ONNX files, labels.txt, photos."""
    folder = tmp_path_factory.mktemp("client")
    (folder / "predict_tflite.py").write_text(readme_example(), encoding="utf-8")
    (folder / "predict_onnx.py").write_text(readme_example("predict_onnx"), encoding="utf-8")
    for fmt in (*TFLITE_FORMATS, "onnx"):
        shutil.copy(shared.out / default_filename(fmt), folder)
    shutil.copy(shared.out / "labels.txt", folder)
    return folder, photos(folder)


@pytest.fixture(scope="module")
def documented(client):
    """The script's output on the float32 model: ``[(path, label, probability)]``."""
    folder, images = client
    proc = run_script(folder, "model_float32.tflite", images)
    assert proc.returncode == 0, proc.stderr
    return proc, parse(proc.stdout)


@pytest.mark.parametrize("template", [TEMPLATE, ONNX_TEMPLATE], ids=["litert", "onnx"])
def test_readme_example_is_the_shipped_script(template):
    assert readme_example(template.stem) == template.read_text(encoding="utf-8")


@pytest.mark.parametrize("template, runtime", [(TEMPLATE, "ai_edge_litert"), (ONNX_TEMPLATE, "onnxruntime")],
                         ids=["litert", "onnx"])
def test_script_needs_no_tlcore(template, runtime):
    source = template.read_text(encoding="utf-8")
    assert "tlcore" not in source
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module.split(".")[0])
    # pip install ai-edge-litert pillow numpy (or onnxruntime pillow numpy)
    assert modules == {"sys", "pathlib", "numpy", runtime, "PIL"}


def test_the_isolated_python_cannot_import_tlcore(client):
    folder, _ = client
    proc = subprocess.run([sys.executable, "-I", "-c", "import tlcore"], cwd=folder, env=isolated_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "No module named 'tlcore'" in proc.stderr


def test_documented_script_predicts_what_tlcore_predicts(shared, client, documented):
    from tlcore.models.run import load_run

    folder, images = client
    proc, rows = documented
    assert [path for path, _, _ in rows] == images  # one line per image, in order
    paths = [str(folder / name) for name in images]
    probs, kept, skipped = load_run(shared.run).predict_files(paths)
    assert kept == list(range(len(images))) and skipped == []
    for (path, label, prob), expected in zip(rows, probs):
        assert label in CLASSES
        assert label == CLASSES[int(expected.argmax())], path
        assert prob == pytest.approx(float(expected.max()), abs=5e-4), path  # float32 rounding, 4 decimals
    # Teeth: the images give different outputs (a constant model would pass the above too).
    assert len({prob for _, _, prob in rows}) > 3
    assert np.ptp(probs, axis=0).max() > 0.05


@pytest.mark.parametrize("fmt", TFLITE_FORMATS)
def test_every_tflite_file_runs_with_the_script_as_tlcore_runs_it(client, fmt):
    """Same interpreter, same pixels: the script and TFLiteModel agree to the printed digit."""
    from tlcore.models.tflite_model import TFLiteModel

    folder, images = client
    proc = run_script(folder, default_filename(fmt), images)
    assert proc.returncode == 0, proc.stderr
    rows = parse(proc.stdout)
    probs, kept, _ = TFLiteModel(folder / default_filename(fmt)).predict_files([str(folder / n) for n in images])
    assert kept == list(range(len(images)))
    assert [label for _, label, _ in rows] == [CLASSES[int(i)] for i in probs.argmax(axis=1)]
    np.testing.assert_allclose([prob for _, _, prob in rows], probs.max(axis=1), atol=5e-5 + 1e-6)


def test_onnx_script_predicts_what_tlcore_predicts_without_tensorflow(shared, client):
    """The ONNX Runtime script, with tlcore, TensorFlow and Keras unimportable, on every kind of photo: the labels
    and probabilities of the Keras model."""
    from tlcore.models.run import load_run

    folder, images = client
    proc = run_script(folder, default_filename("onnx"), images, blocking=True, script="predict_onnx.py")
    assert proc.returncode == 0, proc.stderr
    rows = parse(proc.stdout)
    assert [path for path, _, _ in rows] == images
    probs, kept, _ = load_run(shared.run).predict_files([str(folder / name) for name in images])
    assert kept == list(range(len(images)))
    assert [label for _, label, _ in rows] == [CLASSES[int(i)] for i in probs.argmax(axis=1)]
    np.testing.assert_allclose([prob for _, _, prob in rows], probs.max(axis=1), atol=5e-4)  # 4 decimals printed


def test_script_runs_without_tensorflow_keras_or_tlcore(client, documented):
    folder, images = client
    proc = run_script(folder, "model_float32.tflite", images, blocking=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == documented[0].stdout


def test_the_blocking_runner_does_block(client):
    """The check above has teeth: a script importing tlcore fails under the same runner."""
    folder, _ = client
    (folder / "uses_tlcore.py").write_text("import tlcore\n")
    argv = [sys.executable, "-I", "-c", BLOCKING_RUNNER, "uses_tlcore.py"]
    proc = subprocess.run(argv, cwd=folder, env=isolated_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "tlcore" in proc.stderr
