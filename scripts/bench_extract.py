"""Images per second of embedding extraction on the shared ants/bees photos: tutorial baseline vs tlcore.

Baseline, as a tutorial writes it: Pillow opens, converts and resizes one file
at a time, then Keras ``Model.predict`` runs in batches of 32. Ours:
:func:`tlcore.training.features.extract_features` with a cold feature cache and the
engine of :mod:`tlcore.training.engine` (decode in threads, overlapped with TFLite
inference). Both start with the backbone already available (the baseline's
Keras model built, our engine file converted) and both are timed from the
file paths to the feature matrix. Each is repeated and the median reported;
the first-ever run, which also converts the backbone, is timed once.

Usage: ``python scripts/bench_extract.py [--repeats 3] [--backbone efficientnet_lite0]``;
the last line printed is the JSON of all numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def baseline(files: list[str], model, size: int) -> float:
    """Seconds for the tutorial pipeline: serial Pillow decode + resize, then ``Model.predict``."""
    import numpy as np
    from PIL import Image

    start = time.perf_counter()
    images = []
    for path in files:
        with Image.open(path) as img:
            images.append(np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.float32))
    model.predict(np.stack(images), batch_size=32, verbose=0)
    return time.perf_counter() - start


def ours(files: list[str], backbone: str, size: int, get_backbone) -> float:
    """Seconds for :func:`extract_features` on a cold feature cache (engine file already converted)."""
    from tlcore.training.engine import fast_encoder
    from tlcore.training.features import FeatureCache, extract_features

    key = f"{backbone}|imagenet"
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        start = time.perf_counter()
        result = extract_features(files, key, lambda: fast_encoder(get_backbone, key, size), size,
                                  FeatureCache(tmp))
        seconds = time.perf_counter() - start
    if result.computed != len(files):
        sys.exit(f"expected {len(files)} embedded images, got {result.computed} ({result.skipped[:3]})")
    return seconds


def parts(files: list[str], backbone: str, size: int, get_backbone) -> tuple[float, float]:
    """Images/s of decoding alone (tlcore's threads) and of the engine alone (on decoded images)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from tlcore.training.engine import fast_encoder
    from tlcore.training.features import _decode_workers
    from tlcore.data.images import load_image

    start = time.perf_counter()
    with ThreadPoolExecutor(_decode_workers()) as pool:
        images = np.stack(list(pool.map(lambda p: load_image(p, size), files)))
    decode_rate = len(files) / (time.perf_counter() - start)
    encoder = fast_encoder(get_backbone, f"{backbone}|imagenet", size)
    encoder(images[:4])
    start = time.perf_counter()
    for s in range(0, len(images), 32):
        encoder(images[s:s + 32])
    return decode_rate, len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: the shared photos are not at {DATA} (see ../shared/datasets/README.md)")
        return
    files = sorted(str(p) for p in DATA.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # Our own engine cache, so "first run" really converts and the user's cache is untouched.
    os.environ["TLCORE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-extract-cache-")

    from tlcore.training.engine import engine_path
    from tlcore.backbones.registry import create_backbone, get_spec

    size = get_spec(args.backbone).input_size
    model = create_backbone(args.backbone, weights="imagenet")
    model.predict(__import__("numpy").zeros((32, size, size, 3), "float32"), verbose=0)  # tracing is not inference
    n = len(files)

    first = ours(files, args.backbone, size, lambda: model)  # converts the backbone, then extracts
    if not engine_path(f"{args.backbone}|imagenet", size).is_file():
        print("warning: the backbone was not converted; tlcore fell back to Keras (see the log)")
    base_rates, our_rates = [], []
    for _ in range(args.repeats):  # interleaved, so background load hits both alike
        base_rates.append(n / baseline(files, model, size))
        our_rates.append(n / ours(files, args.backbone, size, lambda: model))
        print(f"baseline {base_rates[-1]:.1f} images/s, extract {our_rates[-1]:.1f} images/s", flush=True)
    decode_rate, engine_rate = parts(files, args.backbone, size, lambda: model)
    numbers = {
        "images": n,
        "cpu_count": os.cpu_count(),
        "baseline_keras_predict_images_per_s": round(statistics.median(base_rates), 1),
        "extract_images_per_s": round(statistics.median(our_rates), 1),
        "extract_first_run_images_per_s": round(n / first, 1),
        "decode_only_images_per_s": round(decode_rate, 1),
        "engine_only_images_per_s": round(engine_rate, 1),
    }
    numbers["speedup"] = round(numbers["extract_images_per_s"] / numbers["baseline_keras_predict_images_per_s"], 2)
    for name, value in numbers.items():
        print(f"{name}: {value}")
    print(json.dumps(numbers))


if __name__ == "__main__":
    main()
