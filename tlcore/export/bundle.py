"""A downloadable bundle: TFLite and ONNX models, ``labels.txt``, a model card and an example script for each."""
from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from pathlib import Path

from ..io.atomic import write_bytes_atomic
from ..io.errors import TLError
from .formats import BUNDLED_FORMATS, TFLITE_FORMATS
from .verify import exported_accuracy
from ..models.onnx_conversion import ONNX_OPSET
from ..models.run_files import corruptions_result, fine_tuned_layers, read_run_json

__all__ = ["EXAMPLE_SCRIPT", "ONNX_EXAMPLE_SCRIPT", "model_card", "bundle_bytes", "write_bundle"]

EXAMPLE_SCRIPT = Path(__file__).with_name("templates") / "predict_tflite.py"  # LiteRT
ONNX_EXAMPLE_SCRIPT = Path(__file__).with_name("templates") / "predict_onnx.py"  # ONNX Runtime

_QUANTIZATION = {
    "tflite-float32": "none (float32 weights and activations)",
    "tflite-float16": "float16 weights, float32 compute",
    "tflite-dynamic": "dynamic range: int8 weights, float activations",
    "tflite-int8": "full integer: int8 weights and activations, calibrated",
    "onnx": f"none (float32, ONNX opset {ONNX_OPSET}, any batch size)",
}


def _pct(v) -> str:
    return "–" if v is None else f"{v:.1%}"


def _ms(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def model_card(result: dict, run_dir: str | Path, date: str | None = None) -> str:
    """A Markdown model card for an :func:`~tlcore.export.formats.export_formats` result."""
    config = read_run_json(run_dir, "config.json")
    metrics = read_run_json(run_dir, "metrics.json")
    try:
        samples = read_run_json(run_dir, "samples.json")
    except TLError:
        samples = []
    counts = Counter((s["label"], s.get("split") or "train") for s in samples)
    classes = config.get("classes", [])
    train = config.get("train", {})
    tuned = fine_tuned_layers(run_dir)  # counted as every page counts them
    lines = [
        "# Model card",
        "",
        f"- Date: {date or time.strftime('%Y-%m-%d')}",
        f"- Backbone: {config.get('backbone')} (weights: {config.get('weights') or 'random initialisation'}), input {config.get('input_size')}"
        f"x{config.get('input_size')} RGB",
        f"- Training: head {train.get('epochs')} epochs at lr {train.get('lr')}"
        + (f", fine-tuned {len(tuned)} layers at lr {train.get('fine_tune_lr')}"
           if tuned else ", backbone frozen (feature extraction)"),
        f"- Validation accuracy: {_pct(metrics.get('val_accuracy'))}; test accuracy: {_pct(metrics.get('test_accuracy'))}",
        "",
        "## Data (images per class)",
        "",
        "| class | train | val | test |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {c} | {counts[(c, 'train')]} | {counts[(c, 'val')]} | {counts[(c, 'test')]} |" for c in classes]
    data = result.get("verification_data") or {}
    lines += ["", "## Exports and verification", "",
              f"Checked against the Keras model on {data.get('n', 0)} held-out images ({data.get('source', 'none')}); "
              f"latency is one image on the exporting machine's CPU.", "",
              "| file | quantization | size (MB) | Keras accuracy | exported accuracy | agreement | latency (ms) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for e in result["exports"]:
        if e["format"] not in BUNDLED_FORMATS:
            continue
        v = e.get("verification") or {}
        quant = _QUANTIZATION[e["format"]]
        if e["format"] == "tflite-int8":
            quant += f" on {e.get('calibration_samples')} training images"
            if e["input"]["dtype"] == "uint8":
                quant += "; uint8 input and output"
        lines.append(f"| {Path(e['path']).name} | {quant} | {e['size_bytes'] / 1e6:.2f} | {_pct(v.get('keras_accuracy'))} "
                     f"| {_pct(exported_accuracy(v))} | {_pct(v.get('agreement'))} | {_ms(v.get('latency_ms'))} |")
    lines += _corruptions_section(run_dir)
    if result.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w['message']}" for w in result["warnings"]]
    formats = {e["format"] for e in result["exports"]}
    lines += ["", "## How to use", "",
              "Input: float32 RGB pixel values 0..255, shape [1, H, W, 3] ([batch, H, W, 3] for the ONNX file: "
              "any batch size), resized with bilinear filtering; no normalisation (it is inside the model). "
              "Output: one probability per class, in the order of `labels.txt`. A `*_uint8io` file takes uint8 "
              "pixels and gives uint8 scores (use the tensors' scale and zero point).", ""]
    tflite = next((Path(e["path"]).name for e in result["exports"] if e["format"] in TFLITE_FORMATS), None)
    if tflite:
        lines += ["With LiteRT:", "",
                  "    pip install ai-edge-litert pillow numpy",
                  f"    python predict_tflite.py {tflite} photo.jpg", ""]
    if "onnx" in formats:
        onnx = next(Path(e["path"]).name for e in result["exports"] if e["format"] == "onnx")
        lines += ["With ONNX Runtime:", "",
                  "    pip install onnxruntime pillow numpy",
                  f"    python predict_onnx.py {onnx} photo.jpg", ""]
    return "\n".join(lines)



def _corruptions_section(run_dir) -> list[str]:
    """The accuracy under everyday corruptions, when the run was measured (``python -m tlcore corruptions``): one
    sentence and a table of the three severities; nothing when it was not."""
    found = corruptions_result(run_dir)
    if not found:
        return []
    table: dict[str, dict] = {}
    for r in found["results"]:
        if isinstance(r.get("corruption"), str) and r.get("severity") in (1, 2, 3):
            table.setdefault(r["corruption"], {})[r["severity"]] = r.get("accuracy")
    where = "photos given to the command" if found.get("source") == "folder" else \
        f"held-out ({found.get('source', '?')}) photos"
    lines = ["", "## Everyday corruptions", "",
             f"Accuracy on {found.get('n', '?')} {where}: {_pct(found.get('clean_accuracy'))} as taken, "
             f"{_pct(found.get('mean_accuracy'))} on average under blur, noise, brightness, contrast, JPEG, rotation "
             "and a crop shift at three severities (1 mild, 3 strong).", "",
             "| corruption | severity 1 | severity 2 | severity 3 |", "|---|---:|---:|---:|"]
    lines += [f"| {name.replace('_', ' ')} | " + " | ".join(_pct(row.get(s)) for s in (1, 2, 3)) + " |"
              for name, row in table.items()]
    return lines


def bundle_bytes(result: dict, run_dir: str | Path) -> bytes:
    """The ZIP bundle of an export result, in memory."""
    exports = [e for e in result["exports"] if e["format"] in BUNDLED_FORMATS]
    files = [Path(e["path"]) for e in exports]
    if not files:
        raise TLError("the bundle needs at least one TFLite or ONNX export")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise TLError(f"the exported file {missing[0]!r} is gone; export again")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.name)
        z.write(files[0].with_name("labels.txt"), "labels.txt")
        z.writestr("MODEL_CARD.md", model_card(result, run_dir))
        if any(e["format"] in TFLITE_FORMATS for e in exports):
            z.write(EXAMPLE_SCRIPT, "predict_tflite.py")
        if any(e["format"] == "onnx" for e in exports):
            z.write(ONNX_EXAMPLE_SCRIPT, "predict_onnx.py")
        z.writestr("export.json", json.dumps(result, indent=2))
    return buffer.getvalue()


def write_bundle(result: dict, run_dir: str | Path, out: str | Path) -> Path:
    """Write :func:`bundle_bytes` to ``out`` atomically."""
    return write_bytes_atomic(out, bundle_bytes(result, run_dir))
