"""The classifier: a frozen backbone, then dropout and a dense softmax head."""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from ..io.errors import TLError

__all__ = ["Standardize", "build_head", "build_classifier", "unfreeze_top_layers", "learning_layers", "layers_to_unfreeze",
           "trainable_layer_names", "classifier_parts", "logits_function"]


@keras.saving.register_keras_serializable(package="tlcore")
class Standardize(keras.layers.Layer):
    """Per-feature ``(x - mean) / std`` with statistics set from training features.

    Random-weight backbones give features of arbitrary scale (1e-12 for some),
    which no head can learn from; pretrained ones do not need this.
    """

    def build(self, input_shape):
        dim = input_shape[-1]
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.inv_std = self.add_weight(shape=(dim,), initializer="ones", trainable=False, name="inv_std")

    def call(self, inputs):
        return (inputs - self.mean) * self.inv_std

    def set_statistics(self, features: np.ndarray) -> None:
        """Take mean and standard deviation from ``features`` (n, dim); constant features get weight 0."""
        f = np.asarray(features, np.float64)
        std = f.std(axis=0)
        self.mean.assign(f.mean(axis=0).astype(np.float32))
        self.inv_std.assign(np.divide(1.0, std, out=np.zeros_like(std), where=std > 0).astype(np.float32))


def build_head(feature_dim: int, n_classes: int, dropout: float = 0.2, standardize: bool = False) -> keras.Model:
    """Dropout then dense softmax, on pooled backbone features (standardised first if asked)."""
    layers = [keras.Input(shape=(feature_dim,), name="features")]
    if standardize:
        layers.append(Standardize(name="head_standardize"))
    layers += [
        keras.layers.Dropout(dropout, name="head_dropout"),
        keras.layers.Dense(n_classes, activation="softmax", name="head_dense"),
    ]
    return keras.Sequential(layers, name="head")


def build_classifier(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """Pixels 0..255 in, class probabilities out.

    The backbone is called with ``training=False`` so its BatchNorm layers
    stay in inference mode even while its top layers are fine-tuned.
    """
    inputs = keras.Input(shape=backbone.input_shape[1:], name="pixels")
    features = backbone(inputs, training=False)
    return keras.Model(inputs, head(features), name="classifier")


def unfreeze_top_layers(backbone: keras.Model, k: int) -> list[str]:
    """Make the top ``k`` layers with weights of ``backbone`` trainable, all others frozen.

    ``k`` counts the layers that learn (convolutions, dense layers): layers
    without weights (activations, additions, pooling) are not counted, and
    BatchNorm layers stay frozen whatever ``k`` is (their statistics must
    not drift on a small dataset). Returns the names of the layers that
    became trainable, in the backbone's order: ``k`` of them, or all the
    backbone has when it has fewer.
    """
    backbone.trainable = True
    chosen = set(layers_to_unfreeze(backbone, k))
    for layer in backbone.layers:
        layer.trainable = layer.name in chosen
    return trainable_layer_names(backbone)


def learning_layers(backbone: keras.Model) -> list[str]:
    """Names of the layers fine-tuning can train, in the backbone's order: those with trainable variables,
    BatchNorm excepted. The unit in which a number of fine-tuned layers is given and shown."""
    return [layer.name for layer in backbone.layers
            if not isinstance(layer, keras.layers.BatchNormalization) and any(w.trainable for w in layer.weights)]


def layers_to_unfreeze(backbone: keras.Model, k: int) -> list[str]:
    """Names of the layers :func:`unfreeze_top_layers` makes trainable: the top ``k`` of :func:`learning_layers`."""
    layers = learning_layers(backbone)
    return layers[max(len(layers) - max(int(k), 0), 0):] if int(k) > 0 else []


def trainable_layer_names(backbone: keras.Model) -> list[str]:
    """Names of the layers whose weights training would change."""
    return [layer.name for layer in backbone.layers if layer.trainable and layer.trainable_weights]


def classifier_parts(model) -> tuple:
    """``(backbone, head_logits)`` of a classifier built by :func:`tlcore.models.classifier.build_classifier`.

    ``head_logits(features)`` maps backbone features to logits: the head
    ends in a softmax Dense layer whose kernel and bias give them directly.
    Dropout is off (inference), as everywhere else here.
    """
    import tensorflow as tf

    try:
        backbone = model.layers[1]
        head = model.get_layer("head")
        dense = head.get_layer("head_dense")
    except (ValueError, IndexError, AttributeError):
        raise TLError("this model is not a Transfer Lab classifier (no head_dense layer)") from None
    before = [layer for layer in head.layers if layer is not dense and "dropout" not in layer.name]

    def head_logits(features):
        for layer in before:
            features = layer(features, training=False)
        return tf.matmul(features, dense.kernel) + dense.bias

    return backbone, head_logits


def logits_function(model) -> Callable:
    """``f(images) -> logits`` for a classifier built by :func:`tlcore.models.classifier.build_classifier`."""
    backbone, head_logits = classifier_parts(model)
    return lambda images: head_logits(backbone(images, training=False))
