"""Run directories: save_run / load_run round trips, atomic replacement, damaged runs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import make_image_folder
from tlcore import __version__
from tlcore.io.errors import TLError
from tlcore.data.images import load_image
from tlcore.models.classifier import build_classifier, build_head
from tlcore.backbones.registry import create_backbone
from tlcore.models.run import RunModel, load_run, save_run

BACKBONE = "efficientnet_lite0"
SIZE = 64  # a small input keeps these tests fast; the run records it and load_run honours it
CLASSES = ["blue", "red"]


def make_model(seed: int, n_classes: int = len(CLASSES), dropout: float = 0.3) -> keras.Model:
    """A classifier whose weights are all perturbed, so its outputs depend on every weight."""
    keras.utils.set_random_seed(seed)
    backbone = create_backbone(BACKBONE, weights=None, input_shape=(SIZE, SIZE, 3))
    model = build_classifier(backbone, build_head(1280, n_classes, dropout))
    rng = np.random.default_rng(seed)
    for var in model.weights:
        value = np.asarray(var.numpy())
        if "variance" in var.path:
            new = rng.uniform(0.5, 1.5, value.shape)
        elif "head_dense" in var.path:
            new = np.zeros(value.shape)  # set from the feature scale below
        else:
            new = value + rng.normal(0, 0.2, value.shape)
        var.assign(new.astype(np.float32))
    # Scale the head to the features so that logits are of order 1 (probabilities not saturated),
    # whatever scale the perturbed random backbone produces.
    x = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    features = np.asarray(model.get_layer(BACKBONE)(x, training=False))
    kernel = model.get_layer("head").get_layer("head_dense").kernel
    scale = 1.0 / (features.std() * np.sqrt(features.shape[1]) + 1e-12)
    kernel.assign(rng.normal(0, scale, kernel.shape).astype(np.float32))
    return model


def run_config(**extra):
    return {"backbone": BACKBONE, "weights": "None", "input_size": SIZE,
            "train": {"dropout": 0.3, "epochs": 1}, "fine_tuned": False, **extra}


METRICS = {"val_accuracy": 0.75, "history": [{"epoch": 1, "loss": 0.5}]}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = make_image_folder(tmp_path_factory.mktemp("imgs"), n_per_class=3)
    return sorted(str(p) for p in folder.rglob("*.png"))


@pytest.fixture(scope="module")
def model():
    return make_model(seed=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model):
    """One saved run shared by the module (building Lite0 takes seconds); copy it before damaging it."""
    return save_run(tmp_path_factory.mktemp("runs") / "r1", model, CLASSES, run_config(), METRICS)


@pytest.fixture(scope="module")
def loaded(saved):
    return load_run(saved)


@pytest.fixture
def run_copy(tmp_path, saved):
    return Path(shutil.copytree(saved, tmp_path / "run"))


def direct_probs(model, paths, batch_size=None):
    """The model's own probabilities for ``paths``, in batches of ``batch_size`` (default: one batch).

    Compare a run's predictions with these at its own batch size: a convolution's rounding depends on the
    batch and the thread count (seen: 2e-3 between batches of 4 and 6 on one core), the round trip does not.
    """
    x = np.stack([load_image(p, SIZE) for p in paths]).astype(np.float32)
    step = batch_size or len(x)
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + step])) for i in range(0, len(x), step)])


def test_save_then_load_round_trip(saved, loaded, model, images):
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "labels.txt", "metrics.json", "model.weights.h5"]
    assert (saved / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES
    config = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    assert config == {**run_config(), "classes": CLASSES, "tlcore_version": __version__}
    assert json.loads((saved / "metrics.json").read_text(encoding="utf-8")) == METRICS

    assert isinstance(loaded, RunModel)
    assert loaded.classes == CLASSES
    assert loaded.spec.name == BACKBONE
    assert loaded.config["input_size"] == SIZE
    probs, kept, skipped = loaded.predict_files(images, batch_size=4)
    assert kept == list(range(len(images))) and skipped == []
    expected = direct_probs(model, images, batch_size=4)
    np.testing.assert_allclose(probs, expected, atol=1e-5)  # the same weights, the same batches
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The check has teeth: the outputs vary by image and a model with other weights disagrees.
    assert np.ptp(expected[:, 0]) > 0.05
    assert not np.allclose(direct_probs(make_model(seed=2), images), expected, atol=0.02)


def test_save_returns_the_run_dir_and_creates_parents(tmp_path, model):
    out = save_run(tmp_path / "a" / "b" / "run", model, CLASSES, run_config(), {})
    assert out == tmp_path / "a" / "b" / "run"
    assert (out / "model.weights.h5").is_file()


def test_save_over_existing_run_replaces_it(run_copy, images):
    parent = run_copy.parent
    (run_copy / "stale.txt").write_text("from the old run")
    classes = ["c", "a", "b"]  # not sorted: labels.txt is the output order
    new_model = make_model(seed=3, n_classes=3)
    save_run(run_copy, new_model, classes, run_config(), {"version": 2})

    assert [p.name for p in parent.iterdir()] == ["run"]  # no .tmp- or .old- directories left
    assert not (run_copy / "stale.txt").exists()
    assert (run_copy / "labels.txt").read_text().splitlines() == classes
    assert json.loads((run_copy / "metrics.json").read_text()) == {"version": 2}
    run = load_run(run_copy)
    assert run.classes == classes
    probs, _, _ = run.predict_files(images)
    np.testing.assert_allclose(probs, direct_probs(new_model, images), atol=2e-4)


def test_failed_save_keeps_old_run_and_leaves_no_temp_dir(run_copy):
    parent = run_copy.parent
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}

    class Broken:
        def save_weights(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_run(run_copy, Broken(), ["x", "y"], run_config(), {"version": 2})
    assert [p.name for p in parent.iterdir()] == ["run"]
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


def test_load_missing_dir_is_a_user_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(TLError, match="not a run directory") as info:
        load_run(missing)
    assert str(missing) in str(info.value)


def test_load_folder_that_is_not_a_run(tmp_path, image_folder):
    with pytest.raises(TLError, match="not a run directory") as info:
        load_run(image_folder)
    assert str(image_folder) in str(info.value)


def test_load_run_without_weights_file(run_copy):
    (run_copy / "model.weights.h5").unlink()
    with pytest.raises(TLError, match="not a run directory"):
        load_run(run_copy)


@pytest.mark.parametrize("damage", ["not json {", json.dumps({"classes": ["a", "b"]}), json.dumps({"backbone": BACKBONE})])
def test_load_damaged_config(run_copy, damage):
    (run_copy / "config.json").write_text(damage)
    with pytest.raises(TLError, match="damaged") as info:
        load_run(run_copy)
    assert "config.json" in str(info.value)


def test_load_config_with_unknown_backbone(run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "backbone": "resnet9000"}))
    with pytest.raises(TLError, match="resnet9000"):
        load_run(run_copy)


def test_load_weights_that_do_not_fit_config(run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    config["classes"] = ["a", "b", "c"]  # the saved head has 2 outputs
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(TLError, match="do not match") as info:
        load_run(run_copy)
    assert str(run_copy) in str(info.value)
    assert "\n" not in str(info.value)  # one sentence, not Keras's tensor dump


def test_load_garbage_weights_file(run_copy):
    (run_copy / "model.weights.h5").write_bytes(b"garbage")
    with pytest.raises(TLError, match="cannot be read"):
        load_run(run_copy)


def test_predict_files_skips_broken_files(tmp_path, loaded, model, images):
    run = loaded
    text = tmp_path / "text.png"
    text.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    paths = [str(text), images[0], str(missing), images[1], images[2], str(empty)]
    probs, kept, skipped = run.predict_files(paths, batch_size=2)
    assert kept == [1, 3, 4]
    assert sorted(s["path"] for s in skipped) == sorted([str(text), str(missing), str(empty)])
    assert all(s["reason"] for s in skipped)
    # Each batch of two paths holds one readable photo, which the model then sees alone.
    np.testing.assert_allclose(probs, direct_probs(model, [paths[i] for i in kept], batch_size=1), atol=1e-5)


def test_predict_files_with_nothing_readable(tmp_path, loaded):
    run = loaded
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    probs, kept, skipped = run.predict_files([str(bad)])
    assert probs.shape == (0, len(CLASSES))
    assert kept == [] and [s["path"] for s in skipped] == [str(bad)]
