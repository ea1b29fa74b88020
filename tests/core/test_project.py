"""Projects: save a workspace, open it elsewhere, same runs and curves; damaged projects refused; nothing partial;
each photo stored once; a project opening would refuse is refused (or warned about) when it is saved."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import re

import numpy as np
import pytest

import tlcore.lab.project as project_mod
from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.cli import main
from tlcore.io.errors import TLError
from tlcore.io.quota import MB
from tlcore.lab.experiments import run_curves, run_history
from tlcore.jobs.runner import job_status
from tlcore.lab.project import (open_project, open_project_zip, project_path, project_zip, read_project,
                                save_check, save_project, saved_projects)
from tlcore.models.run import load_run
from tlcore.models.run_files import TENSORBOARD_DIR
from tlcore.training.tensorboard_log import PROJECTOR_FILES
from tlcore.lab.workspace import Workspace


def _finished_job(job: Path, kind: str, result: dict, pid: int, started: float, **meta) -> None:
    """job.json and result.json as start_job and its reaper write them for a job that ended well."""
    (job / "job.json").write_text(json.dumps({"kind": kind, "argv": ["python", "-m", "tlcore"], "pid": pid,
                                              "started": started, **meta}), encoding="utf-8")
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": result}), encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A workspace with photos, a finished training job (trained in-process, random weights) and an export job."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        ws = Workspace(tmp_path_factory.mktemp("origin") / "ws")
        make_image_folder(ws.data_dir, n_per_class=6)
        ws.update_settings(language="fr", backbone="efficientnet_lite0", seed=3)
        job = ws.jobs_dir / "run-1"
        data = ws.snapshot(job / "data")
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main(["train", str(data), "--out", str(job / "run"), "--weights", "none", "--input-size", str(SMALL_INPUT), "--epochs", "2",
                         "--split", "0.5,0.25,0.25", "--seed", "3", "--json", "--progress", str(job / "events.jsonl")])
        assert code == 0
        _finished_job(job, "train", json.loads(out.getvalue().splitlines()[-1]), os.getpid(), time.time())
        export = ws.jobs_dir / "export-1"
        export.mkdir()
        (export / "model.tflite").write_bytes(b"not really a model")
        _finished_job(export, "export", {"exports": [{"path": str(export / "model.tflite")}]}, 999_999_999,
                      time.time() + 1, parent=str(job / "run"))
        ws.update_settings(current_job=str(job))
        yield ws


def _same_rows(rows):
    return [{k: v for k, v in r.items() if k not in ("run_dir", "started")} for r in rows]


def test_save_then_open_elsewhere_gives_the_same_runs_curves_and_model(built, tmp_path):
    saved = save_project(built, tmp_path / "saved" / "colours", name="Colours")
    assert read_project(saved)["name"] == "Colours"
    # Opening must not need the original: move the project away and reopen into a fresh workspace.
    moved = shutil.move(str(saved), tmp_path / "moved")
    ws = Workspace(tmp_path / "elsewhere" / "fresh")
    summary = open_project(moved, ws)

    assert summary == {"name": "Colours", "created": read_project(moved)["created"], "photos": 12, "runs": 1}
    assert ws.counts() == built.counts() == {"blue": 6, "red": 6}
    assert _same_rows(run_history(ws.jobs_dir)) == _same_rows(run_history(built.jobs_dir))
    run = ws.jobs_dir / "run-1" / "run"
    assert run_curves(run) == run_curves(built.jobs_dir / "run-1" / "run")
    assert len(run_curves(run)) == 2
    assert job_status(ws.jobs_dir / "run-1")["status"] == "done"
    for name in ("samples.json", "predictions.json"):
        paths = [s["path"] for s in json.loads((run / name).read_text())]
        assert paths and all(p.startswith(str(ws.root.absolute())) and Path(p).is_file() for p in paths)
    export = job_status(ws.jobs_dir / "export-1")
    assert export["parent"] == str(run.absolute())
    assert Path(export["result"]["exports"][0]["path"]).read_bytes() == b"not really a model"
    assert ws.settings()["current_job"] == str((ws.jobs_dir / "run-1").absolute())
    assert ws.settings()["seed"] == 3 and "language" not in ws.settings()  # the receiver's language is theirs
    # The snapshot's photos are the workspace's, one file each (hard links), as in the original workspace.
    for photo in (ws.data_dir / "red").iterdir():
        assert os.path.samefile(photo, ws.jobs_dir / "run-1" / "data" / "red" / photo.name)

    # The run's TensorBoard logs travel with it, byte for byte; the projector names its files relative to itself.
    logs, original = run / TENSORBOARD_DIR, built.jobs_dir / "run-1" / "run" / TENSORBOARD_DIR
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    assert len(files) >= 7 and files == sorted(p.relative_to(logs) for p in logs.rglob("*") if p.is_file())
    assert all((logs / f).read_bytes() == (original / f).read_bytes() for f in files)
    assert (logs / PROJECTOR_FILES["sprite"]).is_file() and str(ws.root) not in (
        logs / PROJECTOR_FILES["config"]).read_text()

    # The reopened model gives the probabilities saved at training time, on the reopened photos.
    saved_predictions = json.loads((run / "predictions.json").read_text())
    reopened = load_run(run)
    assert reopened.classes == ["blue", "red"]
    probs, kept, skipped = reopened.predict_files([p["path"] for p in saved_predictions])
    assert len(kept) == len(saved_predictions) and not skipped
    np.testing.assert_allclose(probs, [p["probs"] for p in saved_predictions], atol=1e-4)


def test_a_zip_download_opens_in_another_session(built, tmp_path):
    saved = save_project(built, project_path(built, "zipped"))
    data = project_zip(saved)
    assert all(n.startswith("zipped/") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
    ws = Workspace(tmp_path / "other")
    assert open_project_zip(data, ws)["runs"] == 1
    assert _same_rows(run_history(ws.jobs_dir)) == _same_rows(run_history(built.jobs_dir))
    assert [p["name"] for p in saved_projects(built)] == ["zipped"]


def _blob_of(saved: Path, cls: str, file: str) -> Path:
    """The stored bytes of the photo ``data/<cls>/<file>`` of the saved project: its blob, named by its hash."""
    entry = next(e for e in read_project(saved)["data"][cls] if e["file"] == file)
    return saved / "blobs" / entry["sha256"]


def test_a_changed_photo_is_refused_by_name_and_the_workspace_is_untouched(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    _blob_of(saved, "red", "red_0.png").write_bytes(b"tampered")
    ws = Workspace(tmp_path / "target")
    ws.add_class("mine")
    with pytest.raises(TLError, match=r"'data/red/red_0\.png' \(stored as 'blobs/[0-9a-f]{64}'\) has changed since "
                                      r"it was saved"):
        open_project(saved, ws)
    assert ws.classes() == ["mine"] and not any(ws.jobs_dir.iterdir())
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_missing_model_file_is_named(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    (saved / "jobs" / "run-1" / "run" / "model.weights.h5").unlink()
    with pytest.raises(TLError, match=r"incomplete: 'jobs/run-1/run/model\.weights\.h5' is missing"):
        open_project(saved, Workspace(tmp_path / "target"))


def test_a_manifest_path_leading_outside_is_refused(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    project = json.loads((saved / "project.json").read_text())
    project["files"][0]["path"] = "jobs/../../evil.txt"
    (saved / "project.json").write_text(json.dumps(project))
    with pytest.raises(TLError, match="not allowed inside a project"):
        open_project(saved, Workspace(tmp_path / "target"))


def _replace_in_project(saved: Path, rel: str, change) -> None:
    """Rewrite one saved file with ``change(value)`` and update the manifest, as a hand-made project would."""
    target = saved / rel
    target.write_text(json.dumps(change(json.loads(target.read_text()))))
    project = json.loads((saved / "project.json").read_text())
    entry = next(f for f in project["files"] if f["path"] == rel)
    entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    entry["bytes"] = target.stat().st_size
    (saved / "project.json").write_text(json.dumps(project))


def test_a_project_naming_files_outside_itself_is_refused(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    outside = tmp_path / "server-photo.png"  # a file of the server the project's author should not see
    shutil.copy(next((built.data_dir / "red").iterdir()), outside)

    def point_outside(samples):
        samples[0]["path"] = str(outside)
        return samples

    _replace_in_project(saved, "jobs/run-1/run/samples.json", point_outside)
    ws = Workspace(tmp_path / "target")
    with pytest.raises(TLError, match=r"refers to .*server-photo\.png' \(under 'path'\), outside its workspace"):
        open_project(saved, ws)
    assert not any(ws.jobs_dir.iterdir())


def test_a_reopened_job_keeps_no_command_to_run_again(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    _replace_in_project(saved, "jobs/run-1/job.json",
                        lambda meta: {**meta, "argv": ["python", "-m", "tlcore", "train", "x", "--out", "/anywhere"]})
    ws = Workspace(tmp_path / "target")
    open_project(saved, ws)
    meta = json.loads((ws.jobs_dir / "run-1" / "job.json").read_text())
    assert "argv" not in meta and meta["kind"] == "train"
    assert job_status(ws.jobs_dir / "run-1")["status"] == "done"


def test_a_folder_without_project_file_is_not_a_project(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(TLError, match="is not a Transfer Lab project"):
        open_project(tmp_path / "random", Workspace(tmp_path / "ws"))


def test_an_unwritable_destination_leaves_no_partial_project(built, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    with pytest.raises(TLError, match="cannot write the project to"):
        save_project(built, tmp_path / "blocker" / "p")
    assert (tmp_path / "blocker").read_text() == "a file where a folder is needed"


def test_a_failure_while_saving_leaves_nothing_behind(built, tmp_path, monkeypatch):
    real, calls = project_mod._copy_with_digest, []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(project_mod, "_copy_with_digest", failing)
    with pytest.raises(TLError, match=r"cannot write the project to .*No space left on device"):
        save_project(built, tmp_path / "out" / "p")
    assert list((tmp_path / "out").iterdir()) == []


def test_saving_over_a_folder_that_is_not_a_project_is_refused(built, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.txt").write_text("precious")
    with pytest.raises(TLError, match="is not a Transfer Lab project; choose another folder"):
        save_project(built, tmp_path / "docs")
    assert (tmp_path / "docs" / "thesis.txt").read_text() == "precious"


def test_saving_waits_for_running_jobs(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (ws.jobs_dir / "run-live").mkdir()
    (ws.jobs_dir / "run-live" / "job.json").write_text(json.dumps({"kind": "train", "pid": os.getpid(), "started": 1}))
    with pytest.raises(TLError, match="'run-live' is still running"):
        save_project(ws, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_project_names_are_plain_folder_names(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert project_path(ws, " My project 2 ").name == "My project 2"
    for bad in ("../up", "", ".hidden", "a/b"):
        with pytest.raises(TLError, match="is not allowed"):
            project_path(ws, bad)


def _zip(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _manifest(data: dict) -> str:
    return json.dumps({"format": 1, "name": "x", "created": "", "settings": {}, "data": data, "files": []})


def test_a_zip_promising_far_more_than_it_holds_is_refused(tmp_path):
    bomb = _zip({"p/project.json": _manifest({"red": [{"file": "a.png", "sha256": "0" * 64, "bytes": 10**11}]})})
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(TLError, match="promises 100000 MB of files"):
        open_project_zip(bomb, ws)
    assert not any(ws.data_dir.iterdir())


def test_only_the_files_the_manifest_lists_leave_a_zip(built, tmp_path):
    photo = (built.data_dir / "red" / "red_0.png").read_bytes()
    entry = {"file": "red_0.png", "sha256": hashlib.sha256(photo).hexdigest(), "bytes": len(photo)}
    data = _zip({"p/project.json": _manifest({"red": [entry]}), "p/data/red/red_0.png": photo,
                 "p/../../evil.txt": "outside", "p/data/red/extra.png": photo})
    ws = Workspace(tmp_path / "deep" / "ws")
    assert open_project_zip(data, ws)["photos"] == 1
    assert [p.name for p in ws.images("red")] == ["red_0.png"]
    assert not list(tmp_path.rglob("evil.txt"))


def test_saving_writes_every_path_relative_to_the_workspace_and_no_command_line(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    project = json.loads((saved / "project.json").read_text())
    assert project["format"] == 3 and project["settings"]["current_job"] == "jobs/run-1"
    samples = json.loads((saved / "jobs" / "run-1" / "run" / "samples.json").read_text())
    assert samples and all(s["path"].startswith("jobs/run-1/data/") for s in samples)
    export = json.loads((saved / "jobs" / "export-1" / "job.json").read_text())
    assert export["parent"] == "jobs/run-1/run" and "argv" not in export and export["pid"] == 0
    result = json.loads((saved / "jobs" / "export-1" / "result.json").read_text())
    assert result["result"]["exports"][0]["path"] == "jobs/export-1/model.tflite"
    origin = (str(built.root.absolute()), str(built.root.resolve()))
    assert not [p for p in saved.rglob("*.json*") if any(o in p.read_text() for o in origin)]


def test_saving_into_the_session_counts_against_its_cap(built, tmp_path):
    ws = Workspace(built.root)  # the same folder, with a cap of its own
    ws.forget_usage()
    ws.max_session_mb = ws.used_bytes() / 2**20 + 0.01  # a second copy of the photos and runs does not fit
    with pytest.raises(TLError, match=r"^saving the project 'full': it would bring this session to .* over the "
                                      r"limit of .* MB per session"):
        save_project(ws, project_path(ws, "full"), name="full")
    assert not project_path(ws, "full").exists()
    assert (save_project(ws, tmp_path / "elsewhere") / "project.json").is_file()  # not the session's disk


# Issue 17, item 7: each photo stored once; a project is measured against what opening accepts -----------------

def _distinct_photos(ws: Workspace) -> dict[str, int]:
    """sha256 -> bytes of every distinct photo of the workspace: its data/ and the jobs' snapshots."""
    photos = [p for p in ws.root.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg")
              and TENSORBOARD_DIR not in p.relative_to(ws.root).parts]
    assert {p.relative_to(ws.root).parts[0] for p in photos} == {"data", "jobs"}
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in photos}


def _sprite(ws: Workspace) -> dict[str, int]:
    """sha256 -> bytes of the training run's TensorBoard sprite."""
    path = ws.jobs_dir / "run-1" / "run" / TENSORBOARD_DIR / PROJECTOR_FILES["sprite"]
    return {hashlib.sha256(path.read_bytes()).hexdigest(): path.stat().st_size}


def test_a_snapshot_sharing_the_photos_of_data_stores_them_once(built, tmp_path):
    snapshot = sorted((built.jobs_dir / "run-1" / "data").rglob("*.png"))
    assert len(snapshot) == sum(built.counts().values()) == 12  # the training job's snapshot: every photo again
    distinct = _distinct_photos(built)
    assert len(distinct) == 12
    check = save_check(built, tmp_path / "p")
    saved = save_project(built, tmp_path / "p")

    # The run's TensorBoard sprite is an image a job made: stored and checked like a photo.
    sprite = _sprite(built)
    blobs = sorted((saved / "blobs").iterdir())
    assert [b.name for b in blobs] == sorted({**distinct, **sprite})  # one blob per distinct photo, named by its hash
    assert sum(b.stat().st_size for b in blobs) == sum(distinct.values()) + sum(sprite.values())
    assert all(hashlib.sha256(b.read_bytes()).hexdigest() == b.name for b in blobs)
    assert not [p for p in saved.rglob("*.png")] and not (saved / "data").exists()  # no second copy anywhere
    project = read_project(saved)
    listed = [e["sha256"] for items in project["data"].values() for e in items]
    listed += [f["sha256"] for f in project["files"] if f["path"].startswith("jobs/run-1/data/")]
    assert len(listed) == 24 and set(listed) == set(distinct)  # data/ and the snapshot both refer to the blobs

    # Measured before writing: the folder to the byte, its ZIP at most what was promised.
    on_disk = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())
    assert check["bytes"] == on_disk
    assert (check["photos"], check["photo_bytes"]) == (13, sum(distinct.values()) + sum(sprite.values()))
    assert on_disk < sum(p.stat().st_size for p in built.root.rglob("*") if p.is_file())  # not the 24 photo files
    # A bound, never below the real ZIP (weights and photos barely compress), and barely above the folder.
    assert len(project_zip(saved)) <= check["zip_bytes"] <= 1.01 * on_disk
    assert check["refusal"] is None and check["warnings"] == []


def test_copies_with_the_same_bytes_are_stored_once_too(tmp_path):
    ws = Workspace(tmp_path / "ws")
    make_image_folder(ws.data_dir, n_per_class=3)
    # A snapshot made where hard links fail (another device): copies, other files with the same bytes.
    shutil.copytree(ws.data_dir, ws.jobs_dir / "run-1" / "data")
    (ws.jobs_dir / "run-1" / "job.json").write_text(json.dumps({"kind": "train", "pid": 0, "started": 1.0}))
    assert save_check(ws)["photos"] == 6
    saved = save_project(ws, tmp_path / "p")
    assert sorted(b.name for b in (saved / "blobs").iterdir()) == sorted(_distinct_photos(ws))
    other = Workspace(tmp_path / "other")
    open_project(saved, other)
    assert os.path.samefile(other.data_dir / "red" / "red_0.png", other.jobs_dir / "run-1" / "data" / "red" / "red_0.png")
    assert other.used_bytes() < 1.2 * sum(_distinct_photos(ws).values())  # opened: one copy of the photos too


def _untouched(ws: Workspace) -> None:
    assert ws.classes() == ["mine"] and not any(ws.jobs_dir.iterdir())
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_missing_blob_refuses_the_project_naming_the_photo(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    _blob_of(saved, "blue", "blue_3.png").unlink()
    ws = Workspace(tmp_path / "target")
    ws.add_class("mine")
    with pytest.raises(TLError, match=r"^the project is incomplete: 'data/blue/blue_3\.png' \(stored as "
                                      r"'blobs/[0-9a-f]{64}'\) is missing$"):
        open_project(saved, ws)
    _untouched(ws)


def test_a_tampered_blob_in_a_zip_is_refused(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    blob = _blob_of(saved, "red", "red_2.png")
    blob.write_bytes(blob.read_bytes()[:-1] + b"x")  # the same size, one byte changed
    ws = Workspace(tmp_path / "target")
    ws.add_class("mine")
    with pytest.raises(TLError, match=r"^the project's file 'data/red/red_2\.png' \(stored as 'blobs/[0-9a-f]{64}'\) "
                                      r"has changed since it was saved"):
        open_project_zip(project_zip(saved), ws)
    _untouched(ws)


def test_a_hash_that_is_not_a_sha256_never_names_a_blob(built, tmp_path):
    saved = save_project(built, tmp_path / "p")
    (tmp_path / "secret.png").write_bytes((built.data_dir / "red" / "red_0.png").read_bytes())
    project = json.loads((saved / "project.json").read_text())
    project["data"]["red"][0]["sha256"] = "../../secret.png"
    (saved / "project.json").write_text(json.dumps(project))
    ws = Workspace(tmp_path / "target")
    ws.add_class("mine")
    with pytest.raises(TLError, match=r"^the project's project\.json is damaged \(the file 'data/red/red_0\.png' has "
                                      r"the checksum '\.\./\.\./secret\.png', which is not a SHA-256\)$"):
        open_project(saved, ws)
    _untouched(ws)


def _as_format_2(saved: Path) -> Path:
    """The saved project as format 2 stored it: every photo at its own path (the snapshot's too), no blobs."""
    project = json.loads((saved / "project.json").read_text())
    photos = [(f"data/{cls}/{e['file']}", e["sha256"]) for cls, items in project["data"].items() for e in items]
    photos += [(f["path"], f["sha256"]) for f in project["files"] if not (saved / f["path"]).exists()]
    for rel, sha in photos:
        (saved / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(saved / "blobs" / sha, saved / rel)
    shutil.rmtree(saved / "blobs")
    (saved / "project.json").write_text(json.dumps({**project, "format": 2}))
    return saved


def test_a_format_2_project_still_opens_its_photos_checked_one_by_one(built, tmp_path):
    old = _as_format_2(save_project(built, tmp_path / "old"))
    assert len(list(old.rglob("*.png"))) == 24
    ws = Workspace(tmp_path / "target")
    assert open_project(old, ws)["photos"] == 12
    assert ws.counts() == built.counts()
    assert _same_rows(run_history(ws.jobs_dir)) == _same_rows(run_history(built.jobs_dir))
    assert run_curves(ws.jobs_dir / "run-1" / "run") == run_curves(built.jobs_dir / "run-1" / "run")
    assert os.path.samefile(ws.data_dir / "red" / "red_0.png", ws.jobs_dir / "run-1" / "data" / "red" / "red_0.png")

    # Each file of an old format is its own: the snapshot's copy is checked too, even when data/'s is intact.
    (old / "jobs" / "run-1" / "data" / "red" / "red_1.png").write_bytes(b"tampered")
    with pytest.raises(TLError, match=r"^the project's file 'jobs/run-1/data/red/red_1\.png' has changed since"):
        open_project(old, Workspace(tmp_path / "target2"))


def test_a_project_no_session_could_open_is_refused_when_saved(built, tmp_path, monkeypatch):
    opened = save_check(built)["open_bytes"]
    assert opened == sum(_distinct_photos(built).values()) + sum(
        f["bytes"] for f in read_project(save_project(built, tmp_path / "before"))["files"]
        if not f["path"].startswith("jobs/run-1/data/"))
    # The operator's session cap, one byte below what opening the project writes.
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", repr((opened - 1) / MB))
    cap = (opened - 1) / MB
    check = save_check(built, name="big")
    assert check["refusal"]["code"] == "session" and check["session_cap_mb"] == cap
    message = (f"saving the project 'big': it would take {opened / MB:.1f} MB once opened, over the limit of {cap:g} "
               "MB per session, so no session could open it; delete some runs or photos first")
    assert check["refusal"]["message"] == message
    with pytest.raises(TLError, match=f"^{re.escape(message)}$"):
        save_project(built, tmp_path / "big")
    assert not (tmp_path / "big").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # The check says what opening does: the same project, saved before the cap, does not open.
    with pytest.raises(TLError, match=rf"^opening the project: .* over the limit of {re.escape(f'{cap:g}')} MB"):
        open_project(tmp_path / "before", Workspace(tmp_path / "receiver"))

    # At the cap, both accept.
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", repr(opened / MB))
    assert save_check(built)["refusal"] is None
    open_project(save_project(built, tmp_path / "fits"), Workspace(tmp_path / "receiver"))


def test_a_photo_over_the_per_file_cap_is_refused_when_saved(built, tmp_path):
    ws = Workspace(built.root)  # the same folder, with the caps of another dashboard
    largest = max(p.stat().st_size for p in built.data_dir.rglob("*.png"))
    assert (built.data_dir / "blue" / "blue_3.png").stat().st_size == largest
    ws.max_file_mb = (largest - 1) / MB
    with pytest.raises(TLError, match=rf"^saving the project 'p': its photo 'data/blue/blue_3\.png' takes 0\.0 MB, over "
                                      rf"the limit of {re.escape(f'{ws.max_file_mb:g}')} MB per file, so no session "
                                      r"could open it; remove that photo first$"):
        save_project(ws, tmp_path / "p")
    assert not (tmp_path / "p").exists()
    # The run's TensorBoard sprite is checked like a photo too.
    ws.max_file_mb = max(largest, *_sprite(built).values()) / MB
    assert save_check(ws)["refusal"] is None


def test_a_zip_over_the_upload_cap_is_a_warning_and_the_project_is_saved(built, tmp_path):
    ws = Workspace(built.root)
    ws.max_file_mb = 1  # the dashboard's server.maxUploadSize: every photo fits, the run's weights do not
    check = save_check(ws, tmp_path / "big")
    assert check["refusal"] is None
    [warning] = check["warnings"]
    assert (warning["code"], warning["cap_mb"], warning["mb"]) == ("upload", 1, check["zip_bytes"] / MB)
    assert warning["message"] == (
        f"as a ZIP the project 'big' would take up to {check['zip_bytes'] / MB:.1f} MB, over the limit of 1 MB per "
        "upload, so it would not open by uploading it to the dashboard, only from this session's saved projects or "
        "with python -m tlcore project open")
    saved = save_project(ws, tmp_path / "big")
    assert len(project_zip(saved)) > 1 * MB  # true: the dashboard's uploader would refuse this ZIP
    ws.max_file_mb = check["zip_bytes"] / MB
    assert save_check(ws, tmp_path / "big")["warnings"] == []
