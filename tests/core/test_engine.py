"""The embedding engine: TFLite copy of a frozen backbone, its cache and fallback; prefetching extraction."""
from __future__ import annotations

import logging
import threading

import keras
import numpy as np
import pytest

from tests.conftest import CLASS_COLOURS, make_image_folder, write_image
from tlcore.training import engine, features
from tlcore.training.engine import TFLiteEncoder, engine_path, fast_encoder, keras_encoder
from tlcore.io.errors import TLError
from tlcore.training.features import FeatureCache, extract_features
from tlcore.data.images import load_image
from tlcore.backbones.preprocessing import Preprocess

SIZE = 16
KEY = "tiny|imagenet"


def tiny_backbone() -> keras.Model:
    """A backbone shaped like the real ones (pixels 0..255 in, pooled features out), small enough to convert fast."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = Preprocess("lite")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x)


class Builds:
    """``get_backbone`` stand-in that counts how often the backbone is asked for."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self):
        self.calls += 1
        return self.model


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


@pytest.fixture(scope="module")
def tiny_tflite(backbone):
    return engine.convert_backbone(backbone)


@pytest.fixture
def conversions(monkeypatch, tiny_tflite):
    """Replace the (seconds-long) conversion by the module's converted bytes, counting calls."""
    calls = []

    def convert(model):
        calls.append(model)
        return tiny_tflite

    monkeypatch.setattr(engine, "convert_backbone", convert)
    return calls


def generated_batch(tmp_path, n=6):
    paths = []
    rng = np.random.default_rng(3)
    for k in range(n):
        colour = list(CLASS_COLOURS.values())[k % 3]
        paths.append(write_image(tmp_path / f"img{k}.png", colour, size=40, rng=rng))
    return np.stack([load_image(p, SIZE) for p in paths])


# The engine --------------------------------------------------------------------------------

def test_converted_backbone_matches_keras(tmp_path, backbone):
    batch = generated_batch(tmp_path)
    encoder = fast_encoder(Builds(backbone), KEY, SIZE)
    assert isinstance(encoder, TFLiteEncoder)
    got = encoder(batch)
    ref = keras_encoder(backbone)(batch)
    assert got.shape == ref.shape == (len(batch), 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert engine_path(KEY, SIZE).is_file()


def test_engine_file_is_cached_and_reused_without_building_the_backbone(backbone, conversions):
    first, phases = Builds(backbone), []
    enc1 = fast_encoder(first, KEY, SIZE, on_phase=lambda phase, **counts: phases.append((phase, len(conversions))))
    assert len(conversions) == 1 and first.calls == 1
    assert phases == [("preparing", 0)]  # said before the conversion (issue 17, item 5)
    path = engine_path(KEY, SIZE)
    assert path.is_file() and path.parent.name == "engines"
    assert not list(path.parent.glob("*.tmp"))  # written atomically

    second = Builds(backbone)
    enc2 = fast_encoder(second, KEY, SIZE, on_phase=lambda phase, **counts: phases.append(phase))
    assert len(conversions) == 1 and second.calls == 0
    assert phases == [("preparing", 0)]  # once for this machine: nothing to prepare the second time
    x = np.full((2, SIZE, SIZE, 3), 90, np.uint8)
    np.testing.assert_array_equal(enc1(x), enc2(x))


def test_engine_key_separates_weights_and_sizes(isolated_cache):
    paths = {engine_path(k, s) for k in ("a|imagenet", "a|file:00", "b|imagenet") for s in (16, 224)}
    assert len(paths) == 6
    assert all(p.parent == isolated_cache / "engines" and p.suffix == ".tflite" for p in paths)
    assert engine_path(None, 224) is None


def test_random_weights_use_keras_and_cache_nothing(backbone, conversions, isolated_cache):
    encoder = fast_encoder(Builds(backbone), None, SIZE)
    assert not isinstance(encoder, TFLiteEncoder)
    assert conversions == []
    assert not (isolated_cache / "engines").exists()
    x = np.full((1, SIZE, SIZE, 3), 30, np.uint8)
    np.testing.assert_allclose(encoder(x), backbone.predict_on_batch(x.astype(np.float32)), rtol=1e-6)


def test_failed_conversion_falls_back_to_keras(monkeypatch, backbone, caplog):
    def broken(model):
        raise TLError("conversion to tflite-float32 failed (unsupported op)")

    monkeypatch.setattr(engine, "convert_backbone", broken)
    with caplog.at_level(logging.WARNING, logger="tlcore"):
        encoder = fast_encoder(Builds(backbone), KEY, SIZE)
    assert not isinstance(encoder, TFLiteEncoder)
    assert "using Keras" in caplog.text
    assert not engine_path(KEY, SIZE).exists()
    x = np.full((2, SIZE, SIZE, 3), 200, np.uint8)
    np.testing.assert_allclose(encoder(x), backbone.predict_on_batch(x.astype(np.float32)), rtol=1e-6)


def test_engine_that_disagrees_with_keras_is_not_used(monkeypatch, backbone, conversions, caplog):
    monkeypatch.setattr(engine, "_agrees", lambda *args: 0.5)
    with caplog.at_level(logging.WARNING, logger="tlcore"):
        encoder = fast_encoder(Builds(backbone), KEY, SIZE)
    assert not isinstance(encoder, TFLiteEncoder)
    assert "differs from Keras" in caplog.text
    assert not engine_path(KEY, SIZE).exists()


def test_damaged_engine_file_is_converted_again(backbone, conversions):
    path = engine_path(KEY, SIZE)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a flatbuffer")
    encoder = fast_encoder(Builds(backbone), KEY, SIZE)
    assert isinstance(encoder, TFLiteEncoder)
    assert len(conversions) == 1
    assert path.read_bytes()[4:8] == b"TFL3"


@pytest.mark.slow
def test_lite0_engine_matches_keras_on_generated_images(tmp_path, lite0_engine_cached):
    """Lite0's ImageNet engine, as ``convert_backbone`` made it for this run's cache (tests/conftest.py), and
    as ``fast_encoder`` then serves it: the conversion branch itself is tested on the tiny backbone above."""
    from tlcore.backbones.registry import create_backbone

    model = create_backbone("efficientnet_lite0", weights="imagenet")
    rng = np.random.default_rng(0)
    paths = [write_image(tmp_path / f"{k}.jpg", rng.integers(0, 256, 3), size=300, rng=rng) for k in range(16)]
    batch = np.stack([load_image(p, 224) for p in paths])
    builds = Builds(model)
    encoder = fast_encoder(builds, "efficientnet_lite0|imagenet", 224)
    assert isinstance(encoder, TFLiteEncoder) and builds.calls == 0
    got, ref = encoder(batch), keras_encoder(model)(batch)
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-3
    # What matters downstream: a linear head on either set of features makes the same predictions.
    head = rng.normal(size=(ref.shape[1], 10)).astype(np.float32)
    np.testing.assert_array_equal((got @ head).argmax(1), (ref @ head).argmax(1))


# extract_features with prefetching -------------------------------------------------------

def mean_encoder(batch):
    return batch.reshape(len(batch), -1, 3).mean(axis=1)


@pytest.fixture
def mixed_paths(tmp_path):
    folder = make_image_folder(tmp_path / "data", n_per_class=6)
    good = sorted(str(p) for p in folder.rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(open(good[0], "rb").read()[:70])
    missing = tmp_path / "missing.png"
    return good[:5] + [str(broken)] + good[5:9] + [str(missing)] + good[9:], {str(broken), str(missing)}


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_prefetch_gives_the_same_result_as_one_batch_at_a_time(monkeypatch, tmp_path, mixed_paths, prefetch):
    paths, bad = mixed_paths
    expected = np.stack([mean_encoder(load_image(p, SIZE)[None])[0] for p in paths if p not in bad])
    monkeypatch.setattr(features, "PREFETCH_BATCHES", prefetch)
    events = []
    res = extract_features(paths, "k", lambda: mean_encoder, SIZE, FeatureCache(tmp_path / f"c{prefetch}"),
                           batch_size=3, on_progress=lambda d, t: events.append(d))
    assert [paths[i] for i in res.kept] == [p for p in paths if p not in bad]
    assert sorted(s["path"] for s in res.skipped) == sorted(bad)
    np.testing.assert_allclose(res.features, expected, atol=1e-4)
    assert events == sorted(events) and events[-1] == len(paths)
    assert (res.cache_hits, res.computed) == (0, len(paths) - len(bad))


def test_engine_extraction_runs_on_one_thread_copies_and_matches_the_engine(monkeypatch, tmp_path, mixed_paths,
                                                                           backbone, conversions):
    """A TFLite engine is copied per extraction thread (``replicas``): the features are the engine's own on the
    same decoded photos, skipped files are reported, and the copies really are independent one-thread engines."""
    paths, bad = mixed_paths
    encoder = fast_encoder(Builds(backbone), KEY, SIZE)
    made, original = [], TFLiteEncoder.replicas
    monkeypatch.setattr(TFLiteEncoder, "replicas", lambda self, n: made.extend(original(self, n)) or made[-n:])
    res = extract_features(paths, "k", lambda: encoder, SIZE, FeatureCache(tmp_path / "c"))
    good = [p for p in paths if p not in bad]
    assert [paths[i] for i in res.kept] == good
    assert sorted(s["path"] for s in res.skipped) == sorted(bad)
    assert len(made) == features._decode_workers() and all(m is not encoder for m in made)
    assert all(m.interpreter is not encoder.interpreter for m in made)
    expected = encoder(np.stack([load_image(p, SIZE) for p in good]))
    np.testing.assert_allclose(res.features, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_next_batch_decodes_while_the_encoder_runs(tmp_path):
    folder = make_image_folder(tmp_path / "data", n_per_class=8, size=8)
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    bs = 4
    decoded = []
    cond = threading.Condition()
    overlapped, encoded = [], [0]

    def transform(image, sha):
        with cond:
            decoded.append(sha)
            cond.notify_all()
        return image

    def encoder(batch):
        # Batch k is being encoded (a slice of it: the encoder gets photos as they are decoded): batch k+1 must
        # finish decoding meanwhile, without our returning.
        k = encoded[0] // bs
        encoded[0] += len(batch)
        target = min(len(paths), (k + 2) * bs)
        with cond:
            overlapped.append(cond.wait_for(lambda: len(decoded) >= target, timeout=20))
        return mean_encoder(batch)

    res = extract_features(paths, None, lambda: encoder, SIZE, batch_size=bs, transform=transform)
    assert len(res.kept) == len(paths)
    assert overlapped and all(overlapped)


def test_decoded_images_alive_stay_bounded_on_a_large_dataset(tmp_path):
    rng = np.random.default_rng(1)
    paths = [str(write_image(tmp_path / "many" / f"{k}.png", (k % 256, 90, 160), size=4, rng=rng))
             for k in range(2000)]
    bs = 16
    lock = threading.Lock()
    state = {"decoded": 0, "encoded": 0, "max_alive": 0}

    def transform(image, sha):
        with lock:
            state["decoded"] += 1
            state["max_alive"] = max(state["max_alive"], state["decoded"] - state["encoded"])
        return image

    def encoder(batch):
        out = mean_encoder(batch)
        with lock:
            state["encoded"] += len(batch)  # extract_features drops the batch once this returns
        return out

    res = extract_features(paths, "k", lambda: encoder, 4, FeatureCache(tmp_path / "c"), batch_size=bs,
                           transform=transform)
    assert res.computed == len(paths) and state["encoded"] == len(paths)
    assert state["max_alive"] <= (1 + features.PREFETCH_BATCHES) * bs


def test_unwritable_cache_still_uses_the_engine(monkeypatch, backbone, conversions):
    def read_only(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(engine, "write_bytes_atomic", read_only)
    assert isinstance(fast_encoder(Builds(backbone), KEY, SIZE), TFLiteEncoder)
    assert not engine_path(KEY, SIZE).exists()
