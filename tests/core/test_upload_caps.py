"""Upload caps kept by the workspace: per file and per session, each refusal naming the file and the cap."""
from __future__ import annotations

import io
import zipfile

import pytest

from tests.conftest import CLASS_COLOURS, make_image_folder, write_image
from tlcore.io.errors import TLError
from tlcore.io.quota import DEFAULT_MAX_SESSION_MB
from tlcore.lab.workspace import Workspace

MB = 1024 * 1024


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def png(tmp_path, size=32, name="x.png"):
    return write_image(tmp_path / name, CLASS_COLOURS["red"], size=size).read_bytes()


def test_default_caps(ws, monkeypatch):
    monkeypatch.delenv("TLCORE_MAX_SESSION_MB", raising=False)
    assert ws.quota() == {"file_mb": 200, "session_mb": DEFAULT_MAX_SESSION_MB, "used_mb": 0.0}


def test_a_file_over_the_per_file_cap_is_refused_with_its_name_and_the_cap(ws, tmp_path):
    data = png(tmp_path, size=64)
    ws.max_file_mb = (len(data) - 1) / MB
    with pytest.raises(TLError) as info:
        ws.add_image("cats", "big.png", data)
    message = str(info.value)
    assert message.startswith("big.png: ") and f"over the limit of {ws.max_file_mb:g} MB per file" in message
    assert ws.images("cats") == []
    ws.max_file_mb = len(data) / MB  # exactly at the cap is allowed
    assert ws.add_image("cats", "big.png", data).is_file()


def test_a_session_over_its_cap_is_refused_and_removing_photos_makes_room(ws, tmp_path):
    data = png(tmp_path)
    ws.max_session_mb = 2.5 * len(data) / MB  # room for two of these photos, not three
    added, rejected = ws.add_files("cats", [("a.png", data), ("b.png", data), ("c.png", data)])
    assert [p.name for p in added] == ["a.png", "b.png"]
    assert [r["name"] for r in rejected] == ["c.png"]
    assert f"over the limit of {ws.max_session_mb:g} MB per session" in rejected[0]["reason"]
    assert ws.quota()["used_mb"] == pytest.approx(2 * len(data) / MB)
    with pytest.raises(TLError, match=r"^d\.png: it would bring this session to"):
        ws.add_image("dogs", "d.png", data)  # the cap counts every class of the session
    ws.remove_image("cats", "a.png")
    assert ws.add_image("dogs", "d.png", data).is_file()
    assert ws.counts() == {"cats": 1, "dogs": 1}


def test_the_session_cap_counts_files_added_behind_the_workspace(ws, tmp_path):
    data = png(tmp_path)
    ws.max_session_mb = 2.5 * len(data) / MB
    ws.add_image("cats", "a.png", data)
    # Another Workspace object of the same session (the next page run) adds a photo.
    Workspace(ws.root).add_image("cats", "b.png", data)
    with pytest.raises(TLError, match="per session"):
        ws.add_image("cats", "c.png", data)


def test_the_session_cap_comes_from_the_environment(ws, tmp_path, monkeypatch):
    data = png(tmp_path)
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", str(1.5 * len(data) / MB))
    ws.add_image("cats", "a.png", data)
    with pytest.raises(TLError, match="per session"):
        ws.add_image("cats", "b.png", data)


@pytest.mark.parametrize("value", ["0", "-1", "lots", "nan"])
def test_a_bad_session_cap_setting_is_one_error_naming_it(ws, tmp_path, monkeypatch, value):
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", value)
    with pytest.raises(TLError) as info:
        ws.add_files("cats", [("a.png", png(tmp_path)), ("b.png", png(tmp_path))])
    assert str(info.value) == f"TLCORE_MAX_SESSION_MB={value!r} is not allowed; set it to a number of megabytes above 0"
    assert ws.classes() == []


def test_a_zip_stops_filling_the_session_at_its_cap(ws, tmp_path):
    folder = make_image_folder(tmp_path / "src", n_per_class=3)
    one = max(p.stat().st_size for p in folder.rglob("*.png"))
    ws.max_session_mb = 4 * one / MB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in folder.rglob("*.png"):
            zf.write(path, path.relative_to(folder))
    added, rejected = ws.add_zip(buffer.getvalue())
    assert len(added) >= 4 and rejected and len(added) + len(rejected) == 6
    assert all("per session" in r["reason"] for r in rejected)
    used = sum(p.stat().st_size for p in added)
    smallest = min(p.stat().st_size for p in folder.rglob("*.png"))
    assert used <= ws.max_session_mb * MB < used + smallest  # full: not one more photo would fit
    assert sum(ws.counts().values()) == len(added)


# --- The whole session counts (issue 14, item 4) ------------------------------------------------------------

def _files_bytes(folder):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_runs_exports_and_saved_projects_count_and_a_snapshot_of_the_photos_counts_once(ws, tmp_path):
    make_image_folder(ws.data_dir, n_per_class=3)
    photos = _files_bytes(ws.data_dir)
    job = ws.jobs_dir / "train-1"
    ws.snapshot(job / "data")  # hard links: the job's copy of the photos takes no room of its own
    (job / "run").mkdir()
    (job / "run" / "model.weights.h5").write_bytes(b"w" * 30_000)
    (ws.jobs_dir / "export-1").mkdir()
    (ws.jobs_dir / "export-1" / "model.tflite").write_bytes(b"t" * 20_000)
    (ws.root / "projects" / "mine").mkdir(parents=True)
    (ws.root / "projects" / "mine" / "project.json").write_bytes(b"{}" * 5_000)
    ws.forget_usage()
    assert ws.used_bytes() == photos + 30_000 + 20_000 + 10_000
    assert ws.quota()["used_mb"] == pytest.approx((photos + 60_000) / MB)


def test_a_session_filled_by_its_runs_refuses_a_new_photo(ws, tmp_path):
    data = png(tmp_path)
    ws.max_session_mb = 0.1
    (ws.jobs_dir / "train-1" / "run").mkdir(parents=True)
    (ws.jobs_dir / "train-1" / "run" / "model.weights.h5").write_bytes(b"w" * int(0.1 * MB - len(data) / 2))
    ws.forget_usage()
    with pytest.raises(TLError, match=r"^a\.png: it would bring this session to .* over the limit of 0\.1 MB per "
                                      r"session; delete some runs or photos first$"):
        ws.add_image("cats", "a.png", data)
    assert ws.images("cats") == []


def test_the_dashboard_zip_upload_keeps_nothing_in_the_shared_cache(ws, tmp_path, isolated_cache, monkeypatch):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the upload is extracted for the moment
    folder = make_image_folder(tmp_path / "src", n_per_class=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in folder.rglob("*.png"):
            zf.write(path, path.relative_to(folder))
    added, rejected = ws.add_zip(buffer.getvalue())
    assert len(added) == 6 and rejected == []
    assert not (isolated_cache / "zips").exists() or not any((isolated_cache / "zips").iterdir())
    assert list(scratch.iterdir()) == []  # the temporary extraction is gone too
    assert all(p.is_file() and ws.root in p.parents for p in added)
