"""Images per second of a backbone's forward pass on this machine, remembered on disk."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..io.paths import default_cache_dir
from .registry import create_backbone, get_spec

__all__ = ["measure_speed", "measured_speeds"]


def _speeds_file() -> Path:
    return default_cache_dir() / "speeds.json"


def measured_speeds() -> dict[str, float]:
    """Images/s measured earlier on this machine, by backbone name."""
    try:
        return json.loads(_speeds_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def measure_speed(name: str, images: int = 32, batch_size: int = 16) -> float:
    """Time the backbone's forward pass (random weights: speed does not depend on them) and remember it."""
    spec = get_spec(name)
    model = create_backbone(name, weights=None)
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, spec.input_size, spec.input_size, 3)).astype(np.float32)
    model.predict_on_batch(x)  # warm-up: graph tracing is not inference time
    start = time.perf_counter()
    done = 0
    while done < images:
        model.predict_on_batch(x)
        done += batch_size
    rate = done / (time.perf_counter() - start)
    speeds = {**measured_speeds(), name: round(rate, 1)}
    path = _speeds_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(speeds), encoding="utf-8")
    os.replace(tmp, path)
    return rate
