"""A Keras model's inference as one traced function for any batch size: the one home of that function.

Keras's ``predict_on_batch`` traces the model again for every new batch size, and the sizes vary (the extraction's
slices, the last batch of a folder, one photo on the Predict page): about half a second each time for a backbone.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["traced_inference"]


def traced_inference(model) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` in inference mode (``training=False``) on a float32 batch of its input, traced once for any batch
    size; returns float32 arrays."""
    import tensorflow as tf

    shape = [None, *model.input_shape[1:]]
    run = tf.function(lambda pixels: model(pixels, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)])
    return lambda batch: np.asarray(run(np.asarray(batch, np.float32)), np.float32)
