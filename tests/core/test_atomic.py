"""Crashes in the middle of a save leave the previous state loadable (runs, checkpoints, settings, files)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.core.test_finetune import standin, trained_run  # noqa: F401 - fixtures: a tiny saved run
from tlcore.io.atomic import recover_dir, replace_dir, write_bytes_atomic
from tlcore.models.run import load_run, save_run
from tlcore.lab.workspace import Workspace, new_session_id


class DiskFull(OSError):
    pass


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_bytes_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = write_bytes_atomic(tmp_path / "a.json", b"old")

    def fail(fd):
        raise DiskFull("no space left")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(DiskFull):
        write_bytes_atomic(target, b"new and longer")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []  # the temporary file is gone too


def test_replace_dir_interrupted_between_its_renames_is_recovered(tmp_path, monkeypatch):
    target = tmp_path / "run"
    target.mkdir()
    (target / "v").write_text("1")
    new = tmp_path / ".run.tmp-x"
    new.mkdir()
    (new / "v").write_text("2")
    real_rename = Path.rename
    calls = []

    def crash_on_second(self, dest):
        calls.append(self)
        if len(calls) == 2:
            raise DiskFull("killed here")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", crash_on_second)
    with pytest.raises(DiskFull):
        replace_dir(new, target)
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not target.exists()  # the old version is aside, the new one not yet in place
    assert (recover_dir(target) / "v").read_text() == "1"

    replace_dir(new, target)  # the next save completes and tidies up
    assert (target / "v").read_text() == "2"
    assert leftovers(tmp_path) == []


def test_a_run_save_that_fails_midway_leaves_the_previous_run_loadable(trained_run, monkeypatch):
    run_dir, _ = trained_run
    before = load_run(run_dir)
    probs_before = before.predict_batch(np.full((1, before.input_size, before.input_size, 3), 128, np.float32))
    real_dumps = json.dumps

    def fail_on_metrics(obj, *args, **kwargs):
        if isinstance(obj, dict) and "history" in obj:
            raise DiskFull("no space left while writing metrics.json")
        return real_dumps(obj, *args, **kwargs)

    monkeypatch.setattr(json, "dumps", fail_on_metrics)
    with pytest.raises(DiskFull):
        save_run(run_dir, before.model, ["x", "y"], {"backbone": before.spec.name}, {"history": []})
    monkeypatch.setattr(json, "dumps", real_dumps)
    after = load_run(run_dir)
    assert after.classes == before.classes
    np.testing.assert_allclose(
        after.predict_batch(np.full((1, after.input_size, after.input_size, 3), 128, np.float32)), probs_before)
    assert not [p for p in leftovers(run_dir.parent) if p.startswith(".run.")]


def test_load_run_recovers_a_run_left_aside_by_a_crash(trained_run):
    run_dir, _ = trained_run
    aside = run_dir.with_name(f".{run_dir.name}.old-123-.run.tmp-abc")
    run_dir.rename(aside)  # what a kill between save_run's two renames leaves
    assert load_run(run_dir).classes == ["blue", "red"]
    assert run_dir.is_dir() and not aside.exists()


def test_settings_survive_a_failed_save(tmp_path, monkeypatch):
    ws = Workspace.for_session(new_session_id(), base=tmp_path)
    ws.update_settings(backbone="efficientnet_lite0", split=[80, 10, 10])

    def fail(src, dst):
        raise DiskFull("killed before the rename")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(DiskFull):
        ws.update_settings(backbone="resnet50")
    assert ws.settings() == {"backbone": "efficientnet_lite0", "split": [80, 10, 10]}
    assert leftovers(ws.root) == []
