"""From a Keras model to ONNX, with tf2onnx: the file ONNX Runtime (Python, C#, Java, C++, the browser) runs.

The file keeps the contract of the TFLite exports: input ``pixels``, float32 RGB
values 0..255 of shape ``[batch, H, W, 3]`` (the batch is left free, so a
client may send any number of photos at once), the backbone's normalisation
inside the graph, output ``probabilities``, ``[batch, classes]`` in the order
of ``labels.txt``.
"""
from __future__ import annotations

import json
import logging
from typing import Sequence

from ..io.errors import TLError

__all__ = ["ONNX_OPSET", "INPUT_NAME", "OUTPUT_NAME", "convert_onnx"]

log = logging.getLogger("tlcore")

# Opset 17 (ONNX 1.12, 2022): every ONNX Runtime since 1.12 runs it, ONNX Runtime Web included, and it has
# every operator a Keras application of the registry needs.
ONNX_OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
_BATCH = "batch"  # the symbolic name of the free batch dimension, the same on input and output


def convert_onnx(model, classes: Sequence[str]) -> bytes:
    """The ONNX bytes of a Keras classifier taking pixels 0..255 (``model.input_shape`` is ``(None, H, W, 3)``).

    ``classes`` are written into the file's metadata (``labels``, a JSON list)
    as well, so the file describes itself; ``labels.txt`` stays the contract.
    Raises :class:`TLError` with the converter's reason when conversion fails.
    """
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:  # pragma: no cover - tf2onnx is a pinned requirement
        raise TLError("ONNX export needs tf2onnx; install the project's requirements (make)") from None

    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=INPUT_NAME)]
    # A dict output names the graph's output; inference mode, as every other export.
    function = tf.function(lambda pixels: {OUTPUT_NAME: model(pixels, training=False)}, input_signature=signature)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET)
    except Exception as exc:  # the converter raises many types; its message is the reason
        log.exception("ONNX conversion failed")
        reason = " ".join(str(exc).split())
        raise TLError(f"conversion to onnx failed ({reason[:300] or type(exc).__name__})") from None
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = _BATCH
    proto.producer_name = "Transfer Lab"
    proto.doc_string = ("Input 'pixels': float32 RGB 0..255, [batch, H, W, 3], resized with bilinear filtering, "
                        "no normalisation (it is inside the model). Output 'probabilities': [batch, classes] in "
                        "the order of labels.txt.")
    entry = proto.metadata_props.add()
    entry.key, entry.value = "labels", json.dumps(list(classes))
    return proto.SerializeToString()
