"""The backbone registry: names, specs, building, weights sources and their errors."""
from __future__ import annotations

import socket
import urllib.error
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.backend import config as keras_config
from keras.src.utils import file_utils

from tlcore.io.errors import TLError
from tlcore.backbones.registry import DEFAULT_BACKBONE, create_backbone, get_spec, list_backbones

EXPECTED = [
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_v2_b0",
    "resnet50", "resnet50_v2", "vgg16", "vgg19", "xception", "inception_v3", "densenet121", "convnext_tiny",
]
ALL = list_backbones()
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def pixels(n=2, size=224, seed=0):
    """A batch of float pixels in the uint8 range, as the app feeds them."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


def weights_equal(a: keras.Model, b: keras.Model) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))


# --- names and specs -------------------------------------------------------------------------


def test_default_first_and_expected_names_present():
    assert DEFAULT_BACKBONE == "efficientnet_lite0"
    assert ALL[0] == DEFAULT_BACKBONE
    assert set(EXPECTED) <= set(ALL)
    assert len(ALL) == len(set(ALL))
    assert ALL[1:] == sorted(ALL[1:])


@pytest.mark.parametrize("name", ALL)
def test_spec_fields(name):
    spec = get_spec(name)
    assert spec.name == name
    assert spec.offline is (name == "efficientnet_lite0")
    assert 0 < spec.imagenet_top1 < 1
    assert spec.params > 0 and spec.size_mb > 0 and spec.feature_dim > 0
    assert spec.input_size >= 32
    assert spec.preprocessing in ("none", "tf", "torch", "caffe", "lite")
    assert spec.display_name and spec.weights_source


@pytest.mark.parametrize("bad", ["resnet51", "", "EfficientNet_Lite0", "efficientnet-lite0"])
def test_unknown_backbone_is_a_tlerror_listing_the_choices(bad):
    for call in (lambda: get_spec(bad), lambda: create_backbone(bad, weights=None)):
        with pytest.raises(TLError) as info:
            call()
        message = str(info.value)
        assert repr(bad) in message
        assert all(name in message for name in ALL)
        assert "\n" not in message


def test_unknown_pooling_is_a_tlerror():
    with pytest.raises(TLError, match="'mean'"):
        create_backbone("efficientnet_lite0", weights=None, pooling="mean")


# --- building every registered backbone ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_backbone_builds_with_its_spec_shapes(name):
    spec = get_spec(name)
    model = create_backbone(name, weights=None)
    assert model.input_shape == (None, spec.input_size, spec.input_size, 3)
    assert model.output_shape == (None, spec.feature_dim)
    # The spec's normalisation is the first thing the graph does.
    preprocess = [layer for layer in model.layers if type(layer).__name__ == "Preprocess"]
    assert len(preprocess) == 1 and preprocess[0].mode == spec.preprocessing


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v3_small", "vgg16"])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_forward_pass_gives_finite_features(name, pooling, seed):
    spec = get_spec(name)
    model = create_backbone(name, weights=None, input_shape=(96, 96, 3), pooling=pooling)
    out = np.asarray(model(pixels(3, 96)))
    assert out.shape == (3, spec.feature_dim)
    assert np.isfinite(out).all()
    # different images, different features (random-weight features can be tiny: compare relatively)
    assert np.abs(out[0] - out[1]).max() > 1e-3 * np.abs(out).max() > 0


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2", "resnet50_v2"])
def test_pooling_none_gives_feature_maps(name):
    spec = get_spec(name)
    model = create_backbone(name, weights=None, input_shape=(128, 128, 3), pooling=None)
    shape = model.output_shape
    assert len(shape) == 4 and shape[0] is None and shape[-1] == spec.feature_dim
    assert shape[1] == shape[2] == 4  # every one of these downsamples by 32


@pytest.mark.parametrize("name, least", [("xception", 71), ("inception_v3", 75)])
def test_an_input_too_small_for_the_architecture_is_a_tlerror(name, least):
    with pytest.raises(TLError) as info:
        create_backbone(name, weights=None, input_shape=(64, 64, 3))
    assert str(info.value) == (f"backbone {name!r} cannot take 64x64 pixel inputs "
                               f"(input size must be at least {least}x{least})")


@pytest.mark.parametrize("text", ["none", "None", "random", "SCRATCH"])
def test_none_like_strings_mean_random_weights(text):
    model = create_backbone("efficientnet_lite0", weights=text, input_shape=(64, 64, 3))
    assert model.output_shape == (None, 1280)


# --- ImageNet weights without network -----------------------------------------------------------


@pytest.fixture
def offline_keras(monkeypatch, tmp_path):
    """Keras's cache is an empty temporary folder and every download fails; records the URLs."""
    home = tmp_path / "keras-home"
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    urls = []

    def no_network(url, *args, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    def no_socket(self, *args, **kwargs):  # a safety net should Keras ever fetch another way
        raise OSError("network disabled in tests")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_socket)
    return urls


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg16", "efficientnet_b0"])
def test_offline_imagenet_download_is_a_tlerror_naming_the_file(offline_keras, tmp_path, name):
    real_cache = Path.home() / ".keras" / "models"
    before = sorted(real_cache.iterdir()) if real_cache.is_dir() else []
    with pytest.raises(TLError) as info:
        create_backbone(name, weights="imagenet")
    message = str(info.value)
    assert len(offline_keras) == 1 and offline_keras[0].endswith(".h5")
    filename = offline_keras[0].rsplit("/", 1)[1]
    assert filename in message
    assert "~/.keras/models" in message
    assert name in message and "efficientnet_lite0" in message
    assert "\n" not in message
    assert (sorted(real_cache.iterdir()) if real_cache.is_dir() else []) == before  # real cache untouched
    assert not (tmp_path / "keras-home" / "models" / filename).exists()  # no partial download left


def test_http_error_is_reported_the_same_way(monkeypatch, tmp_path):
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras-home"))

    def forbidden(url, *args, **kwargs):
        raise urllib.error.HTTPError(url, 403, "Forbidden", {}, None)

    monkeypatch.setattr(file_utils, "urlretrieve", forbidden)
    with pytest.raises(TLError, match=r"mobilenet_v3_small\S*\.h5 in ~/\.keras/models"):
        create_backbone("mobilenet_v3_small", weights="imagenet")


def test_lite0_imagenet_needs_no_network(offline_keras):
    model = create_backbone("efficientnet_lite0", weights="imagenet", input_shape=(64, 64, 3))
    assert model.output_shape == (None, 1280)
    assert offline_keras == []


# --- user weights files ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name, as_path", [("efficientnet_lite0", str), ("mobilenet_v3_small", Path)])
def test_weights_file_round_trip(tmp_path, name, as_path):
    keras.utils.set_random_seed(1)
    original = create_backbone(name, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / f"{name}.weights.h5"
    original.save_weights(str(path))
    keras.utils.set_random_seed(2)  # a different initialisation: equality below comes from the file
    loaded = create_backbone(name, weights=as_path(path), input_shape=(64, 64, 3))
    assert weights_equal(original, loaded)
    x = pixels(2, 64)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(original(x)), rtol=1e-5, atol=0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # Keras warns once per unmatched layer
def test_weights_file_of_another_architecture_is_a_tlerror(tmp_path):
    other = create_backbone("mobilenet_v3_small", weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "small.weights.h5"
    other.save_weights(str(path))
    with pytest.raises(TLError) as info:
        create_backbone("efficientnet_lite0", weights=str(path), input_shape=(64, 64, 3))
    message = str(info.value)
    assert "small.weights.h5" in message and "efficientnet_lite0" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v3_small"])
def test_missing_weights_file_is_a_tlerror(tmp_path, name):
    missing = tmp_path / "nothing.weights.h5"
    with pytest.raises(TLError, match="nothing.weights.h5.*does not exist"):
        create_backbone(name, weights=str(missing), input_shape=(64, 64, 3))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v3_small"])
@pytest.mark.parametrize("filename", ["weights.npz", "model.keras", "weights.txt"])
def test_weights_file_with_a_bad_extension_is_a_tlerror(tmp_path, name, filename):
    path = tmp_path / filename
    path.write_bytes(b"not weights")
    with pytest.raises(TLError, match=f"{filename}.*not a Keras weights file"):
        create_backbone(name, weights=str(path), input_shape=(64, 64, 3))


def test_corrupt_weights_file_is_a_tlerror(tmp_path):
    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"this is not HDF5")
    with pytest.raises(TLError, match="broken.weights.h5"):
        create_backbone("mobilenet_v3_small", weights=str(path), input_shape=(64, 64, 3))


# --- the architecture must not depend on where the weights came from ---------------------------------


def fake_imagenet_loading(patch) -> list:
    """Keras's ImageNet loading without the file: the input Normalization gets ImageNet statistics.

    Everything else keeps its (seeded) initial values, so two builds after the
    same seed get the same "ImageNet" weights. Returns the list of loaded paths.
    """
    loads = []

    def load_weights(self, path, *args, **kwargs):
        loads.append(path)
        for layer in self.layers:
            if isinstance(layer, keras.layers.Normalization) and getattr(layer, "adapt_mean", None) is not None:
                layer.adapt_mean.assign(IMAGENET_MEAN)
                layer.adapt_variance.assign(IMAGENET_STD**2)
                layer.finalize_state()

    patch.setattr(file_utils, "get_file", lambda *args, **kwargs: "fake-imagenet.h5")
    patch.setattr(keras.Model, "load_weights", load_weights)
    return loads


@pytest.mark.slow
@pytest.mark.parametrize("name, constructor", [("efficientnet_b0", "EfficientNetB0")])
def test_imagenet_backbone_survives_a_weights_round_trip(tmp_path, monkeypatch, name, constructor):
    """A run saved after ImageNet initialisation is reloaded on a weights=None build (see run.load_run).

    Keras's EfficientNetB* add a layer only when loading ImageNet weights; the
    backbone must still compute Keras's ImageNet function and survive the reload.
    """
    shape = (64, 64, 3)
    with monkeypatch.context() as patch:
        loads = fake_imagenet_loading(patch)
        keras.utils.set_random_seed(3)
        reference = getattr(keras.applications, constructor)(
            include_top=False, weights="imagenet", input_shape=shape, pooling="avg"
        )
        keras.utils.set_random_seed(3)
        model = create_backbone(name, weights="imagenet", input_shape=shape)
    assert loads == ["fake-imagenet.h5"] * 2  # both builds went through Keras's ImageNet path
    x = pixels(2, 64)
    want = np.asarray(reference(x))
    scale = np.abs(want).max()
    assert scale > 0

    def check(m):
        np.testing.assert_allclose(np.asarray(m(x)), want, rtol=1e-4, atol=1e-4 * scale)

    check(model)
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(str(path))
    rebuilt = create_backbone(name, weights=None, input_shape=shape)
    rebuilt.load_weights(str(path))
    check(rebuilt)
    check(create_backbone(name, weights=str(path), input_shape=shape))


@pytest.mark.slow
def test_lite0_imagenet_backbone_survives_a_weights_round_trip(tmp_path):
    model = create_backbone("efficientnet_lite0", weights="imagenet", input_shape=(96, 96, 3))
    path = tmp_path / "lite0.weights.h5"
    model.save_weights(str(path))
    rebuilt = create_backbone("efficientnet_lite0", weights=None, input_shape=(96, 96, 3))
    rebuilt.load_weights(str(path))
    assert weights_equal(model, rebuilt)
    x = pixels(2, 96)
    np.testing.assert_allclose(np.asarray(rebuilt(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
