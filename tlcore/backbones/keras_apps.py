"""Keras applications as backbones; ImageNet weights are downloaded by Keras on first use.

Keras caches downloads in ``~/.keras/models``. Without network access the
download fails; the error then names the file to place there by hand.
"""
from __future__ import annotations

import re

import keras
import numpy as np

from ..io.errors import TLError
from .preprocessing import Preprocess
from .registry import BackboneSpec, register_backbone
from ._common import load_weights_file

__all__ = ["KERAS_APPLICATIONS"]

_SOURCE = "downloaded by Keras on first use, cached in ~/.keras/models"

# name: (constructor, input size, preprocessing, feature dim, params, size MB, top-1)
# Published figures from the Keras applications table and the MobileNetV3 paper.
KERAS_APPLICATIONS = {
    "mobilenet_v2": ("MobileNetV2", 224, "tf", 1280, 3_538_984, 14, 0.713),
    "mobilenet_v3_small": ("MobileNetV3Small", 224, "none", 576, 2_554_968, 10, 0.681),
    "mobilenet_v3_large": ("MobileNetV3Large", 224, "none", 960, 5_507_432, 22, 0.752),
    "efficientnet_b0": ("EfficientNetB0", 224, "none", 1280, 5_330_571, 29, 0.771),
    "efficientnet_b1": ("EfficientNetB1", 240, "none", 1280, 7_856_239, 31, 0.791),
    "efficientnet_b2": ("EfficientNetB2", 260, "none", 1408, 9_177_569, 36, 0.801),
    "efficientnet_b3": ("EfficientNetB3", 300, "none", 1536, 12_320_535, 48, 0.816),
    "efficientnet_v2_b0": ("EfficientNetV2B0", 224, "none", 1280, 7_200_312, 29, 0.787),
    "resnet50": ("ResNet50", 224, "caffe", 2048, 25_636_712, 98, 0.749),
    "resnet50_v2": ("ResNet50V2", 224, "tf", 2048, 25_613_800, 98, 0.760),
    "vgg16": ("VGG16", 224, "caffe", 512, 138_357_544, 528, 0.713),
    "vgg19": ("VGG19", 224, "caffe", 512, 143_667_240, 549, 0.713),
    "xception": ("Xception", 299, "tf", 2048, 22_910_480, 88, 0.790),
    "inception_v3": ("InceptionV3", 299, "tf", 2048, 23_851_784, 92, 0.779),
    "densenet121": ("DenseNet121", 224, "torch", 1024, 8_062_504, 33, 0.750),
    "convnext_tiny": ("ConvNeXtTiny", 224, "none", 768, 28_589_128, 109, 0.813),
}


def _download_error(name: str, exc: Exception) -> TLError:
    match = re.search(r"https?://\S+?/([^/\s:]+\.h5)", str(exc))
    filename = match.group(1) if match else "the ImageNet weights file"
    return TLError(
        f"cannot download the ImageNet weights for {name} (no network access?); "
        f"place {filename} in ~/.keras/models or choose the offline backbone efficientnet_lite0"
    )


def _make_builder(constructor_name: str):
    def build(spec, weights, input_shape, pooling):
        if weights not in (None, "imagenet"):
            return load_weights_file(lambda: build(spec, None, input_shape, pooling), weights, spec.name)
        constructor = getattr(keras.applications, constructor_name)
        inputs = keras.Input(shape=input_shape, name="pixels")
        x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
        keras_weights = "imagenet" if weights == "imagenet" else None
        try:
            model = constructor(
                include_top=False, weights=keras_weights, input_tensor=x, input_shape=input_shape, pooling=pooling
            )
        except Exception as exc:
            # Keras reports a failed download as a bare Exception("URL fetch failure on ...").
            if keras_weights and ("URL fetch failure" in str(exc) or isinstance(exc, OSError)):
                raise _download_error(spec.name, exc) from exc
            raise
        model = keras.Model(inputs, model.output, name=spec.name)
        if keras_weights and constructor_name.startswith("EfficientNetB"):
            model = _fold_imagenet_rescaling(model, build(spec, None, input_shape, pooling))
        return model

    return build


def _fold_imagenet_rescaling(imagenet: keras.Model, plain: keras.Model) -> keras.Model:
    """Give ``plain`` (built with weights=None) the function of ``imagenet``.

    Keras's EfficientNetB* add a per-channel Rescaling after their input
    Normalization only when they load ImageNet weights, so a model rebuilt
    with weights=None and its saved weights (as runs are reloaded) would
    compute something else. The scale is folded into the Normalization variance.
    """
    scale = next(
        np.asarray(layer.scale, np.float32)
        for layer in imagenet.layers
        if isinstance(layer, keras.layers.Rescaling) and isinstance(layer.scale, (list, tuple))
    )
    plain.set_weights(imagenet.get_weights())
    norm = next(layer for layer in plain.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_variance.assign(np.asarray(norm.adapt_variance) / scale**2)  # (x - m) / sqrt(v / s^2) = s (x - m) / sqrt(v)
    norm.finalize_state()
    return plain


for _name, (_ctor, _size, _prep, _dim, _params, _mb, _top1) in KERAS_APPLICATIONS.items():
    register_backbone(
        BackboneSpec(
            name=_name,
            display_name=_ctor,
            input_size=_size,
            preprocessing=_prep,
            feature_dim=_dim,
            params=_params,
            size_mb=_mb,
            imagenet_top1=_top1,
            weights_source=_SOURCE,
            offline=False,
        )
    )(_make_builder(_ctor))
