"""train(): progress, summary, splits, warnings, validation, fine-tuning and the feature cache.

Most tests swap ``tlcore.training.frozen.create_backbone`` for a tiny Keras model, which keeps them fast and
makes their features meaningful: with random weights the real backbones' activations vanish
(about 1e-12 after Lite0's 16 blocks), so nothing would be learnable from them. The real backbone
is used with ``weights=None`` where learning does not matter, and with ImageNet weights in the
tests marked slow.
"""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import tlcore.training.frozen as frozen_mod
from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.io.errors import TLError
from tlcore.models.classifier import unfreeze_top_layers
from tlcore.backbones.registry import create_backbone as real_create_backbone
from tlcore.models.run import load_run
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import ImageBatches, train

SUMMARY_KEYS = {"classes", "n_train", "n_val", "n_test", "val_accuracy", "test_accuracy", "history",
                "seconds", "skipped", "warnings"}


def codes(summary):
    return [w["code"] for w in summary["warnings"]]


def mean_colour_backbone(input_shape):
    """Features = mean RGB in 0..1: three numbers that separate the colour classes."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="avg_pool")(x), name="mean_colour")


def small_conv_backbone(input_shape):
    """Three conv + BatchNorm + ReLU stages: enough structure to fine-tune its top."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    for i, (filters, stride) in enumerate([(8, 4), (16, 4), (16, 2)], start=1):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="avg_pool")(x), name="small_conv")


class BackboneRecorder:
    """Stands in for ``tlcore.training.frozen.create_backbone``: counts builds and keeps each model with a
    snapshot of its weights taken at creation time."""

    def __init__(self, build=None):
        self.build = build
        self.calls = []
        self.models = []
        self.initial = []

    def __call__(self, name, weights="imagenet", input_shape=None, pooling="avg"):
        self.calls.append((name, weights))
        if self.build is None:
            model = real_create_backbone(name, weights=weights, input_shape=input_shape, pooling=pooling)
        else:
            model = self.build(input_shape or (224, 224, 3))
        self.models.append(model)
        self.initial.append({layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers})
        return model


@pytest.fixture
def recorder(monkeypatch):
    def install(build=None):
        rec = BackboneRecorder(build)
        monkeypatch.setattr(frozen_mod, "create_backbone", rec)
        return rec

    return install


def n_images(folder):
    return sum(1 for p in folder.rglob("*") if p.is_file())


# Progress, history and summary ------------------------------------------------------------

def test_train_reports_each_epoch_and_a_complete_summary(image_folder, tmp_path, seed):
    events = []
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=3, split=(0.5, 0.25, 0.25))
    summary = train(image_folder, config, out=tmp_path / "run",
                    on_epoch=lambda epoch, logs: events.append((epoch, logs)))

    assert len(events) == config.epochs
    assert [epoch for epoch, _ in events] == [1, 2, 3]
    for epoch, logs in events:
        assert logs["epoch"] == epoch and logs["phase"] == "head"
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(logs)
        assert all(np.isfinite(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy"))
    assert summary["history"] == [logs for _, logs in events]

    assert SUMMARY_KEYS <= set(summary)
    assert summary["classes"] == ["blue", "red"]
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == n_images(image_folder)
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (8, 4, 4)  # 0.5/0.25/0.25 of 8 per class
    for split in ("train", "val", "test"):
        assert sum(summary["counts"][split].values()) == summary[f"n_{split}"]
        assert summary["counts"][split]["red"] == summary["counts"][split]["blue"]  # stratified
    assert 0 <= summary["val_accuracy"] <= 1 and 0 <= summary["test_accuracy"] <= 1
    assert summary["val"]["n"] == 4 and summary["test"]["n"] == 4
    assert {"extract", "train", "total"} <= set(summary["seconds"])
    assert all(v >= 0 for v in summary["seconds"].values())
    assert summary["seconds"]["total"] >= summary["seconds"]["extract"]
    assert summary["skipped"] == []
    assert "random_weights" in codes(summary)
    assert all(w["message"] for w in summary["warnings"])
    assert summary["features"] == {"cache_hits": 0, "computed": n_images(image_folder)}  # random weights: no cache
    assert summary["fine_tuned_layers"] == []

    # The run directory holds the same summary and reloads with the same classes.
    assert summary["run_dir"] == str(tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["history"] == summary["history"]
    assert metrics["seconds"]["extract"] == summary["seconds"]["extract"]
    run = load_run(tmp_path / "run")
    assert run.classes == summary["classes"]
    assert run.config["train"]["epochs"] == 3 and run.config["fine_tuned"] is False


def test_summary_is_json_serialisable(image_folder, recorder):
    recorder(mean_colour_backbone)
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))
    assert json.loads(json.dumps(summary)) == summary


def test_extract_progress_reaches_total(image_folder, recorder):
    recorder(mean_colour_backbone)
    events = []
    train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1), on_extract=lambda d, t: events.append((d, t)))
    assert events[-1] == (16, 16)
    assert [d for d, _ in events] == sorted(d for d, _ in events)


def test_should_stop_ends_training_early(image_folder, recorder):
    recorder(mean_colour_backbone)
    events = []
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=10, fine_tune_layers=2),
                    on_epoch=lambda e, logs: events.append(e), should_stop=lambda: len(events) >= 2)
    assert events == [1, 2]
    assert len(summary["history"]) == 2
    assert summary["fine_tuned_layers"] == []  # stopping also skips fine-tuning
    assert summary["val_accuracy"] is not None  # still evaluated


# Data problems and splits -------------------------------------------------------------------

def test_corrupt_file_is_skipped_and_training_succeeds(image_folder, recorder):
    recorder(mean_colour_backbone)
    bad = image_folder / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2))
    assert [s["path"] for s in summary["skipped"]] == [str(bad)]
    assert summary["skipped"][0]["reason"]
    assert "skipped_files" in codes(summary)
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == n_images(image_folder) - 1
    assert len(summary["history"]) == 2


def test_train_and_val_folders_give_no_test_split(tmp_path, recorder):
    recorder(mean_colour_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=6, splits=["train", "val"])
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2, split=(0.5, 0.25, 0.25)))
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (12, 12, 0)  # folders win over split
    assert summary["test_accuracy"] is None
    assert summary["test"]["accuracy"] is None
    assert summary["val_accuracy"] is not None
    assert "no_test_split" in codes(summary)


def test_train_and_test_folders_carve_validation_from_train(tmp_path, recorder):
    recorder(mean_colour_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=6, splits=["train", "test"])
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))
    assert summary["n_test"] == 12  # the test folder is never touched
    assert summary["n_val"] >= 2 and summary["n_train"] + summary["n_val"] == 12
    assert all(n >= 1 for n in summary["counts"]["val"].values())


def test_imbalanced_classes_warn(tmp_path, recorder):
    recorder(mean_colour_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=15, classes=("red",))
    make_image_folder(data, n_per_class=4, classes=("blue",), seed=1)
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))
    imbalance = [w for w in summary["warnings"] if w["code"] == "class_imbalance"]
    assert len(imbalance) == 1
    assert "'red'" in imbalance[0]["message"] and "'blue'" in imbalance[0]["message"]
    assert "few_images" in codes(summary)  # blue has fewer than 25 photos, the first data tier


def test_balanced_classes_do_not_warn(tmp_path, recorder):
    recorder(mean_colour_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=25)  # enough to start (tlcore.data.advice)
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))
    assert "class_imbalance" not in codes(summary)
    assert "few_images" not in codes(summary)


def test_high_learning_rate_warns(image_folder, recorder):
    recorder(mean_colour_backbone)
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, lr=0.5))
    assert "high_lr" in codes(summary)


# Invalid settings --------------------------------------------------------------------------

@pytest.mark.parametrize("changes, shown", [
    ({"epochs": 0}, "0"),
    ({"epochs": 2.5}, "2.5"),
    ({"batch_size": 0}, "0"),
    ({"lr": -1.0}, "-1.0"),
    ({"lr": float("nan")}, "nan"),
    ({"dropout": 1.5}, "1.5"),
    ({"dropout": -0.1}, "-0.1"),
    ({"split": (0.5, 0.6, 0.1)}, "0.6"),
    ({"split": (0.0, 0.5, 0.5)}, "split"),
    ({"split": (0.8, 0.2)}, "split"),
    ({"class_weights": "sometimes"}, "sometimes"),
    ({"fine_tune_layers": -1}, "-1"),
    ({"fine_tune_epochs": 0}, "0"),
    ({"fine_tune_lr": 0.0}, "0.0"),
    ({"backbone": "resnet9000"}, "resnet9000"),
    ({"weights": "/nonexistent/weights.h5"}, "/nonexistent/weights.h5"),
])
def test_invalid_config_is_a_user_error_before_any_work(image_folder, recorder, changes, shown):
    rec = recorder(mean_colour_backbone)
    with pytest.raises(TLError) as info:
        train(image_folder, TrainConfig(**{"weights": None, **changes}))
    assert shown in str(info.value)
    assert "\n" not in str(info.value)
    assert rec.calls == []  # nothing was built or extracted


def test_bad_split_is_rejected_even_when_the_data_has_split_folders(tmp_path, recorder):
    rec = recorder(mean_colour_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=3, splits=["train", "val"])
    with pytest.raises(TLError, match="split"):
        train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, split=(0.9, 0.9, 0.9)))
    assert rec.calls == []


@pytest.mark.parametrize("problem", ["missing", "one_class", "empty_class"])
def test_unusable_data_is_a_user_error(tmp_path, recorder, problem):
    recorder(mean_colour_backbone)
    data = tmp_path / "data"
    if problem == "one_class":
        make_image_folder(data, n_per_class=4, classes=("red",))
    elif problem == "empty_class":
        make_image_folder(data, n_per_class=4, classes=("red",))
        (data / "blue").mkdir()
    with pytest.raises(TLError) as info:
        train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))
    message = str(info.value)
    assert {"missing": str(data), "one_class": "'red'", "empty_class": "'blue'"}[problem] in message


def test_class_with_only_broken_files_is_a_user_error(image_folder, recorder):
    recorder(mean_colour_backbone)
    for p in (image_folder / "blue").iterdir():
        p.write_bytes(b"garbage")
    with pytest.raises(TLError, match="'blue'"):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))


# Learning -----------------------------------------------------------------------------------

def test_head_learns_colour_classes(tmp_path, recorder):
    recorder(mean_colour_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=10, classes=("red", "green", "blue"))
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=30, lr=0.05, dropout=0.0, split=(0.6, 0.4, 0.0)))
    history = summary["history"]
    assert len(history) == 30
    assert history[-1]["loss"] < history[0]["loss"] * 0.5
    assert history[-1]["accuracy"] >= 0.9
    assert summary["n_val"] == 12
    assert summary["val_accuracy"] >= 0.9  # chance is 1/3
    assert summary["test_accuracy"] is None


def test_same_seed_gives_same_history(image_folder, recorder):
    recorder(mean_colour_backbone)
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=3, lr=0.01)
    a = train(image_folder, config)
    b = train(image_folder, config)
    assert [h["loss"] for h in a["history"]] == pytest.approx([h["loss"] for h in b["history"]], rel=1e-5)
    assert a["val"]["predictions"] == b["val"]["predictions"]


def test_a_fixed_seed_reproduces_a_random_weight_run_and_another_seed_does_not(tmp_path, recorder):
    # A backbone with weights of its own (unlike the mean-colour one): its random initialisation must follow the seed too.
    rec = recorder(small_conv_backbone)
    data = make_image_folder(tmp_path / "data", n_per_class=6)

    def run(seed):
        summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2, seed=seed, split=(0.5, 0.25, 0.25)))
        return summary["history"], summary["val"], summary["test"]

    first, again, other = run(7), run(7), run(8)
    assert first == again  # the same floats, not merely close
    assert first != other
    same = [np.array_equal(a, b) for a, b in zip(rec.initial[0]["conv1"], rec.initial[1]["conv1"])]
    different = [np.array_equal(a, b) for a, b in zip(rec.initial[0]["conv1"], rec.initial[2]["conv1"])]
    assert all(same) and not all(different)


# Fine-tuning -----------------------------------------------------------------------------------

def bn_state(model):
    return {layer.name: [w.copy() for w in layer.get_weights()]
            for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_fine_tuning_trains_top_layers_and_keeps_batchnorm(image_folder, recorder):
    rec = recorder(small_conv_backbone)
    events = []
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2, fine_tune_layers=1, fine_tune_epochs=2, fine_tune_lr=1e-4,
                         patience=5)
    summary = train(image_folder, config, on_epoch=lambda e, logs: events.append((e, logs["phase"])))

    assert events == [(1, "head"), (2, "head"), (3, "fine_tune"), (4, "fine_tune")]
    assert [h["phase"] for h in summary["history"]] == ["head", "head", "fine_tune", "fine_tune"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(summary["history"][-1])
    # Layers: rescale conv1 bn1 relu1 conv2 bn2 relu2 conv3 bn3 relu3 avg_pool: the one top layer that learns
    # is conv3 (BatchNorm stays frozen, the others have no weights).
    assert summary["fine_tuned_layers"] == ["conv3"]

    (backbone,) = rec.models
    initial = rec.initial[0]
    after = {layer.name: layer.get_weights() for layer in backbone.layers}
    bns = [name for name in after if name.startswith("bn")]
    assert len(bns) == 3
    for name in bns:  # gamma, beta, moving_mean, moving_variance all untouched
        assert not changed(initial[name], after[name]), name
    assert changed(initial["conv3"], after["conv3"])
    assert not changed(initial["conv1"], after["conv1"])
    assert not changed(initial["conv2"], after["conv2"])


# unfreeze_top_layers ---------------------------------------------------------------------------

def tiny_model():
    inputs = keras.Input(shape=(8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="b1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    x = keras.layers.BatchNormalization(name="b2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(3, name="d")(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("k, expected", [
    (0, []),
    (1, ["d"]),  # k counts layers that learn: BatchNorm never, pooling and activations have no weights
    (2, ["c2", "d"]),
    (3, ["c1", "c2", "d"]),
    (100, ["c1", "c2", "d"]),  # all the model has
])
def test_unfreeze_top_layers(k, expected):
    model = tiny_model()
    model.trainable = False
    names = unfreeze_top_layers(model, k)
    assert names == expected
    assert sorted({w.path.split("/")[0] for w in model.trainable_weights}) == sorted(expected)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable
    if k == 0:
        assert model.trainable_weights == []


def test_unfreeze_is_repeatable_with_smaller_k():
    model = tiny_model()
    unfreeze_top_layers(model, 100)
    assert unfreeze_top_layers(model, 1) == ["d"]
    assert not model.get_layer("c1").trainable


# ImageBatches ---------------------------------------------------------------------------------

def test_image_batches_cover_every_file_once_per_epoch(image_folder):
    paths = sorted(str(p) for p in image_folder.rglob("*.png"))
    labels = np.arange(len(paths))
    weights = np.linspace(0.5, 2.0, len(paths)).astype(np.float32)
    batches = ImageBatches(paths, labels, 24, batch_size=5, shuffle_seed=0, sample_weights=weights)
    assert len(batches) == 4
    for _ in range(2):
        seen = []
        for i in range(len(batches)):
            x, y, w = batches[i]
            assert x.dtype == np.float32 and x.shape[1:] == (24, 24, 3) and len(x) == len(y) <= 5
            np.testing.assert_array_equal(w, weights[y])
            seen += y.tolist()
        assert sorted(seen) == labels.tolist()
        batches.on_epoch_end()


# Slow: the real backbone with ImageNet weights -----------------------------------------------------

@pytest.mark.slow
def test_second_run_uses_cached_features_and_never_builds_the_backbone(image_folder, recorder, lite0_engine_cached):
    """With the engine in the cache (as after a server's first run; converting it is test_engine's), training
    never builds the Keras backbone until a run is saved, and a second run reuses the first one's features."""
    rec = recorder()
    config = TrainConfig(weights="imagenet", epochs=3)
    first = train(image_folder, config)
    assert rec.calls == []  # the engine computed the features
    assert first["features"] == {"cache_hits": 0, "computed": 16}
    assert "random_weights" not in codes(first)

    second = train(image_folder, config)
    assert rec.calls == []  # cache hits only: no backbone at all
    assert second["features"] == {"cache_hits": 16, "computed": 0}
    # Same features and seed: the head trains the same whether or not the backbone was built.
    assert [h["loss"] for h in second["history"]] == pytest.approx([h["loss"] for h in first["history"]], rel=1e-4)

    other = train(image_folder, TrainConfig(weights="imagenet", epochs=1, lr=2e-3))
    assert other["features"]["cache_hits"] == 16  # a different head reuses the embeddings

    # Saving a run needs the backbone, once.
    saved = train(image_folder, config, out=image_folder.parent / "run")
    assert len(rec.calls) == 1
    assert saved["features"] == {"cache_hits": 16, "computed": 0}


def test_input_size_builds_the_backbone_at_that_size_and_the_run_keeps_it(image_folder, tmp_path, seed):
    summary = train(image_folder, TrainConfig(weights=None, epochs=2, input_size=64), out=tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert (run.input_size, run.model.input_shape) == (64, (None, 64, 64, 3))
    assert run.config["train"]["input_size"] == 64
    probs, kept, _ = run.predict_files(sorted(str(p) for p in image_folder.rglob("*.png")))
    assert probs.shape == (16, 2) and len(kept) == 16
    assert "small_input" not in codes(summary)  # random weights: nothing was pretrained at 224


def test_each_input_size_has_its_own_cached_features(image_folder, recorder):
    rec = recorder(mean_colour_backbone)

    def computed(**changes):
        return train(image_folder, TrainConfig(weights="imagenet", epochs=1, **changes))["features"]["computed"]

    assert computed() == 16
    assert computed(input_size=64) == 16  # other pixels, other features: the 224-pixel ones are not reused
    assert rec.models[-1].input_shape == (None, 64, 64, 3)
    assert computed(input_size=64) == 0
    assert computed(input_size=224) == 0  # the backbone's own size is the default's cache


def test_a_smaller_input_than_pretraining_warns_and_a_tiny_one_is_refused(image_folder, recorder):
    recorder(mean_colour_backbone)
    summary = train(image_folder, TrainConfig(epochs=1, input_size=32))
    (warning,) = [w for w in summary["warnings"] if w["code"] == "small_input"]
    assert "32 px is smaller than the 224 px" in warning["message"]
    with pytest.raises(TLError, match="input size must be a whole number of pixels from 32 to 1024, got 16"):
        train(image_folder, TrainConfig(weights=None, input_size=16))


@pytest.mark.slow
def test_fine_tuning_imagenet_backbone_changes_top_kernels_only(image_folder, recorder, lite0_engine_cached):
    """The real Lite0 with ten layers fine-tuned: the head's epochs then fine-tuning's on one axis, the ten topmost
    layers with weights trained (BatchNorm not counted: it stays in inference mode and unchanged), nothing below."""
    rec = recorder()  # the real create_backbone, recorded
    config = TrainConfig(weights="imagenet", epochs=2, fine_tune_layers=10, fine_tune_epochs=2)
    summary = train(image_folder, config)
    assert [h["phase"] for h in summary["history"]] == ["head", "head", "fine_tune", "fine_tune"]
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4]
    (backbone,) = rec.models
    initial = rec.initial[0]
    # Ten layers that learn: the ten topmost with weights, BatchNorm not counted (Lite0's head and three blocks).
    learning = [layer.name for layer in backbone.layers
                if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    tuned = summary["fine_tuned_layers"]
    assert tuned == learning[-10:] and tuned[-1] == "head_conv"
    assert any(changed(initial[name], backbone.get_layer(name).get_weights()) for name in tuned)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in backbone.layers) > 40
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization) or layer.name not in tuned:
            assert not changed(initial[layer.name], layer.get_weights()), layer.name


@pytest.mark.slow
def test_hymenoptera_default_config(hymenoptera, tmp_path, lite0_engine_cached):
    summary = train(hymenoptera, TrainConfig(), out=tmp_path / "run")
    assert summary["classes"] == ["ants", "bees"]
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (245, 153, 0)
    assert summary["test_accuracy"] is None
    assert summary["val_accuracy"] >= 0.94
    assert summary["backbone"] == "efficientnet_lite0"
    assert "random_weights" not in codes(summary)

    # The saved run predicts the validation photos as well as training measured.
    from tlcore.data.datasets import load_dataset

    run = load_run(tmp_path / "run")
    val = [s for s in load_dataset(hymenoptera).samples if s.split == "val"]
    probs, kept, _ = run.predict_files([s.path for s in val])
    y = np.array([run.classes.index(val[i].label) for i in kept])
    accuracy = float((probs.argmax(axis=1) == y).mean())
    assert accuracy == pytest.approx(summary["val_accuracy"], abs=2 / len(val))
