"""Checkpoints each epoch and resuming: an interrupted run continues from its last completed epoch.

Interruptions in process are an exception raised from the epoch callback (the checkpoint of that
epoch is not written yet, as when a process dies mid-epoch); the real SIGKILL of a worker process is
in ``test_kill_and_resume.py``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.core.test_finetune import standin  # noqa: F401 - a fixture: Lite0-shaped tiny backbone
from tests.core.test_train import mean_colour_backbone, small_conv_backbone
from tests.conftest import SMALL_INPUT
from tlcore.training.checkpoint import checkpoint_dir, load_checkpoint
from tlcore.cli import main
from tlcore.io.errors import TLError
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import fine_tune, train


class Crash(Exception):
    """Stands in for the process dying."""


def crash_after(n: int, seen: list):
    def on_epoch(epoch, logs):
        seen.append(dict(logs))
        if len(seen) == n:
            raise Crash(f"killed during epoch {n + 1}")
    return on_epoch


@pytest.fixture
def colour_backbone(monkeypatch):
    import tlcore.training.frozen as frozen_mod

    monkeypatch.setattr(frozen_mod, "create_backbone", lambda name, weights=None, input_shape=None, pooling="avg":
                        mean_colour_backbone(input_shape or (224, 224, 3)))


@pytest.fixture
def conv_backbone(monkeypatch):
    import tlcore.training.frozen as frozen_mod

    monkeypatch.setattr(frozen_mod, "create_backbone", lambda name, weights=None, input_shape=None, pooling="avg":
                        small_conv_backbone(input_shape or (224, 224, 3)))


def test_head_training_resumes_from_the_last_completed_epoch(image_folder, tmp_path, colour_backbone, seed):
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=8, seed=3)
    out = tmp_path / "run"
    seen = []
    with pytest.raises(Crash):
        train(image_folder, config, out=out, on_epoch=crash_after(5, seen))
    assert not out.exists()  # nothing half-saved
    saved = load_checkpoint(checkpoint_dir(out))
    # Epoch 5 died before its checkpoint (the callback raised first): 4 epochs are kept.
    assert saved.phase == "head" and saved.epochs_done == 4
    assert saved.history == seen[:4]

    resumed = []
    summary = train(image_folder, config, out=out, on_epoch=lambda e, logs: resumed.append(e), resume=True)
    assert resumed == [5, 6, 7, 8]  # only the epochs still to do
    assert [h["epoch"] for h in summary["history"]] == list(range(1, 9))
    assert summary["history"][:4] == seen[:4]
    assert not checkpoint_dir(out).exists()  # the saved run replaces its checkpoints
    assert json.loads((out / "metrics.json").read_text())["history"] == summary["history"]


def test_the_optimizer_state_is_restored_too(image_folder, tmp_path, colour_backbone, seed):
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=6)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(image_folder, config, out=out, on_epoch=crash_after(4, []))
    optimizer = np.load(checkpoint_dir(out) / "optimizer.npz")
    # Adam's step counter is saved with its moments: 3 epochs of 1 batch each.
    assert int(optimizer["arr_0"]) == 3
    assert any(np.abs(optimizer[k]).sum() > 0 for k in optimizer.files[1:])


def test_resume_refuses_other_settings(image_folder, tmp_path, colour_backbone):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, on_epoch=crash_after(2, []))
    with pytest.raises(TLError, match=r"epochs 5.*not 9"):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=9), out=out, resume=True)


def test_a_checkpoint_older_than_a_setting_resumes_with_its_default(image_folder, tmp_path, colour_backbone, seed):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, on_epoch=crash_after(3, []))
    state_file = checkpoint_dir(out) / "state.json"
    state = json.loads(state_file.read_text())
    for newer in ("loop", "clip_norm", "resample", "early_stopping", "augment_strength"):
        del state["settings"][newer]  # as written before these settings existed
    state_file.write_text(json.dumps(state))
    with pytest.raises(TLError, match=r"resample 'none'.*not 'oversample'"):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5, resample="oversample"), out=out, resume=True)
    summary = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, resume=True)
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4, 5]


def test_resume_refuses_other_images(image_folder, tmp_path, colour_backbone):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, on_epoch=crash_after(2, []))
    (image_folder / "red" / "red_0.png").unlink()
    with pytest.raises(TLError, match="other images"):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, resume=True)


def test_resume_without_a_checkpoint_is_a_user_error(image_folder, tmp_path, colour_backbone):
    with pytest.raises(TLError, match="no checkpoint to resume"):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2), out=tmp_path / "run", resume=True)


def test_a_damaged_checkpoint_is_a_user_error(image_folder, tmp_path, colour_backbone):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, on_epoch=crash_after(3, []))
    (checkpoint_dir(out) / "state.json").write_text("{not json")
    with pytest.raises(TLError, match="damaged"):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=5), out=out, resume=True)


def test_fine_tuning_resumes_inside_its_phase_with_early_stopping_state(image_folder, tmp_path, conv_backbone, seed):
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=3, fine_tune_layers=4, fine_tune_epochs=5, fine_tune_lr=1e-4,
                         patience=10)
    out = tmp_path / "run"
    seen = []
    with pytest.raises(Crash):
        train(image_folder, config, out=out, on_epoch=crash_after(6, seen))  # dies in fine-tune epoch 3
    saved = load_checkpoint(checkpoint_dir(out))
    assert saved.phase == "fine_tune" and saved.epochs_done == 2
    assert [h["phase"] for h in saved.history] == ["head"] * 3 + ["fine_tune"] * 2
    assert saved.state["early_stopping"]["best"] == pytest.approx(min(h["val_loss"] for h in seen[3:5]))
    assert (checkpoint_dir(out) / "best.npz").is_file()

    resumed = []
    summary = train(image_folder, config, out=out, on_epoch=lambda e, logs: resumed.append((e, logs["phase"])),
                    resume=True)
    assert resumed == [(6, "fine_tune"), (7, "fine_tune"), (8, "fine_tune")]  # no head epoch again
    assert summary["history"][:5] == seen[:5]
    assert json.loads((out / "config.json").read_text())["fine_tuned"] is True


def test_fine_tune_command_resumes(image_folder, tmp_path, standin, seed):
    run = tmp_path / "run"
    train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2), out=run)
    config = TrainConfig(fine_tune_layers=4, fine_tune_epochs=4, fine_tune_lr=1e-4, patience=10)
    seen = []
    with pytest.raises(Crash):
        fine_tune(run, config, out=tmp_path / "tuned", on_epoch=crash_after(2, seen))
    assert load_checkpoint(checkpoint_dir(tmp_path / "tuned")).epochs_done == 1
    summary = fine_tune(run, config, out=tmp_path / "tuned", resume=True)
    assert [h["phase"] for h in summary["history"]] == ["head"] * 2 + ["fine_tune"] * 4
    assert summary["history"][2] == seen[0]


def test_cli_resume_flag(image_folder, tmp_path, colour_backbone, capsys):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=6), out=out, on_epoch=crash_after(3, []))
    events = tmp_path / "events.jsonl"
    code = main(["train", str(image_folder), "--out", str(out), "--weights", "none", "--input-size", str(SMALL_INPUT), "--epochs", "6",
                 "--resume", "--json", "--progress", str(events)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["history"]) == 6
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    resume = [e for e in lines if e["type"] == "resume"]
    assert len(resume) == 1 and len(resume[0]["history"]) == 2  # what a following page starts from
    assert [e["epoch"] for e in lines if e["type"] == "epoch"] == [3, 4, 5, 6]


def test_cli_resume_without_checkpoint_is_one_line(image_folder, tmp_path, capsys):
    code = main(["train", str(image_folder), "--out", str(tmp_path / "run"), "--weights", "none", "--input-size", str(SMALL_INPUT), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no checkpoint to resume" in err[0]
