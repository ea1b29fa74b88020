"""Pixel normalisations used by the backbones, as NumPy functions and as a Keras layer.

Every model this project builds takes float RGB pixels in 0..255 and applies
its backbone's own normalisation inside the graph, so exported models and
previews can never disagree about preprocessing.
"""
from __future__ import annotations

import keras
import numpy as np

__all__ = ["PREPROCESSING_MODES", "preprocess", "Preprocess"]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)

PREPROCESSING_MODES = ("none", "tf", "torch", "caffe", "lite")


def _apply(x, mode: str, ops):
    if mode == "none":
        return x
    if mode == "tf":  # [-1, 1]
        return x / 127.5 - 1.0
    if mode == "lite":  # EfficientNet-Lite's own (x - 127) / 128
        return (x - 127.0) / 128.0
    if mode == "torch":
        return (x / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
    if mode == "caffe":  # RGB -> BGR, then subtract the ImageNet BGR mean
        return ops.flip(x, axis=-1) - _CAFFE_MEAN_BGR
    raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}")


def preprocess(x: np.ndarray, mode: str) -> np.ndarray:
    """Normalise float RGB pixels in 0..255 the way backbone ``mode`` expects."""
    return _apply(np.asarray(x, np.float32), mode, np)


@keras.saving.register_keras_serializable(package="tlcore")
class Preprocess(keras.layers.Layer):
    """In-graph version of :func:`preprocess` (serialisable, no Lambda)."""

    def __init__(self, mode: str = "none", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}")
        self.mode = mode

    def call(self, inputs):
        return _apply(keras.ops.cast(inputs, "float32"), self.mode, keras.ops)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
