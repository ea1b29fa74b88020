"""What a classifier looks at: Grad-CAM, feature maps and "ideal class" images.

Everything here works on a Transfer Lab classifier (a frozen backbone, a
nested Keras model, then the ``head``), given either as the Keras model
:func:`tlcore.models.classifier.build_classifier` makes or as a :class:`tlcore.models.run.RunModel`.
Images are RGB arrays ``(height, width, 3)`` of pixels 0..255 (``uint8`` or
float), as everywhere in the project; an image of another size than the
model's input is resized for the model (bilinear, antialiased), and
heatmaps come back at the image's own size. For exactly the app's
prediction, pass an image decoded by :mod:`tlcore.data.images` at the model's
input size.

Gradients are taken on the class *logit* (the softmax's input): the
probability of a confidently predicted class is flat near 1.0, so its
gradient says little about where the evidence is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from ..models.classifier import classifier_parts, logits_function
from ..io.errors import TLError
from ..io.settings import as_positional, check_settings, setting, to_options
from ..models.run import RunModel
from .display import jet_colours  # the heat maps' colours live with the other images for the eye

__all__ = ["IdealImageConfig", "IDEAL_SETTINGS", "ideal_args", "conv_layers", "default_cam_layer", "grad_cam", "overlay", "jet_colours", "feature_maps",
           "feature_grid", "ideal_class_image", "total_variation"]

# Layers whose outputs are worth showing: what a block has computed (after its non-linearity) or a
# block's merged output. Bare convolutions and BatchNorms before an activation are skipped: the
# activation right after them shows the same map, made meaningful.
_ACTIVATION_LAYERS = (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU, keras.layers.ELU,
                      keras.layers.PReLU)
_MERGE_LAYERS = (keras.layers.Add, keras.layers.Concatenate)
_CONV_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


# --- the parts of a classifier ----------------------------------------------------------------


def _classifier(model) -> keras.Model:
    """The Keras classifier of ``model`` (a RunModel's, or ``model`` itself)."""
    return model.model if isinstance(model, RunModel) else model


def _parts(model):
    """``(classifier, backbone, features -> logits)`` for a Transfer Lab classifier.

    Grad-CAM needs the head's half alone (features -> logits) because it must
    see the backbone's intermediate map; :func:`tlcore.models.classifier.classifier_parts`
    gives both halves (and refuses a model that is not a Transfer Lab classifier).
    """
    classifier = _classifier(model)
    backbone, head_logits = classifier_parts(classifier)
    return classifier, backbone, head_logits


def _n_classes(classifier: keras.Model) -> int:
    return int(classifier.get_layer("head").get_layer("head_dense").units)


def _check_class(class_index, n_classes: int) -> int:
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
            or not 0 <= int(class_index) < n_classes:
        raise TLError(f"class index {class_index!r} is not one of the model's {n_classes} classes (0..{n_classes - 1})")
    return int(class_index)


def _is_spatial(layer) -> bool:
    shape = getattr(layer, "output", None)
    shape = getattr(shape, "shape", None)
    if shape is None or len(shape) != 4:
        return False
    # 1x1 maps (squeeze-and-excitation gates) have nothing to show.
    return not (shape[1] == 1 and shape[2] == 1)


def _worth_showing(layer) -> bool:
    if isinstance(layer, _ACTIVATION_LAYERS + _MERGE_LAYERS):
        return True
    if isinstance(layer, _CONV_LAYERS):  # a convolution with its own non-linearity (VGG's)
        activation = getattr(layer, "activation", None)
        return activation is not None and getattr(activation, "__name__", "linear") != "linear"
    return False


def conv_layers(backbone: keras.Model) -> list[str]:
    """Names of the backbone's layers whose feature maps are worth showing, input first.

    These are the layers with spatial (4-D) outputs larger than 1x1 that
    are activations (ReLU, Activation, ...), convolutions with a built-in
    non-linearity, or block outputs (Add, Concatenate): the choices for
    :func:`grad_cam` and :func:`feature_maps` in the dashboard. ``backbone``
    may also be a whole classifier or a RunModel; its backbone is used.
    """
    backbone = _backbone_of(backbone)
    return [layer.name for layer in backbone.layers if _is_spatial(layer) and _worth_showing(layer)]


def default_cam_layer(backbone: keras.Model) -> str:
    """The last layer :func:`conv_layers` lists: the usual Grad-CAM choice (most semantic, still spatial)."""
    names = conv_layers(backbone)
    if not names:
        raise TLError(f"backbone {_backbone_of(backbone).name!r} has no spatial layer to explain")
    return names[-1]


def _backbone_of(model) -> keras.Model:
    """The backbone of a classifier or RunModel; a bare backbone is returned as is."""
    model = _classifier(model)
    try:
        model.get_layer("head")
    except ValueError:
        return model  # already a backbone
    return model.layers[1]


def _layer(backbone: keras.Model, name: str):
    try:
        layer = backbone.get_layer(name)
    except ValueError:
        raise TLError(f"backbone {backbone.name!r} has no layer {name!r}; choose one of conv_layers()") from None
    if not _is_spatial(layer):
        raise TLError(f"layer {name!r} of backbone {backbone.name!r} has no spatial output to explain; "
                      f"choose one of conv_layers()")
    return layer


def _tap(backbone: keras.Model, layer_name: str) -> keras.Model:
    """The backbone with a second output: ``pixels -> [layer's map, features]`` (one forward pass)."""
    layer = _layer(backbone, layer_name)
    return keras.Model(backbone.input, [layer.output, backbone.output], name=f"{backbone.name}_tap")


def _batch(image, backbone: keras.Model):
    """``(1, size, size, 3)`` float32 batch for the model, and the image's own ``(height, width)``."""
    import tensorflow as tf

    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise TLError(f"the image must be an RGB array of shape (height, width, 3); got shape {arr.shape}")
    hw = arr.shape[:2]
    x = tf.convert_to_tensor(arr.astype(np.float32)[None])
    target = tuple(backbone.input_shape[1:3])
    if None not in target and hw != target:
        x = tf.image.resize(x, target, method="bilinear", antialias=True)
    return x, hw


# --- Grad-CAM -----------------------------------------------------------------------------------


def grad_cam(model, image: np.ndarray, class_index: int | None = None, layer: str | None = None) -> dict:
    """Grad-CAM heatmap of where ``image`` holds evidence for a class (Selvaraju et al., 2017).

    ``model`` is a Transfer Lab classifier (Keras model or RunModel);
    ``image`` an RGB array ``(H, W, 3)`` of pixels 0..255. The gradient of
    the class logit with respect to the feature map of backbone ``layer``
    (default :func:`default_cam_layer`) is averaged over space to weigh the
    map's channels; the ReLU of the weighted sum of channels is upsampled
    (bilinear) to ``H x W`` and divided by its maximum. ``class_index``
    defaults to the predicted class.

    Returns ``{"heatmap": (H, W) float32 in 0..1, "class_index": int,
    "probabilities": (n_classes,) float32, "layer": name}``. A heatmap of
    zeros means no part of the map speaks for the class.
    """
    import tensorflow as tf

    classifier, backbone, head_logits = _parts(model)
    layer = layer if layer is not None else default_cam_layer(backbone)
    tap = _tap(backbone, layer)
    x, (height, width) = _batch(image, backbone)
    n_classes = _n_classes(classifier)
    if class_index is not None:
        class_index = _check_class(class_index, n_classes)
    with tf.GradientTape() as tape:
        # One forward pass gives both the map and the logits, so the gradient is of this exact map.
        fmap, features = tap(x, training=False)
        logits = head_logits(features)
        chosen = int(tf.argmax(logits[0])) if class_index is None else class_index
        score = logits[0, chosen]
    grads = tape.gradient(score, fmap)
    if grads is None:  # cannot happen for a layer on the path to the features, but say so if it does
        raise TLError(f"the class score does not depend on layer {layer!r}; choose another layer")
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1, keepdims=True))  # (1, h, w, 1)
    cam = tf.image.resize(cam, (height, width), method="bilinear")[0, :, :, 0].numpy()
    peak = float(cam.max())
    heatmap = (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)
    return {
        "heatmap": np.clip(heatmap, 0.0, 1.0),
        "class_index": chosen,
        "probabilities": tf.nn.softmax(logits[0]).numpy().astype(np.float32),
        "layer": layer,
    }


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap in jet colours blended on the photo: ``uint8 (H, W, 3)``.

    ``alpha`` is the heatmap's share (0 = photo only, 1 = heatmap only). A
    heatmap of another size than the image is resized to it (bilinear).
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise TLError(f"alpha is the heatmap's share, between 0 and 1; got {alpha}")
    photo = np.asarray(image)
    if photo.ndim != 3 or photo.shape[-1] != 3:
        raise TLError(f"the image must be an RGB array of shape (height, width, 3); got shape {photo.shape}")
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim != 2:
        raise TLError(f"the heatmap must be a 2-D array; got shape {heat.shape}")
    if heat.shape != photo.shape[:2]:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat, "F").resize(photo.shape[1::-1], Image.BILINEAR))
    blended = (1.0 - alpha) * np.clip(photo.astype(np.float32), 0, 255) + alpha * jet_colours(heat)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# --- feature maps -------------------------------------------------------------------------------


def feature_maps(model, image: np.ndarray, layer: str, max_maps: int = 16) -> np.ndarray:
    """The ``k <= max_maps`` most active channels of backbone ``layer`` on ``image``.

    Channels are ranked by their mean activation over the map, strongest
    first; each map is scaled to 0..1 on its own (a constant map is all
    zeros). Returns float32 ``(k, h, w)`` at the layer's resolution.
    """
    if isinstance(max_maps, bool) or not isinstance(max_maps, (int, np.integer)) or max_maps < 1:
        raise TLError(f"max_maps is how many feature maps to show, at least 1; got {max_maps!r}")
    _, backbone, _ = _parts(model)
    tap = _tap(backbone, layer)
    x, _ = _batch(image, backbone)
    fmap = np.asarray(tap(x, training=False)[0][0], np.float32)  # (h, w, channels)
    order = np.argsort(-fmap.mean(axis=(0, 1)), kind="stable")[:max_maps]
    maps = np.moveaxis(fmap[:, :, order], -1, 0)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.divide(maps - lo, span, out=np.zeros_like(maps), where=span > 0).astype(np.float32)


def feature_grid(maps: np.ndarray, columns: int = 4, scale: int = 1) -> np.ndarray:
    """Tile maps ``(k, h, w)`` in 0..1 into one grey ``uint8`` image for display.

    Maps fill ``columns`` columns row by row, separated by 1-pixel white
    lines; cells left over in the last row are white too. ``scale`` enlarges
    each map by repeating pixels (late layers are only a few pixels wide).
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise TLError(f"feature maps must be a non-empty array of shape (k, height, width); got shape {maps.shape}")
    if int(columns) < 1 or int(scale) < 1:
        raise TLError(f"columns and scale must be at least 1; got columns={columns}, scale={scale}")
    scale = int(scale)
    cells = np.rint(np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)
    cells = cells.repeat(scale, axis=1).repeat(scale, axis=2)
    k, h, w = cells.shape
    cols = min(int(columns), k)
    rows = math.ceil(k / cols)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 255, np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = cell
    return grid


# --- ideal class images -------------------------------------------------------------------------


def total_variation(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels, on the 0..1 scale (0 = flat image)."""
    u = np.asarray(image, np.float64) / 255.0
    return float(np.abs(np.diff(u, axis=0)).mean() + np.abs(np.diff(u, axis=1)).mean())


@dataclass(frozen=True)
class IdealImageConfig:
    """The settings of :func:`ideal_class_image` a command line or a page chooses (its keyword defaults)."""

    steps: int = setting(100, "gradient-ascent steps", minimum=1, offered=(20, 300))
    lr: float = setting(0.05, "learning rate of the ascent", above=0, label="learning rate")
    tv_weight: float = setting(1000.0, "total-variation penalty (smoothness)", minimum=0, label="tv weight")
    l2_weight: float = setting(100.0, "penalty on the distance from mid-grey", minimum=0, label="l2 weight")
    seed: int = setting(0, "seed of the starting noise and of the shifts")
    snapshot_every: int = setting(10, "keep an image every this many steps", minimum=1)


_IDEAL = IdealImageConfig()
# The settings the ``ideal`` command takes.
IDEAL_SETTINGS = ("steps", "tv_weight", "seed")


def ideal_args(config: IdealImageConfig, run_dir, class_name: str, out) -> list[str]:
    """``tlcore ideal`` arguments that grow ``class_name``'s image for ``run_dir`` into the folder ``out``."""
    check_settings(config)
    return ["ideal", as_positional(run_dir), f"--class={class_name}", f"--out={out}",
            *to_options(config, IDEAL_SETTINGS)]


def ideal_class_image(model, class_index: int, steps: int = _IDEAL.steps, lr: float = _IDEAL.lr,
                      tv_weight: float = _IDEAL.tv_weight, l2_weight: float = _IDEAL.l2_weight,
                      jitter: int | None = None, size: int | None = None, seed: int = _IDEAL.seed,
                      snapshot_every: int = _IDEAL.snapshot_every, on_step: Callable[[int, dict], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> dict:
    """An image the model finds typical of ``class_index``, grown from faint noise by gradient ascent.

    Minimises ``-logit + tv_weight * TV + l2_weight * L2``: the class logit
    (not the probability, which saturates), the total variation TV (mean
    absolute difference between neighbouring pixels on the 0..1 scale, see
    :func:`total_variation`) and L2, the mean squared distance of pixels
    from mid-grey (0..1 scale). Without the TV penalty the ascent finds
    high-frequency noise that moves the logit; with it, smooth patterns
    the model associates with the class. Both penalties are means over
    pixels, hence the large weights; the defaults suit ImageNet backbones
    with a trained head. Each step also shifts the image by up to
    ``jitter`` pixels (default: 1/28 of its side; 0 for none), so that
    patterns must work wherever they sit, which gives larger shapes.

    Pixels are ``255 * sigmoid(v)``, ``v`` optimised by Adam (learning rate
    ``lr``) from Gaussian noise drawn with ``seed``: they always stay in
    0..255 and the same arguments give the same image. ``size`` is the side
    of the image optimised (default: the model's input size); another size
    is resized (bilinear) to the model's input inside the graph.

    ``on_step(step, logs)`` is called for steps 0, 1, ... ``steps``: step
    ``s`` describes the image after ``s`` updates (as shifted for the
    update it made) with ``loss``, ``class_score`` (the logit),
    ``probability`` and ``tv``, plus ``image`` (``uint8``) every
    ``snapshot_every`` steps and at the last step, which is the result
    unshifted. ``should_stop()`` returning true ends the ascent early
    (the image so far is the result).

    Returns ``{"image": uint8 (size, size, 3), "history": [logs without
    images], "snapshots": [(step, uint8 image), ...], "class_index": int}``.
    """
    import tensorflow as tf

    classifier, backbone, _ = _parts(model)
    logits_fn = logits_function(classifier)
    class_index = _check_class(class_index, _n_classes(classifier))
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise TLError(f"steps must be a whole number of at least 1; got {steps!r}")
    if not float(lr) > 0:
        raise TLError(f"the learning rate must be positive; got {lr}")
    if float(tv_weight) < 0 or float(l2_weight) < 0:
        raise TLError(f"penalty weights cannot be negative; got tv_weight={tv_weight}, l2_weight={l2_weight}")
    if int(snapshot_every) < 1:
        raise TLError(f"snapshot_every must be at least 1; got {snapshot_every}")
    model_hw = tuple(backbone.input_shape[1:3])
    if size is None:
        if None in model_hw:
            raise TLError("this model takes images of any size; pass size")
        hw = model_hw
    else:
        if int(size) < 8:
            raise TLError(f"size must be at least 8 pixels; got {size}")
        hw = (int(size), int(size))
    jitter = max(1, hw[0] // 28) if jitter is None else int(jitter)
    if jitter < 0:
        raise TLError(f"jitter is a shift in pixels, 0 or more; got {jitter}")

    # Faint noise (pixels about 128 +- 6): strong noise would take most of the steps to smooth away.
    v = keras.Variable(np.random.default_rng(seed).normal(0.0, 0.1, (1, *hw, 3)).astype(np.float32),
                       name="ideal_image_logits")
    optimizer = keras.optimizers.Adam(learning_rate=float(lr))
    optimizer.build([v])
    shifts = tf.random.Generator.from_seed(seed)
    tv_w, l2_w = tf.constant(float(tv_weight)), tf.constant(float(l2_weight))

    def evaluate(v, shift=True):
        x = 255.0 * tf.sigmoid(v)
        model_x = x if hw == model_hw or None in model_hw else tf.image.resize(x, model_hw, method="bilinear")
        if jitter and shift:
            # A roll wraps around; the backbones pool globally, so only the position changes.
            model_x = tf.roll(model_x, shift=shifts.uniform([2], -jitter, jitter + 1, dtype=tf.int32), axis=[1, 2])
        logits = logits_fn(model_x)
        score = logits[0, class_index]
        u = x / 255.0
        tv = tf.reduce_mean(tf.abs(u[:, 1:] - u[:, :-1])) + tf.reduce_mean(tf.abs(u[:, :, 1:] - u[:, :, :-1]))
        loss = -score + tv_w * tv + l2_w * tf.reduce_mean(tf.square(u - 0.5))
        return loss, score, tf.nn.softmax(logits[0])[class_index], tv, x

    # Compiled once per call (a second or two of tracing), then each step is one graph run.
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out = evaluate(v.value)
        optimizer.apply_gradients([(tape.gradient(out[0], v.value), v)])
        return out

    history, snapshots = [], []
    s = 0
    while True:
        last = s == steps or (s > 0 and should_stop is not None and should_stop())
        # Step s reports on the image after s updates while making update s + 1; the last makes none.
        loss, score, prob, tv, x = evaluate(v.value, shift=False) if last else step()
        logs = {"loss": float(loss), "class_score": float(score), "probability": float(prob), "tv": float(tv)}
        history.append(dict(logs))
        if s % int(snapshot_every) == 0 or last:
            snapshots.append((s, _to_uint8(x)))
            logs["image"] = snapshots[-1][1]
        if on_step:
            on_step(s, logs)
        if last:
            break
        s += 1
    return {"image": snapshots[-1][1], "history": history, "snapshots": snapshots, "class_index": class_index}


def _to_uint8(x) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x)[0]), 0, 255).astype(np.uint8)
