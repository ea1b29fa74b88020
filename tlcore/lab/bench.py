"""Performance figures on the user's own photos, all from one run on the same images.

``python -m tlcore bench DATA --json`` (and ``make bench``) measure:

- ``time_to_first_model_seconds``: ``python -m tlcore train DATA`` end to end, in a fresh
  process with a cold embedding cache (Python and TensorFlow start-up included);
- ``extract_images_per_s``: files on disk to cached embeddings with the default backbone, in
  a second training run whose embedding cache was emptied (one-off set-up such as
  converting the backbone for the fast engine is in the first run's time, not in this rate);
- ``baseline_keras_predict_images_per_s``: what a tutorial would write: Pillow decodes and
  resizes one file at a time, then ``Model.predict`` with batch 32, same backbone;
- ``head_train_seconds``: 50 epochs of the head on 2,000 embeddings (the photos' own,
  resampled with a little noise when there are fewer);
- ``tflite_float32_latency_ms`` and ``tflite_int8_latency_ms``: one image, median, from the
  trained model's exports;
- ``peak_rss_mb``: the training process's peak resident memory.

Every stage runs at the backbone's own input size, or at ``--input-size`` (what a smaller input costs and gains).

Benchmarks, not tests: nothing here asserts a timing.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.errors import TLError

__all__ = ["run_bench", "baseline_keras_predict"]

Progress = Callable[[str, dict], None]


def _train_cold(data: str, out: Path, cache: Path, input_size: int | None) -> tuple[dict, float, float]:
    """The CLI's train command in a fresh process and cache: (its JSON, wall seconds, peak RSS in MB)."""
    env = {**os.environ, "TLCORE_CACHE_DIR": str(cache)}
    size = ["--input-size", str(input_size)] if input_size else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tlcore", "train", data, "--out", str(out), *size, "--json"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise TLError(f"the benchmark's training run failed: {lines[-1] if lines else proc.returncode}")
    peak_kb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, peak_kb / 1024


def baseline_keras_predict(paths: list[str], size: int, model) -> tuple[np.ndarray, float]:
    """The plain pipeline: decode and resize each file with Pillow, then ``predict`` in batches of 32.

    Returns (features, images per second); unreadable files are left out.
    """
    from PIL import Image

    start = time.perf_counter()
    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB").resize((size, size)), np.float32))
        except OSError:
            continue
    features = model.predict(np.stack(images), batch_size=32, verbose=0)
    return np.asarray(features), len(images) / (time.perf_counter() - start)


def _head_seconds(features: np.ndarray, labels: np.ndarray, n: int = 2000, epochs: int = 50, seed: int = 0) -> float:
    import keras

    from ..training.head_fit import HeadTrainer
    from ..models.classifier import build_head

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(features), n)
    x = features[pick] + rng.normal(0, 0.01, (n, features.shape[1])).astype(np.float32)
    y = labels[pick]
    keras.utils.set_random_seed(seed)
    head = build_head(x.shape[1], int(labels.max()) + 1)
    cut = int(n * 0.9)
    start = time.perf_counter()
    HeadTrainer(head, 1e-3, seed).fit(x[:cut], y[:cut], epochs=epochs, batch_size=32, validation_data=(x[cut:], y[cut:]))
    return time.perf_counter() - start


def run_bench(data: str | Path, on_progress: Progress | None = None, work_dir: str | Path | None = None,
              input_size: int | None = None) -> dict:
    """Measure every figure listed in this module's docstring on the photos in ``data``, with the default backbone
    at ``input_size`` pixels (None: its own size, as training uses it)."""
    from ..data.datasets import load_dataset
    from ..export.formats import ExportConfig, export_formats
    from ..backbones.registry import DEFAULT_BACKBONE, create_backbone, get_spec

    progress = on_progress or (lambda stage, logs: None)
    dataset = load_dataset(data)
    paths = [s.path for s in dataset.samples]
    labels = np.array([dataset.classes.index(s.label) for s in dataset.samples])
    spec = get_spec(DEFAULT_BACKBONE)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp = Path(tmp)
        progress("train", {"images": len(paths)})
        result, wall, peak_mb = _train_cold(str(data), tmp / "run", tmp / "cache", input_size)
        shutil.rmtree(tmp / "cache" / "features", ignore_errors=True)
        progress("extract", {"images": len(paths)})
        second, _, peak2_mb = _train_cold(str(data), tmp / "run2", tmp / "cache", input_size)
        computed, extract_s = second["features"]["computed"], second["seconds"]["extract"]
        peak_mb = max(peak_mb, peak2_mb)

        progress("baseline", {"images": len(paths)})
        size = input_size or spec.input_size
        backbone = create_backbone(spec.name, weights="imagenet", input_shape=(size, size, 3))
        features, baseline_rate = baseline_keras_predict(paths, size, backbone)

        progress("head", {"embeddings": 2000, "epochs": 50})
        head_s = _head_seconds(features, labels[:len(features)])

        progress("tflite", {"formats": ["tflite-float32", "tflite-int8"]})
        exported = export_formats(tmp / "run", ["tflite-float32", "tflite-int8"], tmp / "exports",
                                  ExportConfig(calibration_samples=min(200, result["n_train"])))
        latency = {e["format"]: e["verification"]["latency_ms"] for e in exported["exports"]}
        size_mb = {e["format"]: e["size_bytes"] / 1e6 for e in exported["exports"]}
    extract_rate = computed / extract_s if extract_s > 0 else None
    return {
        "images": len(paths),
        "backbone": spec.name,
        "input_size": input_size or spec.input_size,
        "extract_images_per_s": round(extract_rate, 1) if extract_rate else None,
        "baseline_keras_predict_images_per_s": round(baseline_rate, 1),
        "extract_speedup": round(extract_rate / baseline_rate, 2) if extract_rate else None,
        "head_train_seconds": round(head_s, 3),
        "tflite_float32_latency_ms": round(latency["tflite-float32"], 2),
        "tflite_int8_latency_ms": round(latency["tflite-int8"], 2),
        "int8_latency_ratio": round(latency["tflite-int8"] / latency["tflite-float32"], 2),
        "tflite_float32_mb": round(size_mb["tflite-float32"], 2),
        "tflite_int8_mb": round(size_mb["tflite-int8"], 2),
        "peak_rss_mb": round(peak_mb, 1),
        "time_to_first_model_seconds": round(wall, 1),
        "val_accuracy": result["val_accuracy"],
        "cpu_count": os.cpu_count(),
    }
