"""Run an exported ONNX model with ONNX Runtime, through the same contract any client uses.

The contract (:mod:`tlcore.models.onnx_conversion`): input float32 RGB pixels
0..255 of shape ``[batch, H, W, 3]``, output one probability per class, and
``labels.txt`` beside the model with one class name per line in output order.

Only a file this server produced (:mod:`tlcore.io.produced`) is opened: ONNX
Runtime's parser is native code, and an ONNX file may name "external data"
files for its weights, so a crafted one could make it read files of the
server. Files from elsewhere belong in ONNX Runtime on their owner's side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.cpus import usable_cpus
from ..io.errors import TLError
from ..io.produced import is_produced
from .latency import median_latency_ms
from .run import FilePredictions
from .tflite_model import read_labels

__all__ = ["OnnxModel", "load_onnx"]


class OnnxModel(FilePredictions):
    """A ``.onnx`` classifier exported here, with its labels; same prediction API as
    :class:`~tlcore.models.tflite_model.TFLiteModel`."""

    input_dtype = "float32"

    def __init__(self, path: str | Path, classes: Sequence[str] | None = None, num_threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise TLError(f"model file {str(self.path)!r} does not exist")
        if not is_produced(self.path):
            raise TLError(f"{self.path.name!r} was not exported by this server; Transfer Lab runs only the ONNX "
                          "files it exported itself (run others with ONNX Runtime directly)")
        self.classes = list(classes) if classes is not None else read_labels(self.path.with_name("labels.txt"))
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or usable_cpus()
        options.log_severity_level = 3  # errors only: its warnings are about graph optimisations
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for a file it cannot run
            raise TLError(f"{str(self.path)!r} is not an ONNX model ONNX Runtime can run "
                          f"({' '.join(str(exc).split())[:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else None
        if (shape is None or len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int)
                or shape[1] != shape[2] or inputs[0].type != "tensor(float)"):
            got = [(i.name, i.shape, i.type) for i in inputs]
            raise TLError(f"{str(self.path)!r} takes inputs {got}; expected float32 [batch, H, H, 3] RGB images")
        n_out = outputs[0].shape[-1] if len(outputs) == 1 else None
        if n_out != len(self.classes):
            raise TLError(f"{str(self.path)!r} has {n_out} outputs but its labels.txt names {len(self.classes)} "
                          "classes; export it again")
        self._input = inputs[0].name
        self.input_size = int(shape[1])

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of RGB pixels 0..255 (the whole batch in one call: its batch is free)."""
        x = np.asarray(images, np.float32)
        return np.asarray(self.session.run(None, {self._input: x})[0], np.float32)

    def latency_ms(self, image: np.ndarray, repeats: int = 20, warmup: int = 3) -> float:
        """Median wall time of one inference on ``image``, in milliseconds, after ``warmup`` untimed ones."""
        batch = np.asarray(image, np.float32)[None]
        return median_latency_ms(lambda: self.predict_batch(batch), repeats, warmup)


def load_onnx(path: str | Path, num_threads: int | None = None) -> OnnxModel:
    """The ONNX model at ``path`` (exported here) with the ``labels.txt`` beside it."""
    return OnnxModel(path, num_threads=num_threads)
