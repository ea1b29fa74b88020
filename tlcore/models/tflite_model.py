"""Run an exported TFLite model with LiteRT, through the same contract any client uses.

The contract: input float32 RGB pixels 0..255 of shape ``[1, H, W, 3]``
(or uint8 pixels for an ``--int8-io`` export, quantised with the input's
scale and zero point), output one probability per class, and ``labels.txt``
beside the model with one class name per line in output order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.cpus import usable_cpus
from ..io.errors import TLError
from .latency import median_latency_ms
from .run import FilePredictions

__all__ = ["TFLiteModel", "load_tflite", "read_labels", "interpreter_class"]


def interpreter_class():
    """LiteRT's interpreter class (TensorFlow's own only where LiteRT is missing)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - ai-edge-litert is a pinned requirement
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def read_labels(path: str | Path) -> list[str]:
    """Class names from a ``labels.txt`` (one per line, blank lines ignored)."""
    try:
        return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise TLError(f"cannot read the labels file {str(path)!r} ({exc.strerror or exc})") from None


class TFLiteModel(FilePredictions):
    """A ``.tflite`` classifier with its labels; same prediction API as :class:`~tlcore.models.run.RunModel`."""

    def __init__(self, path: str | Path, classes: Sequence[str] | None = None, num_threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise TLError(f"model file {str(self.path)!r} does not exist")
        self.classes = list(classes) if classes is not None else read_labels(self.path.with_name("labels.txt"))
        try:
            self.interpreter = interpreter_class()(model_path=str(self.path),
                                                    num_threads=num_threads or usable_cpus())
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TLError(f"{str(self.path)!r} is not a TFLite model LiteRT can run "
                          f"({' '.join(str(exc).split())[:200]})") from None
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        shape = [int(v) for v in self._in["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or shape[1] != shape[2]:
            raise TLError(f"{str(self.path)!r} takes input of shape {shape}; expected [1, H, H, 3] RGB images")
        n_out = int(self._out["shape"][-1])
        if n_out != len(self.classes):
            raise TLError(f"{str(self.path)!r} has {n_out} outputs but its labels.txt names {len(self.classes)} "
                          "classes; export it again")
        self.input_size = shape[1]

    @property
    def input_dtype(self) -> str:
        """``"float32"`` (pixels 0..255) or ``"uint8"`` for an integer-input export."""
        return np.dtype(self._in["dtype"]).name

    def _invoke(self, image: np.ndarray) -> np.ndarray:
        x = np.asarray(image, np.float32)[None]
        dtype = np.dtype(self._in["dtype"])
        if dtype != np.float32:
            scale, zero = self._in["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / (scale or 1.0) + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])[0]
        if np.dtype(self._out["dtype"]) != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * (scale or 1.0)
        return y.astype(np.float32)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of RGB pixels 0..255 (the model takes one image per call)."""
        return np.stack([self._invoke(image) for image in np.asarray(images)])

    def latency_ms(self, image: np.ndarray, repeats: int = 20, warmup: int = 3) -> float:
        """Median wall time of one inference on ``image``, in milliseconds, after ``warmup`` untimed ones."""
        return median_latency_ms(lambda: self._invoke(image), repeats, warmup)


def load_tflite(path: str | Path, num_threads: int | None = None) -> TFLiteModel:
    """The TFLite model at ``path`` with the ``labels.txt`` beside it."""
    return TFLiteModel(path, num_threads=num_threads)
