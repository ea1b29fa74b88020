"""Hostile projects (issue 14, items 1, 2, 3 and 10): hand-made with a valid manifest (correct SHA-256s), so only
the checks of opening stop them. Each is refused with one sentence and the workspace left as it was, or opens
with every path inside the receiving workspace; photos obey the upload rules; class names the one rule."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_image_folder
from tests.core.test_experiments import fake_job
from tlcore.cli import main
from tlcore.data.datasets import load_dataset
from tlcore.io.errors import TLError
from tlcore.lab.experiments import start_scratch_run
from tlcore.jobs.runner import job_status, list_jobs
from tlcore.lab.project import open_project, open_project_zip
from tlcore.training.config import TrainConfig
from tlcore.lab.workspace import Workspace


# Hand-made projects -----------------------------------------------------------------------------------

def png(colour=(220, 30, 30), seed=0, side=8) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def honest() -> tuple[dict, dict, dict]:
    """(photos ``{class: {file: bytes}}``, job files ``{rel: JSON value, list of events or bytes}``, settings) of
    a small project using every path-valued key of job files, each written relative to the workspace root."""
    photos = {"red": {"r0.png": png(seed=1), "r1.png": png(seed=2)},
              "blue": {"b0.png": png((40, 60, 220), 3), "b1.png": png((40, 60, 220), 4)}}
    snapshot = {f"jobs/run-1/data/{cls}/{name}": data for cls, files in photos.items() for name, data in files.items()}
    samples = [{"path": f"jobs/run-1/data/{cls}/{name}", "label": cls, "split": split}
               for cls, files in photos.items() for name, split in zip(files, ("train", "test"))]
    train = {"weights": None, "epochs": 2, "seed": 3, "split": [0.5, 0.25, 0.25]}
    files = {
        **snapshot,
        "jobs/run-1/job.json": {"kind": "train", "pid": 0, "started": 1.0},
        "jobs/run-1/result.json": {"exit_code": 0, "pid": 0, "result": {
            "run_dir": "jobs/run-1/run", "val_accuracy": 1.0, "skipped": [{"path": "jobs/run-1/data/red/r9.png",
                                                                           "reason": "corrupt"}]}},
        "jobs/run-1/events.jsonl": [{"type": "start", "epochs": 2}, {"type": "done", "result": {
            "run_dir": "jobs/run-1/run"}}],
        "jobs/run-1/run/config.json": {"backbone": "efficientnet_lite0", "weights": None, "input_size": 224,
                                       "train": train, "fine_tuned": False, "classes": ["blue", "red"]},
        "jobs/run-1/run/samples.json": samples,
        "jobs/run-1/run/predictions.json": [{**s, "probs": [0.5, 0.5]} for s in samples if s["split"] == "test"],
        "jobs/run-1/run/metrics.json": {"history": [], "val_accuracy": 1.0, "skipped": []},
        "jobs/run-1/run/labels.txt": b"blue\nred\n",
        "jobs/export-1/job.json": {"kind": "export", "pid": 0, "started": 2.0, "parent": "jobs/run-1/run"},
        "jobs/export-1/result.json": {"exit_code": 0, "pid": 0, "result": {
            "run_dir": "jobs/run-1/run", "bundle": "jobs/export-1/bundle.zip", "warnings": [],
            "verification_data": {"source": "run test split", "n": 0, "skipped": []},
            "exports": [{"format": "tflite-float32", "path": "jobs/export-1/exports/model_float32.tflite",
                         "labels": "jobs/export-1/exports/labels.txt", "size_bytes": 4,
                         "input": {"dtype": "float32"}}]}},
        "jobs/export-1/exports/model_float32.tflite": b"fake",
        "jobs/export-1/exports/labels.txt": b"blue\nred\n",
        "jobs/export-1/bundle.zip": b"a bundle",
        "jobs/ideal-1/job.json": {"kind": "ideal", "pid": 0, "started": 3.0, "parent": "jobs/run-1/run"},
        "jobs/ideal-1/events.jsonl": [{"type": "ideal", "step": 0, "total": 5,
                                       "image": "jobs/ideal-1/frames/step_0000.png"}],
        "jobs/ideal-1/result.json": {"exit_code": 0, "pid": 0, "result": {
            "class": "red", "image": "jobs/ideal-1/frames/ideal.png",
            "snapshots": ["jobs/ideal-1/frames/step_0000.png"]}},
        "jobs/ideal-1/frames/step_0000.png": png(seed=5),
        "jobs/ideal-1/frames/ideal.png": png(seed=6),
        "jobs/attack-1/job.json": {"kind": "attack", "pid": 0, "started": 4.0, "parent": "jobs/run-1/run"},
        "jobs/attack-1/result.json": {"exit_code": 0, "pid": 0, "result": {"out": "jobs/attack-1/images",
                                                                            "skipped": []}},
        "jobs/scratch-1/job.json": {"kind": "train", "pid": 0, "started": 5.0, "scratch_of": "jobs/run-1/run"},
    }
    settings = {"backbone": "efficientnet_lite0", "split": [80, 10, 10], "seed": 3, "current_job": "jobs/run-1",
                "language": "fr"}
    return photos, files, settings


def _bytes(rel: str, value) -> bytes:
    if isinstance(value, bytes):
        return value
    if rel.endswith(".jsonl"):
        return "".join(json.dumps(e) + "\n" for e in value).encode("utf-8")
    return json.dumps(value).encode("utf-8")


def as_format_1(value):
    """``value`` as format 1 wrote it: paths into the workspace absolute, the workspace written ${WORKSPACE}."""
    if isinstance(value, str) and value.startswith("jobs/"):
        return "${WORKSPACE}/" + value
    if isinstance(value, list):
        return [as_format_1(v) for v in value]
    if isinstance(value, dict):
        return {k: as_format_1(v) for k, v in value.items()}
    return value


def stored_as(rel: str, data: bytes, fmt: int) -> str:
    """Where a project of format ``fmt`` keeps the file listed as ``rel``: from format 3 a photo (of data/, of a
    job's snapshot, or any image) is kept once, as blobs/<its sha256>."""
    parts = rel.split("/")
    photo = parts[0] == "data" or (len(parts) > 3 and parts[2] == "data") or rel.endswith(".png")
    return f"blobs/{hashlib.sha256(data).hexdigest()}" if fmt >= 3 and photo else rel


def contents(photos: dict, files: dict, settings: dict, fmt: int = 3) -> dict[str, bytes]:
    """Every file of the project folder in format ``fmt``, ``project.json`` with a correct manifest included."""
    if fmt == 1:
        files = {rel: v if isinstance(v, bytes) else as_format_1(v) for rel, v in files.items()}
        settings = as_format_1(settings)
    listed = {f"data/{cls}/{name}": data for cls, items in photos.items() for name, data in items.items()}
    listed.update({rel: _bytes(rel, value) for rel, value in files.items()})

    def entry(data: bytes) -> dict:
        return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    manifest = {
        "format": fmt, "name": "hand-made", "created": "2026-01-01T00:00:00Z", "settings": settings,
        "data": {cls: [{"file": name, **entry(data)} for name, data in items.items()] for cls, items in photos.items()},
        "files": [{"path": rel, **entry(listed[rel])} for rel in files], "runs": 1,
    }
    out = {stored_as(rel, data, fmt): data for rel, data in listed.items()}  # a blob shared by several paths once
    out["project.json"] = json.dumps(manifest).encode("utf-8")
    return out


def write_folder(dest: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest


def zip_bytes(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    """The project as a ZIP under one top folder; the entries named in ``links`` are symbolic links."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            info = zipfile.ZipInfo(f"p/{rel}")
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((stat.S_IFLNK | 0o777) if rel in links else (stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture
def planted(tmp_path, isolated_cache):
    """Secrets a project must never reach: a file outside every workspace, and another session's folder."""
    secret = tmp_path / "secret" / "passwd.png"
    secret.parent.mkdir()
    secret.write_bytes(png((1, 2, 3), 99))
    other = isolated_cache / "sessions" / ("f" * 32)
    make_image_folder(other / "data", n_per_class=1)
    return {"secret": secret, "other": other}


@pytest.fixture(params=[1, 2, 3], ids=["format1", "format2", "format3"])
def fmt(request) -> int:
    """Every format a project may have: formats 1 (absolute paths) and 2 (each photo at its path) still open,
    so they are checked the same as format 3 (each photo once, as a blob)."""
    return request.param


@pytest.fixture
def ws(isolated_cache) -> Workspace:
    """A receiving session with one photo of its own (what a refused project must leave untouched)."""
    workspace = Workspace(isolated_cache / "sessions" / ("a" * 32))
    workspace.add_image("mine", "m.png", png((9, 9, 9)))
    return workspace


def _untouched(workspace: Workspace) -> None:
    assert workspace.classes() == ["mine"] and [p.name for p in workspace.images("mine")] == ["m.png"]
    assert not any(workspace.jobs_dir.iterdir())
    assert not [p for p in workspace.root.iterdir() if p.name.startswith(".open-")]  # no staging folder left


# Item 1: every path from a project stays inside the receiving workspace ---------------------------------

def _json_values(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _json_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_values(v)


def test_an_honest_project_opens_with_every_path_absolute_inside_the_workspace(ws):
    photos, files, settings = honest()
    summary = open_project_zip(zip_bytes(contents(photos, files, settings)), ws)
    assert summary["photos"] == 4 and ws.counts() == {"blue": 2, "red": 2}
    root = str(ws.root.absolute())
    seen = set()
    for path in ws.jobs_dir.rglob("*.json*"):
        lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for key, value in _json_values([json.loads(line) for line in lines]):
            if key in ("path", "parent", "scratch_of", "run_dir", "labels", "bundle", "image", "out"):
                assert value.startswith(root + "/"), (path, key, value)
                seen.add(key)
            if key == "snapshots":
                assert all(v.startswith(root + "/") for v in value)
    assert seen == {"path", "parent", "scratch_of", "run_dir", "labels", "bundle", "image", "out"}
    export = job_status(ws.jobs_dir / "export-1")
    assert export["status"] == "done" and export["parent"] == str(ws.jobs_dir.absolute() / "run-1" / "run")
    assert Path(export["result"]["bundle"]).read_bytes() == b"a bundle"
    assert export["result"]["verification_data"]["source"] == "run test split"  # a word, not a path
    assert json.loads((ws.jobs_dir / "run-1" / "run" / "config.json").read_text())["weights"] is None
    assert ws.settings()["current_job"] == str(ws.jobs_dir.absolute() / "run-1")
    assert "language" not in ws.settings()


def test_a_format_1_project_still_opens_its_placeholder_becoming_the_workspace(ws):
    photos, files, settings = honest()
    open_project_zip(zip_bytes(contents(photos, files, settings, fmt=1)), ws)
    samples = json.loads((ws.jobs_dir / "run-1" / "run" / "samples.json").read_text())
    assert all(s["path"].startswith(str(ws.jobs_dir.absolute() / "run-1" / "data")) for s in samples)
    assert ws.settings()["current_job"] == str(ws.jobs_dir.absolute() / "run-1")


def _hostile_cases(planted: dict) -> dict:
    """One change each to the honest project: a path under every key that leads outside, as absolute paths,
    ``..``, the format 1 placeholder or nested inside lists and dicts."""
    secret, other = str(planted["secret"]), planted["other"]
    up = f"../{other.name}/data/red/red_0.png"  # relative to the workspace root: another session's photo

    def result(job):
        return lambda f: f[f"jobs/{job}/result.json"]["result"]

    return {
        "samples absolute": lambda f: f["jobs/run-1/run/samples.json"][0].update(path=secret),
        "predictions ..": lambda f: f["jobs/run-1/run/predictions.json"][0].update(path=up),
        "skipped in metrics": lambda f: f["jobs/run-1/run/metrics.json"].update(skipped=[{"path": secret}]),
        "bundle": lambda f: result("export-1")(f).update(bundle=secret),
        "export path to the sessions": lambda f: result("export-1")(f)["exports"][0].update(path="../"),
        "labels": lambda f: result("export-1")(f)["exports"][0].update(labels=secret),
        "source": lambda f: result("export-1")(f)["verification_data"].update(source=str(other)),
        "run_dir": lambda f: result("run-1")(f).update(run_dir="/"),
        "image in an event": lambda f: f["jobs/ideal-1/events.jsonl"][0].update(image=secret),
        "image in the result": lambda f: result("ideal-1")(f).update(image="${WORKSPACE}/../../secret"),
        "snapshots": lambda f: result("ideal-1")(f)["snapshots"].append(secret),
        "out": lambda f: result("attack-1")(f).update(out="/tmp"),
        "parent": lambda f: f["jobs/export-1/job.json"].update(parent=str(other / "jobs" / "run" / "run")),
        "scratch_of": lambda f: f["jobs/scratch-1/job.json"].update(scratch_of="jobs/../../"),
        "weights file": lambda f: f["jobs/run-1/run/config.json"]["train"].update(weights=secret),
        "nested list and dict": lambda f: result("run-1")(f).update(extra={"deep": [{"image": [up]}]}),
        "a path that is not a string": lambda f: f["jobs/run-1/run/samples.json"][0].update(path=5),
    }


CASES = list(_hostile_cases({"secret": Path("/s"), "other": Path("/o")}))


@pytest.mark.parametrize("case", CASES)
def test_a_path_leading_outside_refuses_the_whole_project(case, planted, ws, fmt):
    photos, files, settings = honest()
    _hostile_cases(planted)[case](files)
    with pytest.raises(TLError, match=r"outside its workspace; it cannot be opened|is not a path") as caught:
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    assert "\n" not in str(caught.value)
    _untouched(ws)


def test_a_path_through_a_link_of_the_receiving_workspace_is_refused(planted, ws, fmt):
    (ws.root / "projects").mkdir()
    (ws.root / "projects" / "door").symlink_to(planted["secret"].parent)  # inside by name, outside once resolved
    photos, files, settings = honest()
    files["jobs/export-1/result.json"]["result"]["bundle"] = "projects/door/passwd.png"
    with pytest.raises(TLError, match=r"'projects/door/passwd\.png' \(under 'bundle'\), outside its workspace"):
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    _untouched(ws)


@pytest.mark.parametrize("current", ["../" + "f" * 32 + "/jobs/run", "/etc", "${WORKSPACE}/../x", "jobs/nope",
                                     "data", "jobs/run-1/run"])
def test_the_current_job_must_be_one_of_the_projects_jobs(current, ws, fmt):
    photos, files, settings = honest()
    with pytest.raises(TLError, match=r"current job .* (is outside its workspace|is not one of its jobs)"):
        open_project_zip(zip_bytes(contents(photos, files, {**settings, "current_job": current}, fmt)), ws)
    _untouched(ws)


def test_only_the_settings_the_dashboard_knows_are_kept_with_their_types_checked(ws, fmt):
    photos, files, _ = honest()
    junk = {"backbone": "--out=/etc", "split": [50, 50], "seed": "7; rm -rf /", "class_weights": "x",
            "anything": "/etc/passwd", "language": "fr"}
    open_project_zip(zip_bytes(contents(photos, files, junk, fmt)), ws)
    assert ws.settings() == {"current_job": None}
    for split in ([True, 0, 99], [100, 0, 0], [80.0, 10, 10], [80, 10, 11]):
        open_project_zip(zip_bytes(contents(photos, files, {"split": split, "seed": -1}, fmt)), ws)
        assert "split" not in ws.settings() and "seed" not in ws.settings()
    good = {"backbone": "mobilenet_v2", "split": [70, 20, 10], "seed": 7}
    open_project_zip(zip_bytes(contents(photos, files, good, fmt)), ws)
    assert ws.settings() == {**good, "current_job": None}


def test_no_job_keeps_a_command_line_or_a_process(ws, fmt):
    """Item 2, the project side: argv goes whatever else job.json holds (pid or not), and every pid becomes 0."""
    photos, files, settings = honest()
    files["jobs/run-1/job.json"] = {"kind": "train", "started": 1.0,  # no pid: today's check kept its argv
                                    "argv": ["python", "-m", "tlcore", "train", "x", "--out=/tmp/evil"]}
    del files["jobs/run-1/result.json"]["pid"]
    files["jobs/export-1/job.json"].update(pid=os.getpid(), argv=["sh", "-c", "id"])  # a live process
    files["jobs/export-1/result.json"]["pid"] = os.getpid()
    open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    for job in list_jobs(ws.jobs_dir):
        meta = json.loads((job / "job.json").read_text())
        assert "argv" not in meta and meta.get("pid", 0) == 0, meta
    assert job_status(ws.jobs_dir / "run-1")["status"] == job_status(ws.jobs_dir / "export-1")["status"] == "done"


# Links --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["data/red/r0.png", "jobs/export-1/bundle.zip"])
def test_a_zip_entry_that_is_a_symbolic_link_is_refused(entry, ws, fmt):
    photos, files, settings = honest()
    target = b"/etc/passwd"  # what a link entry holds: the path it points to
    if entry.startswith("data/"):
        photos["red"]["r0.png"] = target
    else:
        files[entry] = target
    stored = stored_as(entry, target, fmt)
    with pytest.raises(TLError, match=rf"holds '{stored}' as a symbolic link"):
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt), links=(stored,)), ws)
    _untouched(ws)


def test_a_project_folder_holding_a_link_to_a_file_outside_is_refused(tmp_path, planted, ws, fmt):
    photos, files, settings = honest()
    photos["red"]["r0.png"] = planted["secret"].read_bytes()  # the manifest even matches the secret
    folder = write_folder(tmp_path / "proj", contents(photos, files, settings, fmt))
    stored = stored_as("data/red/r0.png", photos["red"]["r0.png"], fmt)
    (folder / stored).unlink()
    (folder / stored).symlink_to(planted["secret"])
    with pytest.raises(TLError, match=rf"'{stored}' is a symbolic link"):
        open_project(folder, ws)
    _untouched(ws)


def test_a_project_folder_with_a_linked_folder_is_refused(tmp_path, ws, fmt):
    photos, files, settings = honest()
    folder = write_folder(tmp_path / "proj", contents(photos, files, settings, fmt))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(folder / "jobs" / "export-1" / "exports", elsewhere)
    (folder / "jobs" / "export-1" / "exports").symlink_to(elsewhere)
    with pytest.raises(TLError, match=r"'jobs/export-1/exports/[^']+' is a symbolic link"):
        open_project(folder, ws)
    _untouched(ws)


def test_a_project_folder_whose_blobs_folder_is_a_link_is_refused(tmp_path, ws):
    photos, files, settings = honest()
    folder = write_folder(tmp_path / "proj", contents(photos, files, settings))
    shutil.move(folder / "blobs", tmp_path / "elsewhere")
    (folder / "blobs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TLError, match=r"'blobs/[0-9a-f]{64}' is a symbolic link"):
        open_project(folder, ws)
    _untouched(ws)


# Issue 17, item 7: format 3 keeps each photo once, as a blob named by its hash --------------------------------

def test_the_snapshot_shares_the_blobs_of_data_and_opens_as_links(ws):
    photos, files, settings = honest()
    project = contents(photos, files, settings)
    assert sorted(k for k in project if k.startswith("blobs/")) == sorted(
        f"blobs/{hashlib.sha256(d).hexdigest()}" for d in [*photos["red"].values(), *photos["blue"].values(),
                                                            files["jobs/ideal-1/frames/step_0000.png"],
                                                            files["jobs/ideal-1/frames/ideal.png"]])
    assert not [k for k in project if k.startswith(("data/", "jobs/run-1/data/"))]
    open_project_zip(zip_bytes(project), ws)
    assert os.path.samefile(ws.data_dir / "red" / "r0.png", ws.jobs_dir / "run-1" / "data" / "red" / "r0.png")
    assert (ws.jobs_dir / "run-1" / "data" / "blue" / "b1.png").read_bytes() == photos["blue"]["b1.png"]


def test_one_blob_listed_with_two_sizes_is_refused(ws):
    photos, files, settings = honest()
    project = contents(photos, files, settings)
    manifest = json.loads(project["project.json"])
    entry = next(f for f in manifest["files"] if f["path"] == "jobs/run-1/data/red/r0.png")
    entry["bytes"] -= 1  # the same hash as data/red/r0.png, one byte less: a prefix of the blob
    project["project.json"] = json.dumps(manifest).encode("utf-8")
    with pytest.raises(TLError, match=r"'jobs/run-1/data/red/r0\.png' \(stored as 'blobs/[0-9a-f]{64}'\) has changed"):
        open_project_zip(zip_bytes(project), ws)
    _untouched(ws)


def test_a_blob_listed_under_many_paths_is_counted_copy_by_copy_when_links_fail(ws, monkeypatch):
    """A photo listed under many paths costs one file, linked; where the file system refuses links each copy
    counts against the session cap, so a small ZIP naming one blob a thousand times cannot fill the disk."""
    photos, files, settings = honest()
    big = png(side=64)
    photos["red"]["big.png"] = big
    files.update({f"jobs/run-1/data/red/big_{i}.png": big for i in range(40)})
    data = zip_bytes(contents(photos, files, settings))
    ws.forget_usage()
    ws.max_session_mb = (ws.used_bytes() + sum(len(v) for v in contents(photos, files, settings).values())
                         + 10 * len(big)) / 2**20  # room for the project and ten more copies of the photo, not forty
    real_link = os.link

    def refused(src, dst, *args, **kwargs):
        raise OSError(31, "Too many links")

    monkeypatch.setattr(os, "link", refused)
    with pytest.raises(TLError, match=r"^opening the project: it would bring this session to .* over the limit of"):
        open_project_zip(data, ws)
    _untouched(ws)
    monkeypatch.setattr(os, "link", real_link)
    open_project_zip(data, ws)  # with links, the forty paths are one file
    assert os.path.samefile(ws.data_dir / "red" / "big.png", ws.jobs_dir / "run-1" / "data" / "red" / "big_39.png")


# Item 3: the rules of uploads, before anything is written -----------------------------------------------

def test_a_small_zip_promising_a_huge_zero_photo_is_refused_before_anything_is_written(ws, fmt):
    """The issue's example: a 97 KB project ZIP wrote a 95 MB all-zero a.png into a session capped at 1 MB."""
    ws.max_session_mb = 1
    photos, files, settings = honest()
    photos["red"]["a.png"] = bytes(95 * 1024 * 1024)
    data = zip_bytes(contents(photos, files, settings, fmt))
    assert len(data) < 200_000
    before = sorted(p for p in ws.root.rglob("*"))
    with pytest.raises(TLError, match=r"^opening the project: it would bring this session to \d+\.\d MB on disk, "
                                      r"over the limit of 1 MB per session"):
        open_project_zip(data, ws)
    _untouched(ws)
    assert sorted(p for p in ws.root.rglob("*")) == before  # not even a staging folder was written


def test_each_photo_is_checked_by_its_content(ws, fmt):
    photos, files, settings = honest()
    photos["red"]["r1.png"] = bytes(10_000)  # zeros named .png: within every cap, not an image
    with pytest.raises(TLError, match=r"the project's photo 'data/red/r1\.png': "):
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    _untouched(ws)


def test_the_photos_of_a_jobs_snapshot_and_its_images_are_checked_too(ws, fmt):
    photos, files, settings = honest()
    files["jobs/ideal-1/frames/ideal.png"] = b"<html><script>alert(1)</script></html>"
    with pytest.raises(TLError, match=r"the project's photo 'jobs/ideal-1/frames/ideal\.png': "):
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    _untouched(ws)


def test_a_photo_over_the_per_file_cap_is_refused_from_the_manifest(ws, fmt):
    ws.max_file_mb = 0.0001
    photos, files, settings = honest()
    with pytest.raises(TLError, match=r"the project's photo 'data/\w+/\w+\.png': 0\.0 MB is over the limit of "
                                      r"0\.0001 MB per file"):
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    _untouched(ws)


def test_the_photos_and_jobs_being_replaced_count_as_freed(ws):
    photos, files, settings = honest()
    data = zip_bytes(contents(photos, files, settings))
    project_mb = sum(len(v) for v in contents(photos, files, settings).values() if v) / 2**20
    ws.add_image("mine", "big.png", png(side=256))  # the session holds more than the project will
    ws.forget_usage()
    ws.max_session_mb = ws.used_bytes() / 2**20 + project_mb / 2  # room for the project only once they go
    open_project_zip(data, ws)
    assert ws.counts() == {"blue": 2, "red": 2}


# Item 10: one rule for class names ---------------------------------------------------------------------

BAD_NAMES = ["\u202egnp.exe", "cat\u2066s", "-rf", "del\x7f", "x" * 61, " padded"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_projects_bad_class_name_is_refused_naming_it(name, ws, fmt):
    photos, files, settings = honest()
    photos[name] = {"a.png": png(seed=7)}
    with pytest.raises(TLError, match=r"^class name .* is not allowed") as caught:
        open_project_zip(zip_bytes(contents(photos, files, settings, fmt)), ws)
    assert repr(name) in str(caught.value)
    _untouched(ws)


def _dataset_with_bad_class_folders(root: Path) -> Path:
    make_image_folder(root, n_per_class=2)
    for name in BAD_NAMES:
        make_image_folder(root / "tmp", n_per_class=1, classes=("red",))
        (root / "tmp" / "red").rename(root / name)
        (root / "tmp").rmdir()
    return root


def _reasons_name_every_bad_class(skipped: list[dict]) -> None:
    reasons = [s["reason"] for s in skipped]
    for name in BAD_NAMES:
        assert any(r.startswith(f"class name {name!r} is not allowed") for r in reasons), (name, reasons)


def test_a_folder_datasets_bad_class_folders_are_left_out_and_reported(tmp_path):
    dataset = load_dataset(_dataset_with_bad_class_folders(tmp_path / "data"))
    assert dataset.classes == ["blue", "red"] and {s.label for s in dataset.samples} == {"blue", "red"}
    _reasons_name_every_bad_class(dataset.skipped)


def test_bad_class_folders_inside_split_folders_are_left_out_too(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2, splits=("train", "val"))
    (root / "val" / "red").rename(root / "val" / "-rf")
    dataset = load_dataset(root)
    assert dataset.classes == ["blue", "red"] and "-rf" not in {s.label for s in dataset.samples}
    assert [s["reason"].split(":")[0] for s in dataset.skipped] == ["class name '-rf' is not allowed"]


def _zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()


def test_a_zip_datasets_bad_class_folders_are_named_as_entries_of_the_zip(tmp_path):
    archive = tmp_path / "photos.zip"
    archive.write_bytes(_zipped(_dataset_with_bad_class_folders(tmp_path / "data")))
    dataset = load_dataset(archive)
    assert dataset.classes == ["blue", "red"]
    _reasons_name_every_bad_class(dataset.skipped)
    assert {s["entry"] for s in dataset.skipped} == set(BAD_NAMES)
    assert all(s["path"] == f"{archive} > {s['entry']}" for s in dataset.skipped)


def test_the_dashboards_zip_upload_rejects_bad_class_folders_by_name(tmp_path, ws):
    added, rejected = ws.add_zip(_zipped(_dataset_with_bad_class_folders(tmp_path / "data")))
    assert ws.classes() == ["blue", "mine", "red"] and len(added) == 4
    assert {r["name"] for r in rejected} == set(BAD_NAMES)
    _reasons_name_every_bad_class(rejected)


def test_the_cli_reports_bad_class_folders_and_leaves_them_out(tmp_path, capsys):
    assert main(["check", str(_dataset_with_bad_class_folders(tmp_path / "data")), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["counts"]) == {"blue", "red"}
    _reasons_name_every_bad_class(report["skipped"])


# Readers in tlcore: the from-scratch twin copies no photo from outside ----------------------------------

def test_a_twin_never_follows_a_parent_outside_the_workspace(planted, ws):
    victim = fake_job(planted["other"] / "jobs", "run-v", TrainConfig())  # another session's photos
    base = fake_job(ws.jobs_dir, "finetune-1", TrainConfig(), kind="finetune", data=False,
                    parent=str(victim / "run"))
    with pytest.raises(TLError, match="are no longer there, so it cannot be trained again from scratch"):
        start_scratch_run(base / "run", ws.jobs_dir)
    assert [j.name for j in ws.jobs_dir.iterdir()] == ["finetune-1"]  # no twin, no copied photo


def test_a_twin_refuses_a_snapshot_holding_a_link_out(planted, ws):
    base = fake_job(ws.jobs_dir, "run-1", TrainConfig())
    (base / "data" / "red" / "stolen.png").symlink_to(planted["secret"])
    with pytest.raises(TLError, match=r"include 'stolen\.png', a link leading outside this workspace"):
        start_scratch_run(base / "run", ws.jobs_dir)
    assert [j.name for j in ws.jobs_dir.iterdir()] == ["run-1"]
