"""Backbone leaderboard: every backbone usable here, scored on the user's own photos.

Each backbone whose ImageNet weights are available offline or already
downloaded embeds the photos (through the on-disk feature cache, so a
backbone already used for training costs nothing), a quick head is fitted
on 80% of them and scored on the other 20% (or on the data's own validation
split), and its accuracy is reported beside its size and its speed, so a
user chooses a backbone with evidence rather than from ImageNet figures.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from ..data.datasets import Dataset, assign_splits, load_dataset
from ..training.engine import keras_encoder
from ..io.errors import TLError
from ..jobs.events import LOADING, SCORING, PhaseCallback, no_phase
from ..training.features import FeatureCache, extract_features
from ..training.head_fit import HeadTrainer
from ..models.classifier import build_head
from ..backbones.registry import create_backbone, get_spec, list_backbones
from ..backbones.speed import measured_speeds

__all__ = ["KERAS_WEIGHT_FILES", "HEAD_EPOCHS", "HEAD_LR", "HELD_OUT", "keras_weights_dir", "weights_cached",
           "available_backbones", "leaderboard"]

log = logging.getLogger("tlcore")

# The file Keras downloads (include_top=False) for each Keras-application backbone of tlcore.backbones.keras_apps.
KERAS_WEIGHT_FILES = {
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "mobilenet_v3_small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "mobilenet_v3_large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "efficientnet_b0": "efficientnetb0_notop.h5",
    "efficientnet_b1": "efficientnetb1_notop.h5",
    "efficientnet_b2": "efficientnetb2_notop.h5",
    "efficientnet_b3": "efficientnetb3_notop.h5",
    "efficientnet_v2_b0": "efficientnetv2-b0_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50_v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "xception": "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "convnext_tiny": "convnext_tiny_notop.h5",
}

# The quick head: the Train page's head (dropout 0.2, Adam 1e-3, batches of 32) for a fixed number of epochs,
# on features scaled to unit RMS so one learning rate suits every backbone's feature scale.
HEAD_EPOCHS = 50
HEAD_LR = 1e-3
HEAD_DROPOUT = 0.2
HEAD_BATCH = 32
HELD_OUT = 0.2  # share of each class held out when the data has no validation split


def keras_weights_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models`` (``/tmp`` if home is read-only)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return Path(home) / "models"
    base = Path.home()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras" / "models"


def weights_cached(name: str) -> bool:
    """Whether backbone ``name``'s ImageNet weights file is already in the Keras download folder."""
    file = KERAS_WEIGHT_FILES.get(name)
    return bool(file) and (keras_weights_dir() / file).is_file()


def available_backbones() -> list[str]:
    """Backbones that can embed without network access: offline weights, or weights already downloaded."""
    return [name for name in list_backbones() if get_spec(name).offline or weights_cached(name)]


def _unavailable_reason(name: str) -> str:
    file = KERAS_WEIGHT_FILES.get(name)
    if file:
        return f"its ImageNet weights are not downloaded; place {file} in {keras_weights_dir()} to include it"
    return "its ImageNet weights are not available offline"


def _score(x_train, y_train, x_val, y_val, n_classes: int, seed: int) -> float:
    """Accuracy on the held-out features of a quick head fitted on the training features."""
    rms = float(np.sqrt(np.mean(np.square(x_train, dtype=np.float64))))
    scale = np.float32(1.0 / rms) if rms > 0 else np.float32(1.0)
    keras.utils.set_random_seed(seed)
    head = build_head(x_train.shape[1], n_classes, dropout=HEAD_DROPOUT)
    trainer = HeadTrainer(head, HEAD_LR, seed=seed)
    trainer.fit(x_train * scale, y_train, epochs=HEAD_EPOCHS, batch_size=HEAD_BATCH)
    return trainer.evaluate(x_val * scale, y_val)[1]


class _Stopped(Exception):
    """Raised inside extraction when a stop was asked for."""


def _timed_encoder(name: str, input_size: int, timer: dict, on_loading: Callable[[], None]):
    """``get_encoder`` for :func:`extract_features`: builds the backbone (after ``on_loading()``), warms it up,
    times every batch."""

    def get_encoder():
        on_loading()
        encode = keras_encoder(create_backbone(name, weights="imagenet"))

        # Two warm-up shapes: graph tracing (and the retrace a second batch size causes) is not inference time.
        for n in (1, 2):
            encode(np.zeros((n, input_size, input_size, 3), np.float32))

        def timed(batch):
            start = time.perf_counter()
            out = encode(batch)
            timer["seconds"] += time.perf_counter() - start
            timer["images"] += len(batch)
            return out

        return timed

    return get_encoder


def leaderboard(
    source,
    backbones: Sequence[str] | None = None,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache: FeatureCache | None = None,
    seed: int = 0,
    on_phase: PhaseCallback | None = None,
) -> dict:
    """Score ``backbones`` (default: every registered one) on ``source`` (anything :func:`load_dataset` takes).

    Backbones without offline or already-downloaded weights are skipped with
    the reason, as are backbones that fail to build. ``on_progress(event)``
    receives ``{"stage": "embed"|"scored"|"skipped", "backbone", "index",
    "count", ...}`` (``embed`` at least every second while photos are embedded);
    ``on_phase(phase, name=backbone)`` hears ``loading`` before a backbone is
    built and ``scoring`` before its quick head is fitted; ``should_stop()`` is
    polled with every ``embed`` report, and a stop returns the rows scored so
    far with ``stopped`` true. Rows are sorted best
    first: ``name``, ``accuracy``, ``size_mb``, ``params``, ``images_per_s``
    (measured while embedding; an earlier measurement, or None, when every
    embedding came from the cache), ``speed_source``, ``feature_dim``,
    ``input_size``, ``imagenet_top1``, ``cache_hits``, ``computed``, ``seconds``.
    """
    t_start = time.perf_counter()
    names = list(backbones) if backbones else list_backbones()
    specs = {name: get_spec(name) for name in names}  # an unknown name is the caller's error, said at once
    dataset = source if isinstance(source, Dataset) else load_dataset(source)
    classes = dataset.classes
    # The data's own validation split when it has one (a test split stays untouched), else HELD_OUT of each class.
    held_out = "val" if any(s.split == "val" for s in dataset.samples) else "split"
    splits = assign_splits(dataset.samples, dataset.has_splits, (1 - HELD_OUT, HELD_OUT, 0.0), seed, carve=HELD_OUT)
    if "val" not in splits:
        raise TLError("too few photos to hold any out for scoring; add at least 3 per class")
    class_index = {c: i for i, c in enumerate(classes)}
    labels = np.array([class_index[s.label] for s in dataset.samples], dtype=int)
    split_array = np.array(splits)
    paths = [s.path for s in dataset.samples]
    cache = cache if cache is not None else FeatureCache()
    available = set(available_backbones())
    emit = on_progress or (lambda event: None)
    phase = on_phase or no_phase

    rows, skipped, files_skipped, stopped = [], [], None, False
    for index, name in enumerate(names):
        spec = specs[name]
        where = {"backbone": name, "index": index, "count": len(names)}
        if should_stop and should_stop():
            stopped = True
            break
        if name not in available:
            skipped.append({"name": name, "reason": _unavailable_reason(name)})
            emit({"stage": "skipped", **where, "reason": skipped[-1]["reason"]})
            continue

        def on_extract(done, total, where=where):
            emit({"stage": "embed", **where, "done": done, "total": total})
            if should_stop and should_stop() and done < total:
                raise _Stopped

        timer = {"seconds": 0.0, "images": 0}
        t0 = time.perf_counter()
        try:
            loading = lambda backbone=name: phase(LOADING, name=backbone)  # noqa: E731
            feats = extract_features(paths, f"{name}|imagenet", _timed_encoder(name, spec.input_size, timer, loading),
                                     spec.input_size, cache, on_progress=on_extract)
        except _Stopped:
            stopped = True
            break
        except TLError as exc:
            skipped.append({"name": name, "reason": " ".join(str(exc).split())})
            emit({"stage": "skipped", **where, "reason": skipped[-1]["reason"]})
            continue
        except Exception as exc:  # noqa: BLE001 - one backbone failing must not lose the others' scores
            log.exception("leaderboard: backbone %s failed", name)
            skipped.append({"name": name, "reason": f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())})"})
            emit({"stage": "skipped", **where, "reason": skipped[-1]["reason"]})
            continue
        if files_skipped is None:
            files_skipped = feats.skipped
        kept = np.array(feats.kept, dtype=int)
        y, sp = labels[kept], split_array[kept]
        train, val = sp == "train", sp == "val"
        if not train.any() or not val.any():
            raise TLError("too few readable photos to hold any out for scoring; add at least 3 per class")
        phase(SCORING, name=name)
        accuracy = _score(feats.features[train], y[train], feats.features[val], y[val], len(classes), seed)
        if timer["images"] and timer["seconds"] > 0:
            speed, source_of_speed = timer["images"] / timer["seconds"], "embedding"
        else:
            speed = measured_speeds().get(name)
            source_of_speed = "earlier" if speed is not None else None
        rows.append({
            "name": name, "accuracy": accuracy, "size_mb": spec.size_mb, "params": spec.params,
            "images_per_s": None if speed is None else round(float(speed), 1), "speed_source": source_of_speed,
            "feature_dim": int(feats.features.shape[1]), "input_size": spec.input_size,
            "imagenet_top1": spec.imagenet_top1, "cache_hits": feats.cache_hits, "computed": feats.computed,
            "seconds": round(time.perf_counter() - t0, 2),
        })
        emit({"stage": "scored", **where, "row": rows[-1]})

    rows.sort(key=lambda r: (-r["accuracy"], -(r["images_per_s"] or 0.0), r["size_mb"]))
    return {
        "rows": rows, "skipped": skipped, "classes": classes,
        "n_train": int((split_array == "train").sum()), "n_val": int((split_array == "val").sum()),
        "held_out": held_out, "seed": seed, "epochs": HEAD_EPOCHS, "stopped": stopped,
        "files_skipped": (files_skipped or []) + dataset.skipped,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
