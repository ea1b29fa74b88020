"""Model files this server produced (tlcore.io.produced): recorded by content when training and export write
them, trusted by the dashboard's loaders without a checking process; anything else (one byte changed, a
changed model description, a forged marker) is not, and goes to the worker of tlcore.models.model_check.

The run and its exports are the session-wide ones of test_export (their markers live in that run's cache,
which the ``own_cache`` fixture points at); nothing here converts a model again or starts a worker.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import tlcore.models.model_check as model_check
from tests.core.test_export import SHARED_FORMATS, entry, shared_exports
from tlcore.io.errors import TLError
from tlcore.models.model_check import ensure_checked, is_trusted
from tlcore.io.produced import model_digest, produced_dir, record_produced
from tlcore.lab.project import open_project, save_project
from tlcore.models.run import load_run
from tlcore.models.tflite_model import load_tflite
from tlcore.lab.workspace import Workspace

pytestmark = pytest.mark.usefixtures("shared_export_standin")  # the shared run's backbone (test_export)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_exports(tmp_path_factory)


@pytest.fixture
def own_cache(shared, monkeypatch):
    """The cache (server key and markers) of the process that trained and exported the shared run."""
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(shared.root / "cache"))
    return shared.root / "cache"


@pytest.fixture
def no_worker(monkeypatch):
    """Any call of the checking worker fails the test; returns the paths it was asked to check."""
    asked = []

    def refuse(path):
        asked.append(Path(path))
        raise TLError(f"{Path(path).name!r} went to the worker")

    monkeypatch.setattr(model_check, "check_in_worker", refuse)
    return asked


def flip_one_byte(path: Path, offset: int | None = None) -> Path:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def test_training_and_export_record_every_model_file_they_write(shared, own_cache):
    assert is_trusted(shared.run)
    for fmt in SHARED_FORMATS:
        target = Path(entry(shared.result, fmt)["path"])
        files = [p for p in target.rglob("*") if p.is_file()] if target.is_dir() else [target]
        assert files and all(is_trusted(p) for p in files), fmt
    assert is_trusted(Path(shared.uint8io["exports"][0]["path"]))
    # Labels are text, not a model: never recorded.
    assert not is_trusted(shared.out / "labels.txt")


def test_produced_models_load_in_process_without_a_worker(shared, own_cache, no_worker):
    ensure_checked(shared.run)
    ensure_checked(Path(entry(shared.result, "tflite-float32")["path"]))
    ensure_checked(Path(entry(shared.result, "keras")["path"]))
    assert no_worker == []
    assert load_run(shared.run).classes == load_tflite(entry(shared.result, "tflite-float32")["path"]).classes


def test_the_same_bytes_elsewhere_keep_their_trust_and_one_changed_byte_loses_it(shared, own_cache, no_worker,
                                                                               tmp_path):
    tflite = Path(entry(shared.result, "tflite-float32")["path"])
    copy = Path(shutil.copy(tflite, tmp_path / "brought_back.tflite"))
    assert is_trusted(copy)  # trust follows the content: an export downloaded and uploaded again
    flip_one_byte(copy)
    assert not is_trusted(copy)
    with pytest.raises(TLError, match="went to the worker"):
        ensure_checked(copy)
    assert no_worker == [copy]
    assert not is_trusted(copy)  # a refusal records nothing

    run = Path(shutil.copytree(shared.run, tmp_path / "run"))
    assert is_trusted(run)
    flip_one_byte(run / "model.weights.h5", offset=(run / "model.weights.h5").stat().st_size - 100)
    assert not is_trusted(run)


def test_a_run_keeps_its_trust_when_its_paths_change_but_not_when_its_model_description_does(shared, own_cache,
                                                                                             tmp_path):
    run = Path(shutil.copytree(shared.run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    # A project opened elsewhere rewrites the paths and the layout of every JSON file: same network.
    (run / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "elsewhere")}, indent=1))
    assert is_trusted(run)
    for change in ({"input_size": 4096}, {"classes": config["classes"] + ["extra"]},
                   {"backbone": "vgg19"}, {"train": {**config["train"], "weights": "imagenet"}}):
        (run / "config.json").write_text(json.dumps({**config, **change}))
        assert not is_trusted(run), change
    (run / "config.json").write_text("{damaged")
    assert not is_trusted(run)
    shutil.rmtree(run)
    assert not is_trusted(run)


def test_a_marker_without_this_servers_signature_grants_nothing(tmp_path, monkeypatch, isolated_cache):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"any model bytes")
    digest = model_digest(model)
    marker = produced_dir() / digest
    marker.parent.mkdir(parents=True)
    marker.write_text("0" * 64)  # a file that landed in the cache some other way
    assert not is_trusted(model)
    # A marker signed by another server (another key) does not count here either.
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "other-server"))
    record_produced(model)
    signed_elsewhere = (produced_dir() / digest).read_bytes()
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(isolated_cache))
    assert produced_dir() / digest == marker
    marker.write_bytes(signed_elsewhere)
    assert not is_trusted(model)
    record_produced(model)
    assert is_trusted(model)
    assert oct(os.stat(produced_dir().parent / "secret.key").st_mode & 0o777) == "0o600"


def test_a_run_in_a_project_saved_and_opened_on_this_server_keeps_its_trust(shared, own_cache, no_worker,
                                                                             tmp_path):
    origin = Workspace(tmp_path / "origin")
    job = origin.jobs_dir / "run-1"
    shutil.copytree(shared.run, job / "run")
    (job / "run" / "samples.json").write_text("[]")  # the shared photos are outside this workspace
    (job / "job.json").write_text(json.dumps({"kind": "train", "pid": 0, "started": time.time()}))
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": 0,
                                                 "result": {"run_dir": str(job / "run")}}))
    saved = save_project(origin, tmp_path / "project")
    target = Workspace(tmp_path / "target")
    open_project(saved, target)
    opened = target.jobs_dir / "run-1" / "run"
    assert opened.is_dir() and is_trusted(opened)
    ensure_checked(opened)
    assert no_worker == []
