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
- ``peak_rss_mb``: the training process's peak resident memory;
- the parts of extraction, each alone, on the same photos at the same size (at most
  :data:`PART_PHOTOS` of them, decoded once and kept in memory; each the best of :data:`PART_REPEATS`
  passes, so a busy moment lowers no part): ``decode_images_per_s`` (files to uint8 arrays as the
  extractor does it: read, SHA-256, decode and resize) on one core and on all ``cpu_count`` cores (a
  thread per core), and ``engine_images_per_s``, the backbone engine the extraction used (file from
  the first run) on pre-decoded arrays, with one thread and with all cores' threads, for float32 and,
  when made, INT8;
- ``limit_images_per_s``: the most any extractor could do on these cores, ``c / (1/d + 1/e)`` with
  ``c`` cores, ``d`` the one-core decoding rate and ``e`` the one-thread rate of the engine the
  extraction used. Every photo costs ``1/d + 1/e`` core-seconds whatever the split between decoding and
  inference, and more threads never make a core do more work per second (the all-core rates measured
  are at most ``c`` times the one-core ones), so ``c`` cores finish at most ``c / (1/d + 1/e)`` photos
  a second: an upper bound, reached only if decoding and inference share the cores with no loss. Not
  the engine's all-core rate alone: decoding is not free, it runs on the same cores;
- ``extract_fraction_of_limit``: ``extract_images_per_s / limit_images_per_s`` (target at least 0.85);
- ``cpu``: the model name, the flags that decide the engines' speed (``avx2``, ``avx512f``,
  ``avx512_vnni``, ``avx_vnni``, ``amx_int8``, ARM's ``asimddp``) and whether it has int8 dot
  products; ``extraction``: the INT8 choice the first run's check made, as the second run reports it
  (engine, reason, the float32 and INT8 heads' validation accuracies, see :mod:`tlcore.training.int8_choice`;
  the second run starts once that check is over) and ``extract_engine``, the engine of the second run, the
  one ``extract_images_per_s`` measures.

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

__all__ = ["run_bench", "baseline_keras_predict", "PART_PHOTOS", "PART_REPEATS", "extraction_limit",
           "measure_parts"]

# Photos the parts are measured on (decoded arrays are kept in memory: 500 at 224 px are 75 MB).
PART_PHOTOS = 500
PART_REPEATS = 3

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


def extraction_limit(cores: int, decode_per_core: float, engine_per_core: float) -> float:
    """Images/s at most on ``cores`` cores when each photo costs ``1/decode_per_core + 1/engine_per_core``
    core-seconds (see the module's docstring)."""
    return cores / (1 / decode_per_core + 1 / engine_per_core)


def _best_rate(run: Callable[[], int], repeats: int = PART_REPEATS) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - start))
    return max(rates)


def _decode(path: str, size: int) -> np.ndarray:
    import hashlib

    from ..data.images import decode_image

    data = Path(path).read_bytes()
    hashlib.sha256(data).hexdigest()  # the extractor hashes each file it decodes (its cache key)
    return decode_image(data, size)


def measure_parts(paths: list[str], size: int, engines: dict[str, Path], cores: int,
                  repeats: int = PART_REPEATS) -> dict:
    """Decoding alone (one core, ``cores`` threads) and each engine file of ``engines`` (name -> file) alone on
    the decoded photos (one thread, ``cores`` threads), in images/s; unreadable photos are left out."""
    from concurrent.futures import ThreadPoolExecutor

    from ..data.images import ImageDecodeError
    from ..training.engine import TFLiteEncoder

    def decodable(path):
        try:
            return _decode(path, size)
        except (OSError, ImageDecodeError):
            return None

    pairs = [(p, im) for p, im in ((p, decodable(p)) for p in paths) if im is not None]
    if not pairs:
        raise TLError("the benchmark found no decodable photo to measure decoding and the engine on")
    good = [p for p, _ in pairs]
    batch = np.stack([im for _, im in pairs])
    del pairs

    def decode_all(pool=None) -> int:
        return len(list(pool.map(lambda p: _decode(p, size), good) if pool else (_decode(p, size) for p in good)))

    parts = {"decode_images_per_s": {"one_core": _best_rate(decode_all, repeats)}}
    with ThreadPoolExecutor(cores) as pool:
        parts["decode_images_per_s"]["all_cores"] = _best_rate(lambda: decode_all(pool), repeats)
    parts["engine_images_per_s"] = {}
    for name, file in engines.items():
        rates = {}
        for label, threads in (("one_thread", 1), ("all_cores", cores)):
            encoder = TFLiteEncoder(file, threads)
            encoder(batch[:2])  # warm-up: XNNPACK packs its weights on the first invoke
            rates[label] = _best_rate(lambda: len(encoder(batch)), repeats)
        parts["engine_images_per_s"][name] = rates
    return parts


def _rounded(tree):
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 1) for k, v in tree.items()}


def run_bench(data: str | Path, on_progress: Progress | None = None, work_dir: str | Path | None = None,
              input_size: int | None = None) -> dict:
    """Measure every figure listed in this module's docstring on the photos in ``data``, with the default backbone
    at ``input_size`` pixels (None: its own size, as training uses it)."""
    from ..data.datasets import load_dataset
    from ..export.formats import ExportConfig, export_formats
    from ..backbones.registry import DEFAULT_BACKBONE, create_backbone, get_spec

    from ..io.cpus import REPORTED_FLAGS, cpu_flags, cpu_model, int8_dot_product, usable_cpus
    from ..training.engine import engine_path, int8_engine_path
    from ..training.frozen import weights_key
    from ..training.int8_choice import request_path

    progress = on_progress or (lambda stage, logs: None)
    cores = usable_cpus()
    dataset = load_dataset(data)
    paths = [s.path for s in dataset.samples]
    labels = np.array([dataset.classes.index(s.label) for s in dataset.samples])
    spec = get_spec(DEFAULT_BACKBONE)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp = Path(tmp)
        progress("train", {"images": len(paths)})
        result, wall, peak_mb = _train_cold(str(data), tmp / "run", tmp / "cache", input_size)
        size = input_size or spec.input_size
        key = weights_key(spec.name, "imagenet", None if size == spec.input_size else size)
        # A first run on an int8 CPU leaves the INT8 check to a process of its own; the second run is measured
        # once it is over (with the engine it chose), and the features it reads are not deleted under it.
        request = tmp / "cache" / "engines" / request_path(int8_engine_path(key, size)).name
        deadline = time.time() + 900
        while request.exists() and time.time() < deadline:
            time.sleep(0.5)
        shutil.rmtree(tmp / "cache" / "features", ignore_errors=True)
        progress("extract", {"images": len(paths)})
        second, _, peak2_mb = _train_cold(str(data), tmp / "run2", tmp / "cache", input_size)
        computed, extract_s = second["features"]["computed"], second["seconds"]["extract"]
        peak_mb = max(peak_mb, peak2_mb)

        progress("parts", {"images": min(len(paths), PART_PHOTOS)})
        # The engine files the training runs made in the bench's own cache.
        files = {"float32": tmp / "cache" / "engines" / engine_path(key, size).name,
                 "int8": tmp / "cache" / "engines" / int8_engine_path(key, size).name}
        parts = measure_parts(paths[:PART_PHOTOS], size, {k: f for k, f in files.items() if f.is_file()}, cores)

        progress("baseline", {"images": len(paths)})
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
    used = second.get("extraction", {}).get("engine", "float32")
    engine_rates = parts["engine_images_per_s"].get(used)
    limit = (extraction_limit(cores, parts["decode_images_per_s"]["one_core"], engine_rates["one_thread"])
             if engine_rates else None)
    flags = cpu_flags()
    return {
        "images": len(paths),
        "backbone": spec.name,
        "input_size": input_size or spec.input_size,
        "extract_images_per_s": round(extract_rate, 1) if extract_rate else None,
        "baseline_keras_predict_images_per_s": round(baseline_rate, 1),
        "extract_speedup": round(extract_rate / baseline_rate, 2) if extract_rate else None,
        "extract_engine": used,
        "limit_images_per_s": round(limit, 1) if limit else None,
        "extract_fraction_of_limit": round(extract_rate / limit, 3) if limit and extract_rate else None,
        **_rounded(parts),
        "extraction": second.get("extraction"),  # the choice the first run's INT8 check made
        "cpu": {"model": cpu_model(), "flags": {f: f in flags for f in REPORTED_FLAGS},
                "int8_dot_product": int8_dot_product(flags)},
        "head_train_seconds": round(head_s, 3),
        "tflite_float32_latency_ms": round(latency["tflite-float32"], 2),
        "tflite_int8_latency_ms": round(latency["tflite-int8"], 2),
        "int8_latency_ratio": round(latency["tflite-int8"] / latency["tflite-float32"], 2),
        "tflite_float32_mb": round(size_mb["tflite-float32"], 2),
        "tflite_int8_mb": round(size_mb["tflite-int8"], 2),
        "peak_rss_mb": round(peak_mb, 1),
        "time_to_first_model_seconds": round(wall, 1),
        "val_accuracy": result["val_accuracy"],
        "cpu_count": cores,
    }
