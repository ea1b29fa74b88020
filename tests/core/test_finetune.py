"""What train() saves for later (samples.json, predictions.json), fine_tune() on a saved run, and
augmented training with its feature cache.

A saved run is reloaded by ``tlcore.models.run.load_run``, which rebuilds the registered backbone by name, so
the stand-in backbone here is installed in both ``tlcore.training.pipeline`` and ``tlcore.models.run``: a small conv net
named like the default backbone with its feature size (1280), fast at 224 x 224.
"""
from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

import tlcore.models.run as run_mod
import tlcore.training.frozen as frozen_mod
import tlcore.training.pipeline as train_mod
from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.io.errors import TLError
from tlcore.backbones.registry import get_spec
from tlcore.models.run import load_run
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import fine_tune, train


def lite0_standin(name, weights="imagenet", input_shape=None, pooling="avg", hidden: int = 0):
    """Conv + BatchNorm stages and a dense projection (after a ``hidden``-wide layer if asked), named and
    sized like backbone ``name``."""
    spec = get_spec(name)
    inputs = keras.Input(shape=input_shape or (spec.input_size, spec.input_size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    for i, (filters, stride) in enumerate([(8, 8), (16, 4), (16, 2)], start=1):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(spec.feature_dim, activation="relu", name="proj")(x)
    return keras.Model(inputs, x, name=spec.name)


def wide_lite0_standin(name, weights="imagenet", input_shape=None, pooling="avg"):
    """``lite0_standin`` with half a million weights, so that, as in Lite0, the weights and not the graph
    make most of an exported file (what the quantised file sizes are checked against)."""
    return lite0_standin(name, weights, input_shape, pooling, hidden=400)


def mean_colour_backbone(name, weights="imagenet", input_shape=None, pooling="avg"):
    """Features = mean RGB in 0..1 (brightness augmentation visibly moves them)."""
    inputs = keras.Input(shape=input_shape or (224, 224, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="avg_pool")(x), name="mean_colour")


class Builds:
    """Counts backbone builds (a build happens only when some feature is not cached, or to save)."""

    def __init__(self, build):
        self.build, self.calls = build, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.build(*args, **kwargs)


@pytest.fixture
def standin(monkeypatch):
    builds = Builds(lite0_standin)
    monkeypatch.setattr(frozen_mod, "create_backbone", builds)
    monkeypatch.setattr(run_mod, "create_backbone", lite0_standin)
    return builds


@pytest.fixture
def trained_run(image_folder, tmp_path, standin, seed):
    """A saved head-only run on the red/blue folder: 2 head epochs, split 8/4/4."""
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2, split=(0.5, 0.25, 0.25))
    summary = train(image_folder, config, out=tmp_path / "run")
    return tmp_path / "run", summary


def read(run_dir, name):
    return json.loads((run_dir / name).read_text(encoding="utf-8"))


def bn_weights(model):
    backbone = model.get_layer("efficientnet_lite0")
    return {layer.name: layer.get_weights() for layer in backbone.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


def layer_weights(model, name):
    return model.get_layer("efficientnet_lite0").get_layer(name).get_weights()


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# What train() saves -----------------------------------------------------------------------------

def test_samples_json_lists_every_used_image_with_its_split(trained_run, image_folder):
    run_dir, summary = trained_run
    samples = read(run_dir, "samples.json")
    images = sorted(str(p.resolve()) for p in image_folder.rglob("*.png"))
    assert sorted(str((run_dir / s["path"]).resolve()) for s in samples) == images
    for s in samples:
        assert s["label"] in ("red", "blue")
        assert f"/{s['label']}/" in s["path"]
        assert s["split"] in ("train", "val", "test")
    for split in ("train", "val", "test"):
        assert sum(s["split"] == split for s in samples) == summary[f"n_{split}"]
        for label in ("red", "blue"):
            assert sum(s["split"] == split and s["label"] == label for s in samples) == summary["counts"][split][label]


def test_predictions_json_has_probabilities_for_every_held_out_image(trained_run):
    run_dir, summary = trained_run
    samples = read(run_dir, "samples.json")
    predictions = read(run_dir, "predictions.json")
    held_out = {(s["path"], s["split"]) for s in samples if s["split"] != "train"}
    assert {(p["path"], p["split"]) for p in predictions} == held_out
    assert len(predictions) == summary["n_val"] + summary["n_test"]
    labels = {s["path"]: s["label"] for s in samples}
    for p in predictions:
        assert p["label"] == labels[p["path"]]
        assert len(p["probs"]) == len(summary["classes"])
        assert all(0 <= q <= 1 for q in p["probs"]) and sum(p["probs"]) == pytest.approx(1, abs=1e-4)
    # They are the saved model's predictions, and agree with the accuracy it reports.
    run = load_run(run_dir)
    for split in ("val", "test"):
        rows = [p for p in predictions if p["split"] == split]
        probs, kept, _ = run.predict_files([p["path"] for p in rows])
        assert kept == list(range(len(rows)))
        np.testing.assert_allclose(probs, [p["probs"] for p in rows], atol=1e-4)
        correct = [summary["classes"][int(np.argmax(p["probs"]))] == p["label"] for p in rows]
        assert np.mean(correct) == pytest.approx(summary[f"{split}_accuracy"])


def test_saved_paths_are_absolute_when_the_data_path_is_relative(tmp_path, monkeypatch, standin):
    make_image_folder(tmp_path / "data", n_per_class=4)
    monkeypatch.chdir(tmp_path)
    train("data", TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1), out="run")
    monkeypatch.chdir(tmp_path / "data")  # e.g. a later fine-tune started from elsewhere
    for name in ("samples.json", "predictions.json"):
        entries = read(tmp_path / "run", name)
        assert entries
        for entry in entries:
            assert entry["path"].startswith(str(tmp_path)), entry["path"]
            assert (tmp_path / entry["path"]).is_file()


# fine_tune() ------------------------------------------------------------------------------------

def test_the_number_of_fine_tuned_layers_is_the_same_everywhere(trained_run, tmp_path):
    """The number asked for, the layers that learnt, the run history (Runs page) and the model card agree."""
    from tlcore.export.bundle import model_card
    from tlcore.lab.experiments import run_history
    from tlcore.models.run_files import fine_tuned_layers

    run_dir, _ = trained_run
    jobs = tmp_path / "jobs"
    job = jobs / "finetune-1"
    job.mkdir(parents=True)
    (job / "job.json").write_text(json.dumps({"kind": "finetune", "pid": 0, "started": 1.0}))
    summary = fine_tune(run_dir, TrainConfig(fine_tune_layers=2, fine_tune_epochs=1), out=job / "run")
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": 0, "result": summary}))
    assert len(summary["fine_tuned_layers"]) == 2 == load_run(job / "run").config["train"]["fine_tune_layers"]
    assert fine_tuned_layers(job / "run") == summary["fine_tuned_layers"]
    (row,) = run_history(jobs)
    assert row["fine_tune_layers"] == 2
    card = model_card({"exports": [], "verification_data": {}}, job / "run")
    assert "fine-tuned 2 layers" in card


def test_fine_tune_continues_a_saved_run(trained_run, tmp_path):
    run_dir, first = trained_run
    before = load_run(run_dir)
    samples_before = read(run_dir, "samples.json")
    metrics_before = (run_dir / "metrics.json").read_text()
    epochs = []

    summary = fine_tune(run_dir, TrainConfig(fine_tune_layers=2, fine_tune_epochs=2), out=tmp_path / "tuned",
                        on_epoch=lambda e, logs: epochs.append((e, logs["phase"])))

    # History continues: the head's epochs, then the fine-tuning ones, numbered on.
    assert summary["history"][:2] == first["history"]
    assert [(h["epoch"], h["phase"]) for h in summary["history"]] == [
        (1, "head"), (2, "head"), (3, "fine_tune"), (4, "fine_tune")]
    assert epochs == [(3, "fine_tune"), (4, "fine_tune")]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(summary["history"][-1])
    # The top 2 layers that learn: conv3 and proj (BatchNorm stays frozen; activations and pooling have no weights).
    assert summary["fine_tuned_layers"] == ["conv3", "proj"]
    # The run's own split assignment.
    for key in ("classes", "n_train", "n_val", "n_test", "counts"):
        assert summary[key] == first[key], key
    assert read(tmp_path / "tuned", "samples.json") == samples_before
    assert 0 <= summary["val_accuracy"] <= 1 and 0 <= summary["test_accuracy"] <= 1

    # The new run reloads; the old one is left as it was.
    after = load_run(tmp_path / "tuned")
    assert after.config["fine_tuned"] is True
    assert after.config["train"]["fine_tune_layers"] == 2
    assert after.config["train"]["epochs"] == 2  # the head's settings are kept, not reset to defaults
    assert after.classes == before.classes
    assert json.loads((tmp_path / "tuned" / "metrics.json").read_text())["history"] == summary["history"]
    assert (run_dir / "metrics.json").read_text() == metrics_before
    assert load_run(run_dir).config["fine_tuned"] is False
    predictions = read(tmp_path / "tuned", "predictions.json")
    assert len(predictions) == first["n_val"] + first["n_test"]

    # BatchNorm statistics (and the frozen lower layers) unchanged; the unfrozen top changed.
    bn_before, bn_after = bn_weights(before.model), bn_weights(after.model)
    assert sorted(bn_before) == ["bn1", "bn2", "bn3"]
    for name in bn_before:
        assert same(bn_before[name], bn_after[name]), name
    for name in ("conv1", "conv2"):
        assert same(layer_weights(before.model, name), layer_weights(after.model, name)), name
    for name in ("conv3", "proj"):
        assert not same(layer_weights(before.model, name), layer_weights(after.model, name)), name


def test_the_diagnosis_after_fine_tuning_knows_the_run_was_fine_tuned(trained_run, tmp_path):
    """The guided flow (train, then fine-tune with augmentation): what each run did is kept, and its diagnosis, in
    metrics.json and as the dashboard recomputes it from the run folder, advises neither step again."""
    from tlcore.analysis.diagnosis import Done, diagnose
    from tlcore.models.run_files import training_done

    run_dir, first = trained_run
    assert training_done(run_dir) == {"fine_tuned": False, "augmented": False, "class_weighted": False,
                                      "oversampled": False, "undersampled": False}
    assert read(run_dir, "metrics.json")["class_weighted"] is False  # balanced classes: "auto" weighed nothing
    summary = fine_tune(run_dir, TrainConfig(fine_tune_layers=2, fine_tune_epochs=2, augment=True),
                        out=tmp_path / "tuned")
    done = training_done(tmp_path / "tuned")
    assert done["fine_tuned"] and done["augmented"]
    advice = " ".join(summary["diagnosis"]["remedies"]).lower()
    assert "fine-tune the top backbone layers" not in advice and "fine-tune: unfreeze" not in advice
    assert "turn on augmentation" not in advice and "augmentation on" not in advice
    # The dashboard's reading of the folder gives the same as training's own.
    shown = diagnose(read(tmp_path / "tuned", "metrics.json")["history"], done=Done(**done))
    assert shown == read(tmp_path / "tuned", "metrics.json")["diagnosis"] == summary["diagnosis"]


@pytest.mark.parametrize("train, metrics, expected", [
    ({"class_weights": "balanced"}, {}, {"class_weighted": True}),  # an earlier version: "balanced" always weighs
    ({"class_weights": "auto"}, {}, {}),  # ..."auto" only for imbalanced classes, not recorded then
    ({"class_weights": "balanced", "resample": "oversample"}, {}, {"oversampled": True}),  # resampling, no weights
    ({"class_weights": "auto"}, {"class_weighted": True}, {"class_weighted": True}),  # recorded by this version
    ({"augment": True, "resample": "undersample"}, {}, {"augmented": True, "undersampled": True}),
])
def test_training_done_reads_what_a_run_folder_says(tmp_path, train, metrics, expected):
    from tlcore.models.run_files import training_done

    (tmp_path / "config.json").write_text(json.dumps({"train": train, "fine_tuned": False}))
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    nothing = {"fine_tuned": False, "augmented": False, "class_weighted": False, "oversampled": False,
               "undersampled": False}
    assert training_done(tmp_path) == {**nothing, **expected}
    assert training_done(tmp_path / "missing") == nothing


def test_fine_tune_without_out_replaces_the_run(trained_run):
    run_dir, first = trained_run
    summary = fine_tune(run_dir, TrainConfig(fine_tune_layers=2, fine_tune_epochs=1))
    assert summary["run_dir"] == str(run_dir)
    assert load_run(run_dir).config["fine_tuned"] is True
    assert [h["phase"] for h in read(run_dir, "metrics.json")["history"]] == ["head", "head", "fine_tune"]
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_fine_tune_should_stop_ends_after_one_epoch(trained_run, tmp_path):
    run_dir, _ = trained_run
    summary = fine_tune(run_dir, TrainConfig(fine_tune_layers=2, fine_tune_epochs=5, patience=5),
                        out=tmp_path / "tuned", should_stop=lambda: True)
    assert [h["phase"] for h in summary["history"]] == ["head", "head", "fine_tune"]


def test_fine_tune_with_zero_layers_is_a_user_error(trained_run, tmp_path):
    run_dir, _ = trained_run
    with pytest.raises(TLError) as info:
        fine_tune(run_dir, TrainConfig(fine_tune_layers=0), out=tmp_path / "tuned")
    assert "0" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "tuned").exists()


def test_fine_tune_after_images_were_deleted_names_the_file(trained_run, tmp_path):
    run_dir, _ = trained_run
    gone = read(run_dir, "samples.json")[3]["path"]
    (run_dir / gone).unlink()
    with pytest.raises(TLError) as info:
        fine_tune(run_dir, TrainConfig(fine_tune_layers=2), out=tmp_path / "tuned")
    assert gone in str(info.value)
    assert not (tmp_path / "tuned").exists()


def test_fine_tune_on_a_run_without_samples_json(trained_run, tmp_path):
    run_dir, _ = trained_run
    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    (old / "samples.json").unlink()  # as a run saved before samples.json existed
    with pytest.raises(TLError) as info:
        fine_tune(old, TrainConfig(fine_tune_layers=2), out=tmp_path / "tuned")
    assert "samples.json" in str(info.value) and str(old) in str(info.value)


def test_fine_tune_on_a_missing_run_dir(tmp_path, standin):
    with pytest.raises(TLError) as info:
        fine_tune(tmp_path / "nowhere", TrainConfig(fine_tune_layers=2))
    assert str(tmp_path / "nowhere") in str(info.value)


@pytest.mark.parametrize("changes, shown", [
    ({"fine_tune_epochs": 0}, "0"),
    ({"fine_tune_lr": -1.0}, "-1.0"),
    ({"patience": 0}, "0"),
])
def test_fine_tune_invalid_settings_fail_before_loading(tmp_path, standin, changes, shown):
    # A nonexistent run: the settings are checked first.
    with pytest.raises(TLError) as info:
        fine_tune(tmp_path / "nowhere", TrainConfig(**{"fine_tune_layers": 2, **changes}))
    assert shown in str(info.value) and "nowhere" not in str(info.value)


# Augmented training ------------------------------------------------------------------------------

@pytest.fixture
def fit_inputs(monkeypatch):
    """Records the (x, y) each head is fitted on."""
    seen = []
    real_fit = train_mod.HeadTrainer.fit

    def fit(self, x, y, *args, **kw):
        seen.append((np.array(x), np.array(y)))
        return real_fit(self, x, y, *args, **kw)

    monkeypatch.setattr(train_mod.HeadTrainer, "fit", fit)
    return seen


def cached_vectors(cache_root):
    return sorted((cache_root / "features").rglob("*.npy"))


def test_augmented_training_uses_three_times_the_training_features(image_folder, monkeypatch, fit_inputs, seed):
    monkeypatch.setattr(frozen_mod, "create_backbone", mean_colour_backbone)
    plain = train(image_folder, TrainConfig(weights="imagenet", epochs=1))
    augmented = train(image_folder, TrainConfig(weights="imagenet", epochs=1, augment=True, augment_copies=2))
    (x0, y0), (x1, y1) = fit_inputs
    n = plain["n_train"]
    assert augmented["n_train"] == n and len(x0) == n  # the summary counts images, not copies
    assert x1.shape == (3 * n, x0.shape[1])
    np.testing.assert_array_equal(y1, np.concatenate([y0, y0, y0]))
    np.testing.assert_array_equal(x1[:n], x0)  # the originals first
    for copy in (x1[n:2 * n], x1[2 * n:]):  # then two different augmented copies
        assert not np.allclose(copy, x0)
        # Mean colour moves by at most brightness +-20 % (and contrast/saturation); the class stays clear.
        assert np.all(np.abs(copy - x0) < 0.45)
    assert not np.allclose(x1[n:2 * n], x1[2 * n:])


def test_augmented_features_are_cached(image_folder, monkeypatch, isolated_cache, seed):
    builds = Builds(mean_colour_backbone)
    monkeypatch.setattr(frozen_mod, "create_backbone", builds)
    config = TrainConfig(weights="imagenet", epochs=1, augment=True, augment_copies=2)

    first = train(image_folder, config)
    assert builds.calls == 1
    assert first["features"] == {"cache_hits": 0, "computed": 16}
    files = cached_vectors(isolated_cache)
    assert len(files) == 16 + 2 * first["n_train"]  # originals plus two copies of each training image

    second = train(image_folder, config)
    assert builds.calls == 1  # every feature, augmented ones too, came from the cache
    assert second["features"] == {"cache_hits": 16, "computed": 0}
    assert cached_vectors(isolated_cache) == files
    assert [h["loss"] for h in second["history"]] == pytest.approx([h["loss"] for h in first["history"]], rel=1e-5)

    fewer = train(image_folder, TrainConfig(weights="imagenet", epochs=1, augment=True, augment_copies=1))
    assert builds.calls == 1  # copy 1 is the same augmentation whatever the number of copies
    assert fewer["n_train"] == first["n_train"]

    train(image_folder, TrainConfig(weights="imagenet", epochs=1, augment=True, augment_copies=3))
    # A third copy had to be computed, by the backbone's engine converted and cached on the first run
    # (tlcore.training.engine): the Keras backbone is not built again.
    assert builds.calls == 1
    assert len(cached_vectors(isolated_cache)) == 16 + 3 * first["n_train"]


@pytest.mark.parametrize("copies", [0, 11, 1.5])
def test_invalid_augment_copies(image_folder, monkeypatch, copies):
    builds = Builds(mean_colour_backbone)
    monkeypatch.setattr(frozen_mod, "create_backbone", builds)
    with pytest.raises(TLError) as info:
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, augment=True, augment_copies=copies))
    assert repr(copies) in str(info.value)
    assert builds.calls == 0
