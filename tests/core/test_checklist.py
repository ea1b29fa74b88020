"""Checklists: facts -> items for every item's cases, and facts gathered from generated workspaces and runs."""
from __future__ import annotations

import json
import os

import pytest

from tests.conftest import write_image
from tlcore.lab import checklist
from tlcore.lab.checklist import Facts, Item, deployment_checklist, gather_facts, training_checklist
from tlcore.analysis.diagnosis import diagnose
from tlcore.io.errors import TLError
from tlcore.lab.workspace import Workspace
from tlcore.training.ledger import record_test_scoring, run_key

BALANCED = {"red": 10, "blue": 9}


def item(items, key) -> Item:
    return next(i for i in items if i.key == key)


def training(key, **facts) -> Item:
    return item(training_checklist(Facts(**facts)), key)


def deployment(key, **facts) -> Item:
    return item(deployment_checklist(Facts(**facts)), key)


def epochs(phase, n, start=1, acc=0.9, val_acc=0.88):
    """``n`` steady epochs of one phase (train/val accuracy and loss that converge together)."""
    return [{"epoch": start + i, "phase": phase, "loss": 0.3, "accuracy": acc, "val_loss": 0.32,
             "val_accuracy": val_acc} for i in range(n)]


# Before training ------------------------------------------------------------------------------

def test_the_lists_hold_the_issue_items_in_order():
    assert [i.key for i in training_checklist(Facts())] == ["photos", "balanced", "splits", "image_size", "frozen"]
    assert [i.key for i in deployment_checklist(Facts())] == ["curves", "test_set", "export"]


def test_an_empty_session_has_everything_to_do_and_nothing_ticked():
    assert [(i.key, i.status, i.reason) for i in training_checklist(Facts())] == [
        ("photos", "todo", "no_data"), ("balanced", "todo", "no_data"), ("splits", "todo", "no_data"),
        ("image_size", "todo", "no_data"), ("frozen", "n/a", "no_run")]
    assert not [i for i in training_checklist(Facts()) + deployment_checklist(Facts()) if i.status == "ok"]
    # Empty classes are no photos either.
    assert {i.status for i in training_checklist(Facts(counts={"red": 0, "blue": 0}))} == {"todo", "n/a"}
    assert {i.status for i in deployment_checklist(Facts())} == {"todo"}


@pytest.mark.parametrize("facts, status, reason", [
    (dict(counts={"red": 10}), "todo", "no_data"),
    (dict(counts={"red": 10, "blue": 0}), "todo", "no_data"),  # an empty class is not a class to balance
    (dict(counts={"red": 15, "blue": 10}), "ok", "balanced"),  # 1.5 is the limit, included
    (dict(counts={"red": 16, "blue": 10}, class_weights="none"), "warn", "imbalanced"),
    (dict(counts={"red": 16, "blue": 10}, class_weights="auto"), "ok", "class_weights"),
    (dict(counts={"red": 16, "blue": 10}, class_weights="balanced"), "ok", "class_weights"),
    (dict(counts={"red": 16, "blue": 10}, class_weights="none", resample="oversample"), "ok", "resampled"),
    (dict(counts={"red": 16, "blue": 10}, class_weights="none", resample="undersample"), "ok", "resampled"),
])
def test_balanced_or_compensated(facts, status, reason):
    got = training("balanced", **facts)
    assert (got.status, got.reason) == (status, reason)


def test_imbalance_names_the_classes_and_the_ratio():
    got = training("balanced", counts={"red": 30, "green": 12, "blue": 10}, class_weights="none")
    assert got.detail == {"ratio": 3.0, "largest": "red", "smallest": "blue"}


@pytest.mark.parametrize("facts, status, reason", [
    (dict(split=[80, 10, 10], counts=BALANCED), "ok", "separate"),
    (dict(split=[90, 10, 0], counts=BALANCED), "warn", "missing"),
    (dict(split=[90, 0, 10], counts=BALANCED), "warn", "missing"),
    (dict(split=[100, 0, 0], split_folders=True, counts=BALANCED), "ok", "folders"),
    (dict(split=[80, 10, 10], counts={"red": 10, "blue": 2}), "warn", "few"),
    (dict(split=[80, 10, 10]), "todo", "no_data"),  # nothing split yet: not ticked
    (dict(split=[90, 10, 0]), "warn", "missing"),  # but a split without test photos is wrong already
])
def test_three_separate_splits(facts, status, reason):
    got = training("splits", **facts)
    assert (got.status, got.reason) == (status, reason)


@pytest.mark.parametrize("counts, status, reason", [
    ({"red": 30, "blue": 24}, "warn", "too_few"),
    ({"red": 30, "blue": 25}, "ok", "start"),
    ({"red": 40, "blue": 40}, "ok", "start"),  # the built-in sample
    ({"red": 50, "blue": 60}, "ok", "good"),
    ({"red": 150, "blue": 500}, "ok", "great"),
])
def test_enough_photos_follows_the_data_tiers(counts, status, reason):
    got = training("photos", counts=counts)
    assert (got.status, got.reason) == (status, reason)
    assert {k: got.detail[k] for k in ("start", "good", "great")} == {"start": 25, "good": 50, "great": 150}


def test_too_few_photos_names_the_smallest_class_and_what_it_lacks():
    assert training("photos", counts={"red": 30, "blue": 8, "empty": 0}).detail == {
        "smallest": "blue", "n": 8, "missing": 17, "start": 25, "good": 50, "great": 150}


def test_too_few_photos_for_three_splits_names_the_class():
    assert training("splits", counts={"red": 10, "blue": 2}).detail == {
        "train": 80, "val": 10, "test": 10, "smallest": "blue", "n": 2}


def test_a_damaged_split_setting_is_said_with_its_value():
    with pytest.raises(TLError, match=r"split setting \[80, 20\] must be three percentages"):
        training_checklist(Facts(split=[80, 20]))


@pytest.mark.parametrize("facts, status, reason, smaller", [
    (dict(image_sides=()), "todo", "no_data", None),
    (dict(image_sides=(300, 50), input_size=None), "n/a", "size_unknown", None),
    (dict(image_sides=(224, 300), input_size=224), "ok", "large_enough", 0),
    (dict(image_sides=(223, 300, 32), input_size=224), "warn", "smaller", 2),
])
def test_images_at_the_backbones_size(facts, status, reason, smaller):
    got = training("image_size", **facts)
    assert (got.status, got.reason, got.detail.get("smaller")) == (status, reason, smaller)


@pytest.mark.parametrize("history, status, reason", [
    ((), "n/a", "no_run"),
    (epochs("head", 3), "ok", "frozen"),
    (epochs("head", 3) + epochs("fine_tune", 2, start=4), "ok", "frozen"),
    (epochs("fine_tune", 3), "warn", "not_frozen"),
    (epochs("adversarial", 2), "warn", "not_frozen"),
])
def test_backbone_frozen_for_phase_1(history, status, reason):
    got = training("frozen", history=tuple(history))
    assert (got.status, got.reason) == (status, reason)


def test_frozen_counts_the_epochs_of_each_phase():
    history = tuple(epochs("head", 3) + epochs("fine_tune", 2, start=4))
    assert training("frozen", history=history).detail == {"head": 3, "fine_tune": 2}


# Before deployment ----------------------------------------------------------------------------

def test_curves_follow_the_diagnosis():
    good = epochs("head", 8)
    overfit = [{"epoch": i + 1, "phase": "head", "loss": 1.0 / (i + 1), "accuracy": min(0.6 + 0.05 * i, 1.0),
                "val_loss": 0.5 + 0.1 * i, "val_accuracy": 0.6} for i in range(10)]
    assert diagnose(good)["code"] == "good_fit" and diagnose(overfit)["code"] == "overfitting"
    got = deployment("curves", run="r", history=tuple(good))
    assert (got.status, got.reason) == ("ok", "good_fit")
    got = deployment("curves", run="r", history=tuple(overfit))
    assert (got.status, got.reason) == ("warn", "overfitting")
    assert got.detail["message"] == diagnose(overfit)["message"]
    assert deployment("curves", run="r", history=tuple(epochs("head", 1))).reason == "too_short"
    assert (deployment("curves").status, deployment("curves").reason) == ("todo", "no_run")


@pytest.mark.parametrize("facts, status, reason", [
    (dict(), "todo", "no_run"),
    # Training measured it, but nobody has looked: the score waits for the run that is kept (issue 17).
    (dict(run="r", n_test=4, test_accuracy=0.75), "todo", "not_scored"),
    (dict(run="r", n_test=4, test_accuracy=0.75, test_scored=True), "ok", "evaluated"),
    (dict(run="r", n_test=0, test_accuracy=None), "warn", "no_test"),
    (dict(run="r", n_test=0, test_accuracy=None, test_scored=True), "warn", "no_test"),
])
def test_test_set_evaluation_done(facts, status, reason):
    got = deployment("test_set", **facts)
    assert (got.status, got.reason) == (status, reason)


@pytest.mark.parametrize("facts, status, reason", [
    (dict(), "todo", "no_run"),
    (dict(run="r"), "todo", "no_export"),
    (dict(run="r", exported=True), "warn", "unverified"),
    (dict(run="r", exported=True, verified=True), "todo", "no_int8"),
    (dict(run="r", exported=True, verified=True, int8_drop=0.019), "ok", "verified"),
    (dict(run="r", exported=True, verified=True, int8_drop=-0.01), "ok", "verified"),
    (dict(run="r", exported=True, verified=True, int8_drop=0.02), "warn", "int8_drop"),  # under 2 points: strict
])
def test_export_verified_and_int8_drop_under_2_points(facts, status, reason):
    got = deployment("export", **facts)
    assert (got.status, got.reason) == (status, reason)


def test_an_item_refuses_an_unknown_status():
    with pytest.raises(ValueError, match="unknown checklist status 'done'"):
        Item("balanced", "done", "balanced")


def test_defaults_match_training_defaults():
    from tlcore.training.config import TrainConfig

    assert Facts().class_weights == TrainConfig().class_weights


# Gathering ------------------------------------------------------------------------------------

def write_job(ws: Workspace, name: str, kind: str, started: float, result: dict | None = None, parent=None,
              config: dict | None = None, metrics: dict | None = None):
    """A finished job folder as tlcore.jobs.runner leaves it (job.json, result.json), with a run when given one."""
    job = ws.jobs_dir / name
    job.mkdir(parents=True)
    meta = {"kind": kind, "argv": [], "pid": 10**7, "started": started, **({"parent": str(parent)} if parent else {})}
    (job / "job.json").write_text(json.dumps(meta))
    if result is not None:
        (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": 10**7, "result": result}))
    if config is not None:
        (job / "run").mkdir()
        (job / "run" / "config.json").write_text(json.dumps(config))
        (job / "run" / "metrics.json").write_text(json.dumps(metrics or {}))
    return job


def export_result(run_dir, keras=0.9, int8=0.89, formats=("tflite-float32", "tflite-int8")):
    return {"run_dir": str(run_dir), "exports": [
        {"format": f, "path": f"/x/{f}", "verification": {"keras_accuracy": keras,
                                                           "tflite_accuracy": int8 if f == "tflite-int8" else keras}}
        for f in formats]}


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "session")


def test_an_empty_workspace_gathers_empty_facts(ws):
    facts = gather_facts(ws, import_backbones=False)
    assert (facts.counts, facts.image_sides, facts.run, facts.history, facts.exported) == ({}, (), None, (), False)
    assert list(facts.split) == [80, 10, 10]


def test_photos_settings_and_sizes_are_gathered(ws):
    for i in range(3):
        write_image(ws.data_dir / "red" / f"{i}.png", (200, 0, 0), size=64)
    write_image(ws.data_dir / "blue" / "0.png", (0, 0, 200), size=300)
    ws.update_settings(split=[70, 15, 15], backbone="mobilenet_v2", class_weights="none")
    facts = gather_facts(ws, import_backbones=False)
    assert facts.counts == {"blue": 1, "red": 3}
    assert sorted(facts.image_sides) == [64, 64, 64, 300]
    assert (list(facts.split), facts.backbone, facts.class_weights, facts.resample) == ([70, 15, 15], "mobilenet_v2",
                                                                                       "none", "none")


def test_the_backbone_size_comes_from_the_registry(ws):
    write_image(ws.data_dir / "red" / "0.png", (200, 0, 0), size=100)
    facts = gather_facts(ws)  # the default backbone, EfficientNet-Lite0: 224 pixels
    assert facts.input_size == 224
    assert item(training_checklist(facts), "image_size").detail["smaller"] == 1


def test_image_headers_are_read_again_only_for_new_photos(ws, monkeypatch):
    for i in range(3):
        write_image(ws.data_dir / "red" / f"{i}.png", (200, 0, 0), size=40)
    opened = []
    real = checklist._shorter_side
    monkeypatch.setattr(checklist, "_shorter_side", lambda path: opened.append(path.name) or real(path))
    gather_facts(ws, import_backbones=False)
    assert len(opened) == 3
    gather_facts(ws, import_backbones=False)
    assert len(opened) == 3  # unchanged folders: nothing opened
    write_image(ws.data_dir / "red" / "new.png", (200, 0, 0), size=500)
    folder = ws.data_dir / "red"  # as a later second would: a coarse clock may leave the folder's time unchanged
    os.utime(folder, ns=(folder.stat().st_atime_ns, folder.stat().st_mtime_ns + 10**9))
    facts = gather_facts(ws, import_backbones=False)
    assert opened[3:] == ["new.png"]
    assert sorted(facts.image_sides) == [40, 40, 40, 500]


def test_an_unreadable_photo_is_not_counted_as_a_size(ws):
    write_image(ws.data_dir / "red" / "0.png", (200, 0, 0), size=40)
    (ws.data_dir / "red" / "broken.png").write_bytes(b"not an image")
    facts = gather_facts(ws, import_backbones=False)
    assert facts.counts == {"red": 2} and facts.image_sides == (40,)


def test_data_with_its_own_split_folders(ws):
    for split in ("train", "val"):
        (ws.data_dir / split / "red").mkdir(parents=True)
    assert gather_facts(ws, import_backbones=False).split_folders
    assert not gather_facts(Workspace(ws.root.parent / "other"), import_backbones=False).split_folders


def test_the_newest_finished_run_and_its_newest_export_are_gathered(ws):
    history = epochs("head", 4)
    config = {"backbone": "efficientnet_lite0", "input_size": 96, "train": {"class_weights": "none",
                                                                            "resample": "oversample"}}
    metrics = {"history": history, "n_test": 5, "test_accuracy": 0.8}
    old = write_job(ws, "run-old", "train", 1.0, {}, config={"backbone": "efficientnet_lite0"}, metrics={})
    new = write_job(ws, "run-new", "train", 2.0, {}, config=config, metrics=metrics)
    write_job(ws, "run-live", "train", 3.0, None, config=config)  # no result and no worker: failed
    write_job(ws, "export-old", "export", 4.0, export_result(new / "run", int8=0.5), parent=new / "run")
    write_job(ws, "export-new", "export", 5.0, export_result(new / "run", int8=0.89), parent=new / "run")
    write_job(ws, "export-other", "export", 6.0, export_result(old / "run", int8=0.0), parent=old / "run")
    facts = gather_facts(ws, import_backbones=False)
    assert facts.run == str(new / "run")
    assert facts.history == tuple(history)
    assert (facts.n_test, facts.test_accuracy) == (5, 0.8)
    assert (facts.class_weights, facts.resample) == ("none", "oversample")  # the last run's, without settings
    assert facts.input_size == 96  # the run's own size for the chosen backbone: no registry needed
    assert (facts.exported, facts.verified, facts.int8_drop) == (True, True, 0.01)
    assert [i.status for i in deployment_checklist(facts)][1:] == ["todo", "ok"]  # its test split not looked at

    # A look at its test split (the Evaluate page records it in the session's ledger) ticks the item.
    (new / "run" / "predictions.json").write_text(json.dumps([{"path": "p", "label": "red", "split": "test",
                                                               "probs": [1.0]}]))
    record_test_scoring("fingerprint", run_key(new / "run"), ws.root)
    facts = gather_facts(ws, import_backbones=False)
    assert facts.test_scored
    assert [i.status for i in deployment_checklist(facts)][1:] == ["ok", "ok"]
    record_test_scoring("fingerprint", run_key(new / "run"), ws.root.parent / "another-session")
    assert not gather_facts(Workspace(ws.root.parent / "another-session"), import_backbones=False).test_scored


def test_an_export_without_int8_or_verification(ws):
    run = write_job(ws, "run", "train", 1.0, {}, config={"backbone": "b"}, metrics={})
    write_job(ws, "export", "export", 2.0, export_result(run / "run", formats=("tflite-float16",)), parent=run / "run")
    facts = gather_facts(ws, import_backbones=False)
    assert (facts.exported, facts.verified, facts.int8_drop) == (True, True, None)
    result = {"exports": [{"format": "tflite-int8", "path": "/x"}]}  # no held-out photos: nothing checked
    write_job(ws, "export-2", "export", 3.0, result, parent=run / "run")
    facts = gather_facts(ws, import_backbones=False)
    assert (facts.exported, facts.verified) == (True, False)
    assert item(deployment_checklist(facts), "export").reason == "unverified"


def test_settings_override_the_last_runs_choices(ws):
    write_job(ws, "run", "train", 1.0, {}, config={"backbone": "b", "train": {"class_weights": "none"}}, metrics={})
    ws.update_settings(class_weights="balanced")
    assert gather_facts(ws, import_backbones=False).class_weights == "balanced"


def test_a_changed_metrics_file_is_read_again(ws):
    job = write_job(ws, "run", "train", 1.0, {}, config={"backbone": "b"}, metrics={"n_test": 1})
    assert gather_facts(ws, import_backbones=False).n_test == 1
    path = job / "run" / "metrics.json"
    path.write_text(json.dumps({"n_test": 7}))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert gather_facts(ws, import_backbones=False).n_test == 7


def test_only_the_most_recent_sessions_are_remembered(monkeypatch):
    cache = {}
    monkeypatch.setattr(checklist, "_REMEMBERED", 2)
    for key in ("a", "b", "a", "c"):  # using "a" again makes "b" the oldest
        checklist._remember(cache, key, key.upper())
    assert cache == {"a": "A", "c": "C"}
