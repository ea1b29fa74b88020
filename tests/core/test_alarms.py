"""Anti-pattern alarms: every code before training (config_alarms) and in the train/finetune summaries,
resampling, the test-set ledger (looks at test scores, never training) and the CLI flags."""
from __future__ import annotations

import json

import numpy as np
import pytest

import tlcore.models.run as run_mod
import tlcore.training.frozen as frozen_mod
import tlcore.training.pipeline as train_mod
from tests.conftest import SMALL_INPUT, make_image_folder, write_image
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tests.core.test_finetune import lite0_standin
from tlcore.training.alarms import config_alarms, few_images_alarms, imbalance_alarms, reused_test_set_alarms
from tlcore.data.augment import AugmentConfig
from tlcore.io.errors import TLError
from tlcore.training.ledger import (fingerprint_test_set, record_test_scoring, run_fingerprint, run_key,
                                    score_run_test_set, scored_runs, times_scored)
from tlcore.data.resample import resample_indices
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import fine_tune, train


def codes(warnings):
    return [w["code"] for w in warnings]


def only(warnings, code):
    found = [w for w in warnings if w["code"] == code]
    assert len(found) == 1, warnings
    return found[0]


@pytest.fixture
def standin(monkeypatch):
    """A small conv backbone named like Lite0, for training and for reloading runs (fast, fine-tunable)."""
    monkeypatch.setattr(frozen_mod, "create_backbone", lite0_standin)
    monkeypatch.setattr(run_mod, "create_backbone", lite0_standin)


@pytest.fixture
def imbalanced(tmp_path):
    """15 red and 5 blue photos: 3 to 1."""
    data = make_image_folder(tmp_path / "data", n_per_class=15, classes=("red",))
    return make_image_folder(data, n_per_class=5, classes=("blue",), seed=1)


# config_alarms: the checks made before training -----------------------------------------------

def test_usual_settings_raise_no_alarm():
    assert config_alarms(TrainConfig(), {"a": 25, "b": 25}) == []  # 25 per class: enough to start
    assert config_alarms(TrainConfig(fine_tune_layers=20, augment=True)) == []


@pytest.mark.parametrize("changes, code, shown", [
    ({"lr": 0.05}, "high_lr", "0.05"),
    ({"fine_tune_layers": 3, "fine_tune_lr": 0.01}, "high_fine_tune_lr", "0.01"),
    ({"weights": None}, "random_weights", "random"),
    ({"fine_tune_layers": 3, "fine_tune_epochs": 11, "early_stopping": False},
     "long_fine_tune_without_early_stopping", "11 epochs"),
    ({"augment": True, "augment_strength": 0.5}, "strong_augmentation", "0.5"),
    ({"input_size": 96}, "small_input", "96 px is smaller than the 224 px"),
])
def test_each_setting_alarm_names_its_number(changes, code, shown):
    warning = only(config_alarms(TrainConfig(**changes)), code)
    assert shown in warning["message"]
    assert "\n" not in warning["message"]
    # The numbers also travel on their own (the dashboard words them), as JSON like the rest of a summary.
    assert json.loads(json.dumps(warning)) == warning
    assert bool(warning.get("values")) == (code != "random_weights")


@pytest.mark.parametrize("changes", [
    {"fine_tune_lr": 0.01},  # no fine-tuning: the rate is unused
    {"fine_tune_layers": 3, "fine_tune_lr": 1e-4},
    {"fine_tune_layers": 3, "fine_tune_epochs": 10, "early_stopping": False},  # the edge: 10 is not long
    {"fine_tune_layers": 3, "fine_tune_epochs": 30},  # early stopping on
    {"fine_tune_epochs": 30, "early_stopping": False},  # no fine-tuning at all
    {"augment": True, "augment_strength": 0.3},  # the edge
    {"augment": False, "augment_strength": 0.9},  # augmentation off
    {"input_size": 224},  # the backbone's own size, chosen explicitly
    {"input_size": 320},  # larger than pretraining: slower, never less detail
])
def test_settings_at_or_inside_the_limits_raise_no_alarm(changes):
    assert config_alarms(TrainConfig(**changes)) == []


def test_imbalance_is_uncompensated_only_without_weights_and_resampling():
    counts = {"red": 30, "blue": 10}
    warning = only(config_alarms(TrainConfig(class_weights="none"), counts), "imbalance_uncompensated")
    assert "'red' has 30" in warning["message"] and "'blue' has 10" in warning["message"]
    assert "3.0 to 1" in warning["message"]
    for compensated in ({"class_weights": "auto"}, {"class_weights": "balanced"},
                        {"class_weights": "none", "resample": "oversample"},
                        {"class_weights": "none", "resample": "undersample"}):
        assert imbalance_alarms(TrainConfig(**compensated), counts) == [], compensated
    assert imbalance_alarms(TrainConfig(class_weights="none"), {"red": 15, "blue": 10}) == []  # 1.5: the edge
    assert imbalance_alarms(TrainConfig(class_weights="none"), {"red": 30, "blue": 0}) == []  # one class present


def test_few_images_is_below_the_first_data_tier():
    warning = only(config_alarms(TrainConfig(), {"red": 40, "blue": 24, "empty": 0}), "few_images")
    assert warning["message"] == ("class 'blue' has only 24 images; 25 photos per class are enough to start, "
                                  "50 are good and 150 great")
    assert "(3 to train on)" in few_images_alarms({"red": 5, "blue": 5}, {"red": 3, "blue": 3})[0]["message"]
    assert few_images_alarms({"red": 25, "blue": 25}) == []  # the edge: enough to start
    assert few_images_alarms({}) == [] and few_images_alarms({"red": 0}) == []


# Resampling -----------------------------------------------------------------------------------

def test_oversampling_repeats_small_classes_up_to_the_largest():
    y = np.array([0] * 12 + [1] * 3 + [2] * 5)
    order = resample_indices(y, "oversample", seed=0)
    assert np.bincount(y[order]).tolist() == [12, 12, 12]
    assert set(order.tolist()) == set(range(len(y)))  # every original example is kept
    assert np.array_equal(order, resample_indices(y, "oversample", seed=0))  # seeded
    assert not np.array_equal(order, resample_indices(y, "oversample", seed=1))


def test_undersampling_keeps_the_smallest_count_without_repeats():
    y = np.array([0] * 12 + [1] * 3 + [2] * 5)
    order = resample_indices(y, "undersample", seed=0)
    assert np.bincount(y[order]).tolist() == [3, 3, 3]
    assert len(set(order.tolist())) == len(order)
    assert resample_indices(y, "none", seed=0).tolist() == list(range(len(y)))


@pytest.mark.parametrize("changes, shown", [
    ({"resample": "smote"}, "'smote'"),
    ({"augment_strength": 1.5}, "1.5"),
    ({"augment_strength": -0.1}, "-0.1"),
    ({"early_stopping": "no"}, "'no'"),
])
def test_invalid_new_settings_are_one_sentence_user_errors(image_folder, standin, changes, shown):
    with pytest.raises(TLError) as info:
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, **changes))
    assert shown in str(info.value) and "\n" not in str(info.value)


def test_resampling_changes_the_class_counts_the_head_sees(imbalanced, standin):
    split = (0.6, 0.2, 0.2)  # 9 red and 3 blue training photos
    plain = train(imbalanced, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=split, class_weights="none"))
    over = train(imbalanced, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=split, resample="oversample"))
    under = train(imbalanced, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=split, resample="undersample"))
    assert plain["head_counts"] == plain["counts"]["train"] == {"blue": 3, "red": 9}
    assert over["head_counts"] == {"blue": 9, "red": 9}
    assert under["head_counts"] == {"blue": 3, "red": 3}
    # Only the training set changes: the held-out splits are scored as they are.
    assert over["counts"]["val"] == plain["counts"]["val"] and over["n_test"] == plain["n_test"]


# Alarms in training summaries -----------------------------------------------------------------

def test_imbalanced_training_without_compensation_warns(imbalanced, standin):
    summary = train(imbalanced, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, class_weights="none"))
    warning = only(summary["warnings"], "imbalance_uncompensated")
    counts = summary["counts"]["train"]  # the training split's counts, not the folder's
    assert f"'red' has {counts['red']}" in warning["message"] and f"'blue' has {counts['blue']}" in warning["message"]
    compensated = train(imbalanced, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, class_weights="none", resample="oversample"))
    assert "imbalance_uncompensated" not in codes(compensated["warnings"])
    assert "resampling balances them" in only(compensated["warnings"], "class_imbalance")["message"]


def test_training_without_validation_images_warns(image_folder, standin):
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=(0.8, 0.0, 0.2)))
    assert summary["n_val"] == 0
    assert "no_validation" in codes(summary["warnings"])
    assert "no_validation" not in codes(train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1))["warnings"])


def test_strong_augmentation_warns_and_changes_the_augmented_features(image_folder, standin):
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, augment=True, augment_copies=1,
                                              augment_strength=0.5))
    assert "0.5" in only(summary["warnings"], "strong_augmentation")["message"]
    # The strength is part of the feature cache key, so cached features of another strength are never reused.
    assert (train_mod._augment_key(TrainConfig(augment_strength=0.2), 1)
            != train_mod._augment_key(TrainConfig(augment_strength=0.5), 1))
    image = np.full((16, 16, 3), 128, np.uint8)
    sha = "ab" * 32
    mild = train_mod._augmenter(0, 1, AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0))(image, sha)
    strong = train_mod._augmenter(0, 1, AugmentConfig(brightness=0.9, contrast=0.9, saturation=0.9))(image, sha)
    assert np.array_equal(mild, image)  # strength 0: only a flip, invisible on a flat image
    assert not np.array_equal(strong, image)


@pytest.mark.slow  # eleven fine-tuning epochs
def test_long_fine_tuning_without_early_stopping_warns_and_runs_every_epoch(image_folder, standin):
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, fine_tune_layers=2, fine_tune_epochs=11,
                                              early_stopping=False, patience=1, split=(0.5, 0.25, 0.25)))
    assert "11 epochs" in only(summary["warnings"], "long_fine_tune_without_early_stopping")["message"]
    assert sum(h["phase"] == "fine_tune" for h in summary["history"]) == 11  # patience 1 did not stop it


def test_training_again_on_the_same_test_images_is_not_a_look(image_folder, standin):
    # Training reports validation scores; it predicts the test split but does not count as scoring it.
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=(0.5, 0.25, 0.25))
    first = train(image_folder, config)
    second = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, lr=3e-3, split=(0.5, 0.25, 0.25)))
    assert "test_set_reuse" not in codes(first["warnings"]) + codes(second["warnings"])
    assert first["test_fingerprint"] == second["test_fingerprint"] is not None  # the same test photos, recognised
    assert times_scored(first["test_fingerprint"]) == 0  # and nobody has looked at them yet
    other_split = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=(0.5, 0.25, 0.25), seed=7))
    assert other_split["test_fingerprint"] != first["test_fingerprint"]


@pytest.mark.slow  # saves, reloads and fine-tunes a run
def test_the_guided_flow_raises_no_test_set_alarm_and_each_look_counts_once(image_folder, standin, tmp_path):
    """Train, then fine-tune on the same data as the pages say: no warning. Looking at the test scores of
    the first run counts it once however often; looking at the fine-tuned one makes two runs scored."""
    trained = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=(0.5, 0.25, 0.25)),
                    out=tmp_path / "run")
    tuned = fine_tune(tmp_path / "run", TrainConfig(fine_tune_layers=2, fine_tune_epochs=1), out=tmp_path / "tuned")
    assert "test_set_reuse" not in codes(trained["warnings"]) + codes(tuned["warnings"])
    assert tuned["test_accuracy"] is not None  # still measured, for scripts and the model card
    fingerprint = run_fingerprint(tmp_path / "run")
    assert fingerprint == run_fingerprint(tmp_path / "tuned") == trained["test_fingerprint"]
    assert times_scored(fingerprint) == 0

    assert [score_run_test_set(tmp_path / "run") for _ in range(3)] == [1, 1, 1]  # reruns of one look
    assert reused_test_set_alarms(1) == []
    assert score_run_test_set(tmp_path / "tuned") == 2
    assert "scored for 2 runs" in only(reused_test_set_alarms(times_scored(fingerprint)), "test_set_reuse")["message"]
    assert scored_runs() == {run_key(tmp_path / "run"), run_key(tmp_path / "tuned")}


@pytest.mark.slow  # saves, reloads and fine-tunes a run
def test_fine_tuning_reports_its_alarms(image_folder, standin, tmp_path):
    train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, split=(0.5, 0.25, 0.25)), out=tmp_path / "run")
    summary = fine_tune(tmp_path / "run", TrainConfig(fine_tune_layers=2, fine_tune_lr=0.01, fine_tune_epochs=1),
                        out=tmp_path / "tuned")
    assert "0.01" in only(summary["warnings"], "high_fine_tune_lr")["message"]
    saved = json.loads((tmp_path / "tuned" / "config.json").read_text())["train"]
    assert saved["early_stopping"] is True and saved["resample"] == "none"


# The ledger -----------------------------------------------------------------------------------

def test_fingerprint_depends_on_contents_not_names_or_order(tmp_path):
    a = write_image(tmp_path / "a.png", (10, 20, 30))
    b = write_image(tmp_path / "b.png", (200, 20, 30))
    copy = tmp_path / "elsewhere" / "renamed.png"
    copy.parent.mkdir()
    copy.write_bytes(a.read_bytes())
    assert fingerprint_test_set([a, b]) == fingerprint_test_set([b, copy])
    assert fingerprint_test_set([a, b]) != fingerprint_test_set([a])
    assert fingerprint_test_set([]) is None


def test_ledger_counts_each_run_once_and_survives_a_damaged_file(tmp_path, isolated_cache):
    assert times_scored("f1") == 0
    assert [record_test_scoring("f1", run) for run in ("a", "b", "a", "c")] == [1, 2, 2, 3]
    assert record_test_scoring("f2", "a") == 1 and times_scored("f1") == 3
    assert json.loads((isolated_cache / "test_ledger.json").read_text()) == {"f1": ["a", "b", "c"], "f2": ["a"]}
    assert scored_runs() == {"a", "b", "c"}
    (isolated_cache / "test_ledger.json").write_text("{not json")
    assert record_test_scoring("f1", "a") == 1  # counting starts again; the page or command is not failed
    assert record_test_scoring("f1", "a", folder=tmp_path / "other") == 1  # a ledger of its own (a workspace's)
    assert scored_runs(tmp_path / "nowhere") == frozenset()


def test_ledger_of_an_earlier_version_drops_the_counts_training_made(isolated_cache):
    (isolated_cache / "test_ledger.json").write_text(json.dumps({"f1": 4}))
    assert times_scored("f1") == 0
    assert record_test_scoring("f1", "a") == 1


def test_run_key_is_what_a_look_shows_and_the_fingerprint_falls_back_to_the_photos(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    photos = [write_image(tmp_path / f"{i}.png", (10 * i, 20, 30)) for i in range(3)]
    samples = [{"path": str(p), "label": "red", "split": split} for p, split in zip(photos, ("train", "test", "test"))]
    (run / "samples.json").write_text(json.dumps(samples))
    rows = [{"path": str(p), "label": "red", "split": "test", "probs": [0.9, 0.1]} for p in photos[1:]]
    (run / "predictions.json").write_text(json.dumps(rows + [{**rows[0], "split": "val", "probs": [0.2, 0.8]}]))
    key = run_key(run)
    assert key is not None
    # Paths are not part of it (a project opened elsewhere is the same run); probabilities are.
    (run / "predictions.json").write_text(json.dumps([{**r, "path": "/elsewhere/x.png"} for r in rows]))
    assert run_key(run) == key
    (run / "predictions.json").write_text(json.dumps([{**rows[0], "probs": [0.8, 0.2]}, rows[1]]))
    assert run_key(run) != key
    (run / "predictions.json").write_text(json.dumps([{**rows[0], "split": "val"}]))
    assert run_key(run) is None  # no test split: nothing to look at

    # A run of an earlier version has no recorded fingerprint: its photos give it; photos outside the
    # workspace are not opened (their fingerprint is not the photos').
    assert run_fingerprint(run) == fingerprint_test_set(photos[1:])
    assert run_fingerprint(run, root=tmp_path) == fingerprint_test_set(photos[1:])
    assert run_fingerprint(run, root=run) != fingerprint_test_set(photos[1:])
    (run / "metrics.json").write_text(json.dumps({"test_fingerprint": "recorded"}))
    assert run_fingerprint(run) == "recorded"


# The command line -----------------------------------------------------------------------------

@pytest.mark.slow  # two CLI runs that save and reload a model (about 20 s on a busy machine)
def test_cli_train_and_finetune_report_a_high_fine_tuning_rate(image_folder, tmp_path, standin):
    # The stop file ends training after the head's epoch: the alarm is reported from the settings alone.
    stop = tmp_path / "STOP"
    stop.touch()
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "1", "--fine-tune-layers", "2", "--fine-tune-epochs", "1",
                                    "--fine-tune-lr", "0.01", "--stop-file", stop, "--json"])
    assert code == 0, stderr
    assert "0.01" in only(last_json(stdout)["warnings"], "high_fine_tune_lr")["message"]
    code, stdout, stderr = run_cli(["finetune", tmp_path / "run", "--out", tmp_path / "tuned", "--layers", "2",
                                    "--epochs", "1", "--fine-tune-lr", "0.01", "--json"])
    assert code == 0, stderr
    assert "high_fine_tune_lr" in codes(last_json(stdout)["warnings"])


def test_cli_evaluate_counts_a_look_at_a_runs_own_test_photos_only(tmp_path, standin):
    data = make_image_folder(tmp_path / "data", n_per_class=6, splits=("train", "val", "test"))
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1), out=tmp_path / "run")
    assert summary["n_test"] == 12
    fingerprint = summary["test_fingerprint"]

    def evaluate(folder):
        code, stdout, stderr = run_cli(["evaluate", tmp_path / "run", folder, "--json"])
        assert code == 0, stderr
        return last_json(stdout)

    other = evaluate(data / "val")  # other photos: no look at the test set
    assert other["test_set_scored"] is None and other["warnings"] == [] and times_scored(fingerprint) == 0
    first = evaluate(data / "test")
    assert first["test_set_scored"] == 1 and first["warnings"] == []
    assert evaluate(data / "test")["test_set_scored"] == 1  # the same run again: one look
    assert times_scored(fingerprint) == 1

    # A second run scored on the same test photos: the count and the warning.
    train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=1, lr=3e-3), out=tmp_path / "second")
    code, stdout, stderr = run_cli(["evaluate", tmp_path / "second", data / "test"])
    assert code == 0
    assert "this is the run's own test split: 2 run(s) scored on it so far" in stdout
    assert "warning: this test set has now been scored for 2 runs" in stderr


def test_cli_passes_the_new_options(imbalanced, tmp_path, standin):
    stop = tmp_path / "STOP"
    stop.touch()  # the head's one epoch only: fine-tuning's settings are checked, not run
    code, stdout, stderr = run_cli(["train", imbalanced, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "1", "--resample", "undersample", "--augment",
                                    "--augment-strength", "0.4", "--augment-copies", "1", "--fine-tune-layers", "1",
                                    "--fine-tune-epochs", "12", "--no-early-stopping", "--stop-file", stop, "--json"])
    assert code == 0, stderr
    summary = last_json(stdout)
    assert {"strong_augmentation", "long_fine_tune_without_early_stopping"} <= set(codes(summary["warnings"]))
    assert len(set(summary["head_counts"].values())) == 1  # undersampled to equal counts
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["resample"], saved["augment_strength"], saved["early_stopping"]) == ("undersample", 0.4, False)


def test_cli_rejects_an_unknown_resampling_in_one_line(image_folder, tmp_path):
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--resample", "smote"])
    assert_user_error(code, stdout, stderr, "'smote'", "oversample")
