"""Check an exported model against the Keras one on the same held-out images."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..data.images import load_image
from ..models.latency import median_latency_ms
from ..models.run import RunModel

__all__ = ["keras_reference", "compare", "exported_accuracy"]


def _counted(on_progress) -> dict:
    """``predict_files``'s progress argument, only when someone listens (a model need not take one otherwise)."""
    return {"on_progress": on_progress} if on_progress is not None else {}


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float((y == pred).mean()) if len(y) else 0.0


def keras_reference(run: RunModel, paths: Sequence[str], y: Sequence[int], repeats: int = 10,
                    on_progress: Callable[[int, int], None] | None = None) -> dict:
    """The Keras model's predictions on labelled files, and its latency for one image.

    Returns ``{"paths", "y", "probs", "accuracy", "latency_ms", "n", "skipped"}``
    with only the decodable files kept; ``on_progress(done, total)`` hears each batch of files.
    """
    probs, kept, skipped = run.predict_files(list(paths), **_counted(on_progress))
    kept_paths = [paths[i] for i in kept]
    labels = np.asarray([y[i] for i in kept], dtype=int)
    latency = None
    if kept_paths:
        image = load_image(kept_paths[0], run.input_size)[None].astype(np.float32)
        # One warm-up call: the first one traces the graph.
        latency = median_latency_ms(lambda: run.predict_batch(image), repeats, warmup=1)
    return {"paths": kept_paths, "y": labels, "probs": probs, "n": len(kept_paths), "skipped": skipped,
            "accuracy": _accuracy(labels, probs.argmax(axis=1)) if len(kept_paths) else None,
            "latency_ms": latency}


def compare(reference: dict, model, classes: Sequence[str],
            on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Run ``model`` (anything with ``predict_files``, ``latency_ms`` and ``input_size``: a TFLite or ONNX file's
    runtime) on the reference's files.

    Returns accuracy of both (``keras_accuracy``, ``exported_accuracy``), top-1 agreement, the largest probability
    difference, per-class accuracy before and after, and per-image latency;
    ``on_progress(done, total)`` hears each batch of files.
    """
    probs, kept, _ = model.predict_files(reference["paths"], **_counted(on_progress))
    ref_probs, y = reference["probs"][kept], reference["y"][kept]
    keras_pred, pred = ref_probs.argmax(axis=1), probs.argmax(axis=1)
    per_class = {}
    for i, name in enumerate(classes):
        mask = y == i
        if mask.any():
            k, t = _accuracy(y[mask], keras_pred[mask]), _accuracy(y[mask], pred[mask])
            per_class[name] = {"n": int(mask.sum()), "keras_accuracy": k, "exported_accuracy": t, "change": t - k}
    keras_acc, acc = _accuracy(y, keras_pred), _accuracy(y, pred)
    latency = model.latency_ms(load_image(reference["paths"][kept[0]], model.input_size)) if kept else None
    return {
        "n": int(len(kept)),
        "keras_accuracy": keras_acc,
        "exported_accuracy": acc,
        "accuracy_change": acc - keras_acc,
        "agreement": float((keras_pred == pred).mean()) if len(kept) else 0.0,
        "max_probability_difference": float(np.abs(probs - ref_probs).max()) if len(kept) else 0.0,
        "per_class": per_class,
        "latency_ms": latency,
        "keras_latency_ms": reference["latency_ms"],
    }


def exported_accuracy(verification: dict) -> float | None:
    """The exported file's accuracy in a :func:`compare` result; results written before ONNX existed (older
    export jobs) name it ``tflite_accuracy`` only."""
    return verification.get("exported_accuracy", verification.get("tflite_accuracy"))
