"""Run history rows and the from-scratch twin of a run (same data, split, seed and budget, random weights)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

import tlcore.lab.experiments as experiments
from tests.conftest import make_image_folder
from tlcore.cli import build_parser
from tlcore.io.errors import TLError
from tlcore.lab.experiments import run_curves, run_history, scratch_args, start_scratch_run
from tlcore.training.config import TrainConfig

HISTORY = [{"epoch": 1, "loss": 0.9, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5, "phase": "head"},
           {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.7, "val_accuracy": 0.75, "phase": "head"}]


def fake_job(jobs: Path, name: str, config: TrainConfig, *, kind="train", status="done", started=1.0,
             fine_tuned=False, data=True, **meta) -> Path:
    """A job folder as a finished worker leaves it, without training anything."""
    job = jobs / name
    (job / "run").mkdir(parents=True)
    if data:
        make_image_folder(job / "data", n_per_class=2)
    (job / "run" / "config.json").write_text(json.dumps(
        {"backbone": config.backbone, "weights": config.weights, "input_size": 224, "train": asdict(config),
         "fine_tuned": fine_tuned, "classes": ["blue", "red"]}))
    # A fine-tuned run records the layers that learnt, as many as its settings asked for.
    layers = [f"conv{i}" for i in range(config.fine_tune_layers)] if fine_tuned else []
    (job / "run" / "metrics.json").write_text(json.dumps(
        {"history": HISTORY, "val_accuracy": 0.75, "test_accuracy": 0.5, "seconds": {"total": 4.2},
         "fine_tuned_layers": layers}))
    (job / "job.json").write_text(json.dumps({"kind": kind, "argv": [], "pid": 0, "started": started, **meta}))
    if status == "done":
        (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": 0, "result": {"seconds": {"total": 5.0}}}))
    else:
        (job / "result.json").write_text(json.dumps({"exit_code": 2, "pid": 0, "error": "no"}))
    return job


def test_run_history_has_one_row_per_finished_run_with_settings_and_scores(tmp_path):
    fake_job(tmp_path, "run-a", TrainConfig(epochs=7, lr=3e-3, seed=5), started=1.0)
    fake_job(tmp_path, "run-failed", TrainConfig(), status="failed", started=2.0)
    tuned = TrainConfig(epochs=7, fine_tune_layers=12, fine_tune_epochs=4, fine_tune_lr=3e-5)
    fake_job(tmp_path, "finetune-b", tuned, kind="finetune", fine_tuned=True, started=3.0,
             parent=str(tmp_path / "run-a" / "run"))
    rows = run_history(tmp_path)
    assert [r["name"] for r in rows] == ["finetune-b", "run-a"]  # newest first, the failed job left out
    tuned_row, plain = rows
    assert plain | {"run_dir": None} == {
        "name": "run-a", "run_dir": None, "kind": "train", "scratch_of": None, "parent": None,
        "backbone": "efficientnet_lite0",
        "weights": "imagenet", "epochs": 7, "batch_size": 32, "lr": 3e-3, "dropout": 0.2, "fine_tune_layers": 0,
        "fine_tune_epochs": None, "fine_tune_lr": None, "seed": 5, "augment": False, "epochs_run": 2,
        "val_accuracy": 0.75, "test_accuracy": 0.5, "seconds": 5.0, "started": 1.0}
    assert (tuned_row["kind"], tuned_row["fine_tune_layers"], tuned_row["fine_tune_epochs"]) == ("finetune", 12, 4)
    assert tuned_row["parent"] == "run-a"  # the job it continues, by name (the same in a project opened elsewhere)
    assert run_curves(plain["run_dir"]) == HISTORY


def test_scratch_args_repeat_the_run_with_random_weights_and_the_same_budget(tmp_path):
    config = TrainConfig(backbone="mobilenet_v2", epochs=9, batch_size=16, lr=3e-3, dropout=0.3,
                         split=(0.6, 0.2, 0.2), seed=11, fine_tune_layers=8, fine_tune_epochs=3, fine_tune_lr=1e-4,
                         patience=2)
    job = fake_job(tmp_path, "finetune-x", config, kind="finetune", fine_tuned=True)
    args = scratch_args(job / "run", "DATA", "OUT")
    parsed = build_parser().parse_args(args)  # what the worker will read
    assert (parsed.command, parsed.data, parsed.out, parsed.weights) == ("train", "DATA", "OUT", None)
    assert (parsed.backbone, parsed.epochs, parsed.batch_size, parsed.lr, parsed.dropout, parsed.seed) == \
        ("mobilenet_v2", 9, 16, 3e-3, 0.3, 11)
    assert tuple(parsed.split) == pytest.approx((0.6, 0.2, 0.2))
    assert (parsed.fine_tune_layers, parsed.fine_tune_epochs, parsed.fine_tune_lr, parsed.patience) == (8, 3, 1e-4, 2)

    plain = fake_job(tmp_path, "run-y", TrainConfig(epochs=4))
    assert build_parser().parse_args(scratch_args(plain / "run", "DATA", "OUT")).fine_tune_layers == 0


def test_scratch_args_keep_augmentation_rebalancing_and_the_training_loop(tmp_path):
    config = TrainConfig(augment=True, augment_copies=3, augment_strength=0.3, resample="oversample",
                         early_stopping=False, loop="tape", clip_norm=1.5)
    job = fake_job(tmp_path, "run-z", config)
    parsed = build_parser().parse_args(scratch_args(job / "run", "DATA", "OUT"))
    assert (parsed.augment, parsed.augment_copies, parsed.augment_strength, parsed.resample) == (True, 3, 0.3, "oversample")
    assert (parsed.early_stopping, parsed.loop, parsed.clip_norm) == (False, "tape", 1.5)


def test_start_scratch_run_trains_on_a_copy_of_the_runs_own_photos(tmp_path, monkeypatch):
    started = {}
    monkeypatch.setattr(experiments, "start_job", lambda job_dir, args, kind, meta: started.update(
        job=job_dir, args=args, kind=kind, meta=meta) or job_dir)
    base = fake_job(tmp_path, "run-a", TrainConfig(epochs=3))
    # A fine-tuned run has no photos of its own: they are its parent's.
    tuned = fake_job(tmp_path, "finetune-b", TrainConfig(epochs=3, fine_tune_layers=2), kind="finetune",
                     fine_tuned=True, data=False, parent=str(base / "run"))
    job = start_scratch_run(tuned / "run", tmp_path)
    assert job.name.startswith("scratch-") and started["kind"] == "train"
    assert started["meta"] == {"scratch_of": str(tuned / "run")}
    parsed = build_parser().parse_args(started["args"])
    assert parsed.data == str(job / "data") and parsed.out == str(job / "run") and parsed.fine_tune_layers == 2
    copied = sorted(p.relative_to(job / "data") for p in (job / "data").rglob("*.png"))
    assert copied == sorted(p.relative_to(base / "data") for p in (base / "data").rglob("*.png")) and len(copied) == 4


def test_start_scratch_run_says_when_the_photos_are_gone(tmp_path):
    job = fake_job(tmp_path, "run-a", TrainConfig(), data=False)
    with pytest.raises(TLError, match="the photos that run 'run-a' was trained on are no longer there"):
        start_scratch_run(job / "run", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["run-a"]


@pytest.mark.parametrize("train, fragment", [
    ({"epochs": "3 --out=/elsewhere"}, "give epochs the value '3 --out=/elsewhere'"),
    ({"argv": ["sh", "-c", "id"]}, "unknown setting 'argv'"),
    ({"lr": -1.0}, "learning rate must be positive, got -1.0"),
], ids=["option-in-a-value", "unknown-key", "bad-value"])
def test_scratch_args_refuse_settings_a_hostile_config_json_holds(tmp_path, train, fragment):
    """A run's config.json may come from a project: its settings are checked as training checks them."""
    job = fake_job(tmp_path, "run-h", TrainConfig())
    config = json.loads((job / "run" / "config.json").read_text())
    config["train"].update(train)
    (job / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(TLError, match=re.escape(fragment)) as info:
        start_scratch_run(job / "run", tmp_path)
    assert "run 'run-h'" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-h"]  # refused before any folder was made


def test_scratch_args_keep_a_value_that_looks_like_an_option_a_value(tmp_path):
    job = fake_job(tmp_path, "run-v", TrainConfig())
    parsed = build_parser().parse_args(scratch_args(job / "run", "-DATA", "--OUT"))
    assert (parsed.data, parsed.out) == ("./-DATA", "--OUT")
