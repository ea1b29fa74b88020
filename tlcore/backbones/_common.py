"""Pieces shared by the backbone builders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras

from ..io.errors import TLError
from ..io.model_safety import check_weights_file

__all__ = ["finish_backbone", "load_weights_file"]


def finish_backbone(model: keras.Model, feature_layer: str, pooling) -> keras.Model:
    """Cut ``model`` after ``feature_layer`` and add the requested pooling."""
    x = model.get_layer(feature_layer).output
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    # model.input, not model.inputs: a one-input model called on a bare tensor must not warn.
    return keras.Model(model.input, x, name=model.name)


def load_weights_file(build: Callable[[], keras.Model], path, backbone: str) -> keras.Model:
    """``build()`` with the weights of the Keras weights file ``path`` (weights only, never code).

    The file is checked before anything is built (building a backbone takes about a second): a
    missing file, a pickle (whatever its extension), a legacy full-model ``.h5`` (both can carry
    code) and any other extension are refused at once.
    """
    path = Path(path)
    if not path.is_file():
        raise TLError(f"weights file {str(path)!r} does not exist; pass imagenet, none or a file path")
    check_weights_file(path)
    if not path.name.endswith((".weights.h5", ".h5")):
        raise TLError(
            f"weights file {path.name!r} is not a Keras weights file (.weights.h5 or .h5)"
        )
    model = build()
    try:
        model.load_weights(str(path))
    except Exception as exc:  # Keras raises ValueError, OSError or KeyError depending on the mismatch
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")  # Keras's are many lines
        raise TLError(f"weights file {path.name!r} does not fit the {backbone} architecture ({detail})") from exc
    return model
