"""From a Keras model to TFLite: the SavedModel the converter reads, and the conversion in each TFLite format.

The export writes files with it, and the feature engine converts a backbone with it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.errors import TLError

__all__ = ["TFLITE_FORMATS", "export_saved_model", "tflite_converter", "convert_tflite"]

log = logging.getLogger("tlcore")

TFLITE_FORMATS = ("tflite-float32", "tflite-float16", "tflite-dynamic", "tflite-int8")


def export_saved_model(model, directory: Path, batch: int | None) -> None:
    """Write ``model`` as a SavedModel taking float32 pixels of batch ``batch`` (None: any batch)."""
    import tensorflow as tf

    shape = [batch, *model.input_shape[1:]]
    model.export(str(directory), format="tf_saved_model",
                 input_signature=[tf.TensorSpec(shape, tf.float32, name="pixels")], verbose=False)


def tflite_converter(saved_model_dir: str | Path):
    """A TFLite converter on a batch-1 SavedModel, for one or more :func:`convert_tflite` calls: loading the
    SavedModel is a good part of each conversion, so an export of several formats loads it once."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))


def convert_tflite(saved_model_dir, fmt: str, calibration: np.ndarray | None = None,
                   int8_io: bool = False, on_calibrate: Callable[[int, int], None] | None = None) -> bytes:
    """Convert a batch-1 SavedModel (its folder, or a :func:`tflite_converter` on it) to TFLite bytes in
    format ``fmt``.

    ``tflite-int8`` needs ``calibration`` (uint8 images): every weight and
    activation becomes 8-bit, with float32 input and output unless
    ``int8_io`` (then uint8 input and output). Raises :class:`TLError` with
    the converter's reason when conversion fails. ``on_calibrate(done, total)``
    hears each calibration image the converter has run (0 before the first,
    the total after the last): calibrating is most of an INT8 conversion.
    """
    import tensorflow as tf

    if fmt not in TFLITE_FORMATS:
        raise TLError(f"{fmt!r} is not a TFLite format; choose one of {', '.join(TFLITE_FORMATS)}")
    if fmt == "tflite-int8" and (calibration is None or len(calibration) == 0):
        raise TLError("INT8 export needs calibration images (100-500 from the training data)")
    converter = saved_model_dir if hasattr(saved_model_dir, "convert") else tflite_converter(saved_model_dir)
    # Every setting is written on every call, so a converter used for one format carries nothing into the next.
    converter.optimizations = [] if fmt == "tflite-float32" else [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16] if fmt == "tflite-float16" else []
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.representative_dataset = None
    converter.inference_input_type = converter.inference_output_type = tf.float32
    if fmt == "tflite-int8":
        def representative():
            # The converter asks for the next image once it has run the previous one through the model.
            for done, image in enumerate(calibration):
                if on_calibrate:
                    on_calibrate(done, len(calibration))
                yield [image[None].astype(np.float32)]
            if on_calibrate:
                on_calibrate(len(calibration), len(calibration))

        converter.representative_dataset = representative
        # Only integer kernels: a model that cannot be fully quantised fails here rather than
        # silently keeping float ops.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises several types; its message is the reason
        log.exception("TFLite conversion to %s failed", fmt)
        reason = " ".join(str(exc).split())
        raise TLError(f"conversion to {fmt} failed ({reason[:300] or type(exc).__name__})") from None
