"""Where fine-tuning runs: this device, several devices of one machine, or several machines.

Wraps ``tf.distribute``: ``"default"`` is TensorFlow's no-op strategy (one
device), ``"mirrored"`` a ``MirroredStrategy`` over every GPU (or, without
GPUs, every logical CPU device), ``"multi-worker"`` a
``MultiWorkerMirroredStrategy`` whose cluster comes from ``TF_CONFIG``.
Only fine-tuning is distributed: the head is trained on cached embeddings in
NumPy (:mod:`tlcore.training.head_fit`), which is not TensorFlow work.
"""
from __future__ import annotations

import json
import os

import keras

from ..io.errors import TLError
from ..models.classifier import build_classifier, unfreeze_top_layers
from .config import STRATEGIES

__all__ = ["STRATEGIES", "check_strategy", "read_tf_config", "make_strategy", "replicate", "fine_tuning_classifier",
           "build_for_fit"]


def check_strategy(name: str) -> None:
    """Refuse an unknown strategy name, or multi-worker without a usable ``TF_CONFIG``.

    Cheap (creates nothing), so callers can fail before hours of feature extraction.
    """
    if name not in STRATEGIES:
        raise TLError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi-worker":
        read_tf_config()


def read_tf_config() -> dict:
    """``TF_CONFIG`` parsed and checked: a ``cluster`` with workers and this machine's ``task`` in it."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        raise TLError("the multi-worker strategy needs the TF_CONFIG environment variable (the cluster's "
                      "workers and this machine's task), which is not set; see the README's Scaling out section")
    try:
        config = json.loads(raw)
    except ValueError:
        raise TLError(f"TF_CONFIG {raw!r} is not valid JSON") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise TLError(f"TF_CONFIG {raw!r} needs a cluster with a non-empty worker list of host:port addresses")
    task = config.get("task")
    members = cluster.get(task.get("type")) if isinstance(task, dict) and isinstance(task.get("type"), str) else None
    index = task.get("index") if isinstance(task, dict) else None
    if (not isinstance(members, list) or task["type"] not in ("worker", "chief")
            or not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(members)):
        raise TLError(f"TF_CONFIG task {task!r} must name this machine in the cluster, "
                      f"like {{'type': 'worker', 'index': 0}} with an index below the number of workers")
    return config


def make_strategy(name: str = "default"):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`STRATEGIES`).

    A multi-worker strategy must be made before TensorFlow runs anything in
    the process (TensorFlow's rule), so callers make it first thing.
    """
    check_strategy(name)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # MirroredStrategy() alone ignores extra CPU devices; with no GPU, use every logical CPU device.
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as exc:
        raise TLError(f"the multi-worker strategy could not start ({' '.join(str(exc).split())}); it must be made "
                      "before TensorFlow runs anything, so run each worker as a fresh process") from exc


def replicate(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with its own variables (created in the current strategy scope) and the same weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = model.trainable  # first: it sets every layer's flag
    for original, layer in zip(model.layers, copy.layers):
        layer.trainable = original.trainable
    return copy


def fine_tuning_classifier(strategy, backbone: keras.Model, head: keras.Model, unfreeze: int, lr: float):
    """``(classifier, unfrozen layer names)``: ``backbone`` then ``head``, top ``unfreeze`` layers trainable,
    compiled with Adam at ``lr``, its variables (and its optimizer's) placed by ``strategy``.

    Variables are placed when they are created, so under a real strategy the
    classifier is built from copies of ``backbone`` and ``head`` made in its
    scope; under the default one it uses them as they are.
    """
    import tensorflow as tf

    with strategy.scope():
        if tf.distribute.has_strategy():  # False for TensorFlow's default strategy, even inside its scope
            backbone, head = replicate(backbone), replicate(head)
        layers = unfreeze_top_layers(backbone, unfreeze)
        classifier = build_classifier(backbone, head)
        classifier.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])
    return classifier, layers


def build_for_fit(classifier: keras.Model, strategy, batch: tuple) -> None:
    """Build ``classifier``'s loss, metrics and optimizer state from one plain ``batch`` before ``fit``.

    Under a real strategy Keras (3.15) builds them from the first batch
    averaged over the replicas, which fails whenever the replicas got
    different numbers of images (a batch size that is not a multiple of
    the replicas, a validation set smaller than that); building here first,
    then skipping that step, lets any batch size and any split work.
    """
    import tensorflow as tf

    with strategy.scope():
        if not tf.distribute.has_strategy():
            return  # the default strategy builds lazily, from the batch itself
        classifier._symbolic_build(data_batch=batch)
    # Everything is built now, so Keras's own build would only do the failing average.
    classifier._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
