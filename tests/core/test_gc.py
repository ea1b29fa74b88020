"""Disk clean-up (tlcore.lab.gc): shared caches trimmed least recently used first, idle sessions expired,
runs deleted by hand, the `gc` command and the periodic clean-up. Ages come from os.utime, never sleeps."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.training import engine
from tlcore.lab import gc
from tlcore.data.datasets import load_dataset
from tlcore.io.errors import TLError
from tlcore.training.features import FeatureCache
from tlcore.lab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
DAY = 86400


def age(path: Path, days: float, now: float) -> None:
    """Set ``path``'s times ``days`` before ``now``."""
    t = now - days * DAY
    os.utime(path, (t, t))


def entry(cache: Path, rel: str, size: int, days: float, now: float) -> Path:
    """A cache entry of ``size`` bytes last used ``days`` ago: a folder under zips/, else a file."""
    path = cache / rel
    if rel.startswith("zips/"):
        (path / "red").mkdir(parents=True)
        (path / "red" / "a.png").write_bytes(b"x" * size)
        age(path / "red", days, now)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    age(path, days, now)
    return path


def session(cache: Path, name: str, days: float, now: float, photo_bytes: int = 1000) -> Workspace:
    """A session folder with one photo, last used ``days`` ago."""
    ws = Workspace(cache / "sessions" / name)
    (ws.data_dir / "red").mkdir()
    (ws.data_dir / "red" / "a.png").write_bytes(b"p" * photo_bytes)
    age_session(ws, days, now)
    return ws


def age_session(ws: Workspace, days: float, now: float) -> None:
    for path in [*ws.root.rglob("*"), ws.root]:
        age(path, days, now)


def job(ws: Workspace, name: str, alive: bool, parent: str | None = None) -> Path:
    """A job folder: live (its worker is this test process) or finished."""
    folder = ws.jobs_dir / name
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "model.weights.h5").write_bytes(b"w" * 5000)
    pid = os.getpid() if alive else 0
    meta = {"kind": "export" if parent else "train", "pid": pid, "started": time.time(),
            **({"parent": parent} if parent else {})}
    (folder / "job.json").write_text(json.dumps(meta), encoding="utf-8")
    if not alive:
        (folder / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": {}}), encoding="utf-8")
    return folder


@pytest.fixture
def cache(isolated_cache):
    return Path(isolated_cache)


# --- Shared caches ---------------------------------------------------------------------------------------

@pytest.fixture
def five_entries(cache):
    now = time.time()
    paths = {
        "zips/aaa": entry(cache, "zips/aaa", 100_000, 30, now),
        "features/k/ab1.npy": entry(cache, "features/k/ab1.npy", 100_000, 20, now),
        "engines/e1.tflite": entry(cache, "engines/e1.tflite", 100_000, 10, now),
        "features/k/cd2.npy": entry(cache, "features/k/cd2.npy", 100_000, 5, now),
        "engines/e2.tflite": entry(cache, "engines/e2.tflite", 100_000, 1 / 24 / 60, now),  # a minute ago
    }
    return now, paths


def test_the_shared_caches_are_trimmed_to_their_limit_least_recently_used_first(cache, five_entries, monkeypatch):
    now, paths = five_entries
    monkeypatch.setenv("TLCORE_CACHE_MB", str(250_000 / MB))
    result = gc.collect(now=now)
    removed = [e["path"] for e in result["cache"]["removed"]]
    assert removed == ["zips/aaa", "features/k/ab1.npy", "engines/e1.tflite"]  # oldest first, then enough
    assert [e["idle_days"] for e in result["cache"]["removed"]] == [30, 20, 10]
    assert result["cache"]["before_bytes"] == 500_000
    assert result["cache"]["after_bytes"] == 200_000 <= result["cache"]["limit_bytes"] == 250_000
    assert result["freed_bytes"] == 300_000
    assert [rel for rel, p in paths.items() if p.exists()] == ["features/k/cd2.npy", "engines/e2.tflite"]
    assert not list((cache / "zips").iterdir())  # nothing left aside either


def test_entries_used_in_the_last_minutes_are_kept_even_over_the_limit(cache, five_entries, monkeypatch):
    now, paths = five_entries
    monkeypatch.setenv("TLCORE_CACHE_MB", "0.001")
    result = gc.collect(now=now)
    assert len(result["cache"]["removed"]) == 4
    assert [rel for rel, p in paths.items() if p.exists()] == ["engines/e2.tflite"]  # maybe in use right now
    assert result["cache"]["after_bytes"] == 100_000 > result["cache"]["limit_bytes"]


def test_a_dry_run_deletes_nothing_and_names_what_a_real_run_removes(cache, five_entries, monkeypatch):
    now, paths = five_entries
    ws = session(cache, "old", 30, now)
    monkeypatch.setenv("TLCORE_CACHE_MB", str(250_000 / MB))
    dry = gc.collect(dry_run=True, now=now)
    assert dry["dry_run"] is True and all(p.exists() for p in paths.values()) and ws.root.is_dir()
    real = gc.collect(now=now)
    assert real["dry_run"] is False
    assert {k: v for k, v in dry.items() if k != "dry_run"} == {k: v for k, v in real.items() if k != "dry_run"}
    assert not ws.root.exists()


def test_under_the_limit_nothing_is_removed(cache, five_entries):
    now, paths = five_entries
    result = gc.collect(now=now)  # the default limit is far above 500 KB
    assert result["cache"]["removed"] == [] and result["freed_bytes"] == 0
    assert all(p.exists() for p in paths.values())


def test_debris_of_interrupted_writes_is_removed_whatever_the_limit(cache):
    now = time.time()
    stale = [entry(cache, "zips/.extract-dead", 10, 1, now), entry(cache, "zips/.gc-aaa-1234", 10, 0, now),
             entry(cache, "features/k/ab1.npy.1.2.tmp", 10, 1, now), entry(cache, "engines/.e.tflite.x.tmp", 10, 1, now)]
    fresh = entry(cache, "zips/.extract-running", 10, 0, now)  # an extraction in progress
    kept = entry(cache, "zips/bbb", 10, 30, now)
    result = gc.collect(now=now)
    assert sorted(e["path"] for e in result["cache"]["removed"]) == sorted(
        p.relative_to(cache).as_posix() for p in stale)
    assert not any(p.exists() for p in stale) and fresh.exists() and kept.exists()


def test_a_reused_embedding_is_marked_and_outlives_an_unused_one(cache, monkeypatch):
    features = FeatureCache()
    features.put("bb", "a" * 64, np.ones(4))
    features.put("bb", "b" * 64, np.ones(4))
    a, b = features._path("bb", "a" * 64), features._path("bb", "b" * 64)
    now = time.time()
    age(a, 20, now)
    age(b, 10, now)
    assert features.get("bb", "a" * 64) is not None  # the older one is used again
    assert a.stat().st_mtime > now - 60
    monkeypatch.setenv("TLCORE_CACHE_MB", str(1.5 * a.stat().st_size / MB))
    result = gc.collect(now=now + 3600)  # an hour later: both are out of the grace period
    assert [e["path"] for e in result["cache"]["removed"]] == [b.relative_to(cache).as_posix()]
    assert a.exists() and not b.exists()


def test_an_embedding_used_a_minute_ago_is_not_written_again(cache):
    features = FeatureCache()
    features.put("bb", "a" * 64, np.ones(4))
    path = features._path("bb", "a" * 64)
    mark = time.time() - 60
    os.utime(path, (mark, mark))
    features.get("bb", "a" * 64)
    assert path.stat().st_mtime == pytest.approx(mark)  # one metadata write per entry per run at most


def test_a_reused_engine_is_marked(cache, monkeypatch):
    path = engine.engine_path("lite0|imagenet", 224)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"engine")
    now = time.time()
    age(path, 20, now)
    monkeypatch.setattr(engine, "TFLiteEncoder", lambda model, threads=None: "loaded")
    assert engine.fast_encoder(lambda: pytest.fail("the backbone is not needed"), "lite0|imagenet", 224) == "loaded"
    assert path.stat().st_mtime > now - 60


def zip_of(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    return path


def test_the_cli_keeps_its_zip_extraction_and_marks_it_when_reused(cache, tmp_path):
    archive = zip_of(make_image_folder(tmp_path / "src", n_per_class=2), tmp_path / "photos.zip")
    load_dataset(archive)
    [extraction] = [p for p in (cache / "zips").iterdir()]
    now = time.time()
    age(extraction, 20, now)
    load_dataset(archive)
    assert extraction.stat().st_mtime > now - 60


def test_an_extraction_a_process_is_reading_is_never_removed(cache, tmp_path, monkeypatch):
    archive = zip_of(make_image_folder(tmp_path / "src", n_per_class=2), tmp_path / "photos.zip")
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tlcore.data.datasets import load_dataset; "
         "print(load_dataset(sys.argv[1]).samples[0].path, flush=True); sys.stdin.readline()", str(archive)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        photo = Path(reader.stdout.readline().strip())  # the other process has loaded the dataset and reads on
        [extraction] = [p for p in (cache / "zips").iterdir()]
        now = time.time()
        age(extraction, 30, now)
        monkeypatch.setenv("TLCORE_CACHE_MB", "0.001")
        assert gc.collect(now=now)["cache"]["removed"] == []
        assert photo.is_file()
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    assert [e["path"] for e in gc.collect(now=now)["cache"]["removed"]] == [f"zips/{extraction.name}"]
    assert not extraction.exists()
    assert len(load_dataset(archive).samples) == 4  # extracted again when needed


def test_an_extraction_held_in_this_process_is_kept_too(cache, monkeypatch):
    now = time.time()
    folder = entry(cache, "zips/ccc", 100, 30, now)
    assert gc.hold(folder)  # the dashboard's own clean-up thread runs in the process that may hold it
    age(folder, 30, now)
    monkeypatch.setenv("TLCORE_CACHE_MB", "0.00001")
    assert gc.collect(now=now)["cache"]["removed"] == [] and folder.is_dir()
    gc.release(folder)
    assert [e["path"] for e in gc.collect(now=now)["cache"]["removed"]] == ["zips/ccc"]


# --- Sessions --------------------------------------------------------------------------------------------

def test_sessions_idle_longer_than_the_setting_are_removed(cache, monkeypatch):
    now = time.time()
    old = session(cache, "old", 20, now, photo_bytes=3000)
    recent = session(cache, "recent", 3, now)
    result = gc.collect(now=now)
    assert result["sessions"] == [{"folder": "old", "idle_days": 20, "bytes": 3000}]
    assert not old.root.exists() and recent.root.is_dir()
    monkeypatch.setenv("TLCORE_SESSION_DAYS", "2")
    assert [s["folder"] for s in gc.collect(now=now)["sessions"]] == ["recent"]


def test_a_session_with_a_live_job_survives(cache):
    now = time.time()
    ws = session(cache, "busy", 30, now)
    job(ws, "train-1", alive=True)
    age_session(ws, 30, now)
    finished = session(cache, "done", 30, now)
    job(finished, "train-1", alive=False)
    age_session(finished, 30, now)
    result = gc.collect(now=now)
    assert [s["folder"] for s in result["sessions"]] == ["done"]
    assert ws.root.is_dir() and not finished.root.exists()


def test_a_session_marked_as_seen_is_kept_and_marked_at_most_once_a_minute(cache):
    now = time.time()
    ws = session(cache, "back", 30, now)
    gc.mark_seen(ws.root)
    assert gc.collect(now=now)["sessions"] == [] and ws.root.is_dir()
    seen = ws.root / gc.SEEN
    age(seen, 1, now)
    gc.mark_seen(ws.root)  # the same process, within the minute: no second write
    assert seen.stat().st_mtime == pytest.approx(now - DAY)


def test_hidden_folders_beside_the_sessions_are_not_sessions(cache):
    now = time.time()
    aside = cache / "sessions" / ".gc-old-1234"
    (aside / "data").mkdir(parents=True)
    age(aside, 30, now)
    assert gc.collect(now=now)["sessions"] == []
    assert not aside.exists()  # an interrupted removal is finished


# --- Settings, the command and the periodic clean-up -----------------------------------------------------

@pytest.mark.parametrize("name,unit", [("TLCORE_CACHE_MB", "megabytes"), ("TLCORE_SESSION_DAYS", "days")])
@pytest.mark.parametrize("value", ["0", "-1", "lots", "nan", "inf"])
def test_a_bad_setting_is_one_error_naming_it_and_nothing_is_removed(cache, monkeypatch, name, unit, value):
    now = time.time()
    ws = session(cache, "old", 30, now)
    monkeypatch.setenv(name, value)
    with pytest.raises(TLError) as info:
        gc.collect(now=now)
    assert str(info.value) == f"{name}={value!r} is not allowed; set it to a number of {unit} above 0"
    assert ws.root.is_dir()
    assert_user_error(*run_cli(["gc", "--json"]), name)


def test_cli_gc_json_shows_then_frees(cache, monkeypatch):
    now = time.time()
    ws = session(cache, "old", 30, now, photo_bytes=2000)
    stale = entry(cache, "zips/aaa", 100_000, 30, now)
    entry(cache, "features/k/ab1.npy", 100_000, 1, now)
    monkeypatch.setenv("TLCORE_CACHE_MB", str(150_000 / MB))
    code, out, err = run_cli(["gc", "--dry-run", "--json"])
    assert code == 0, err
    shown = last_json(out)
    assert shown["dry_run"] is True
    assert [(s["folder"], s["bytes"]) for s in shown["sessions"]] == [("old", 2000)]
    assert shown["sessions"][0]["idle_days"] == pytest.approx(30, abs=0.01)
    assert shown["cache"]["limit_bytes"] == 150_000 and shown["cache"]["before_bytes"] == 200_000
    assert [e["path"] for e in shown["cache"]["removed"]] == ["zips/aaa"]
    assert shown["freed_bytes"] == 102_000
    assert ws.root.is_dir() and stale.is_dir()
    code, out, err = run_cli(["gc", "--json"])
    assert code == 0, err
    assert last_json(out)["freed_bytes"] == 102_000 and not ws.root.exists() and not stale.exists()
    code, out, err = run_cli(["gc"])
    assert code == 0 and out.startswith("freed 0.0 MB: 0 idle session(s), 0 cache entr(ies)")


def test_the_periodic_clean_up_runs_in_a_daemon_thread(cache):
    now = time.time()
    ws = session(cache, "old", 30, now)
    cleaner = gc.Cleaner(cache, interval=3600, name="tlcore-gc-test")
    cleaner.start()
    try:
        assert cleaner.passed.wait(60)
        assert cleaner.daemon and not ws.root.exists()
    finally:
        cleaner.stopped.set()
        cleaner.join(60)
    assert not cleaner.is_alive()


def test_an_error_in_the_periodic_clean_up_is_logged_never_raised(cache, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="tlcore")

    def broken(**_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gc, "collect", broken)
    assert gc.run_pass(cache) is None
    assert any(r.levelno == logging.ERROR and "clean-up failed" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    monkeypatch.setenv("TLCORE_CACHE_MB", "lots")
    assert gc.run_pass(cache) is None
    assert any("TLCORE_CACHE_MB='lots'" in r.getMessage() for r in caplog.records)
    monkeypatch.delenv("TLCORE_CACHE_MB")
    session(cache, "old", 30, time.time())
    assert gc.run_pass(cache)["sessions"]
    assert any("clean-up freed" in r.getMessage() for r in caplog.records)  # what it freed goes to the log


# --- Deleting runs and projects by hand -------------------------------------------------------------------

def test_deleting_a_run_frees_its_files_but_not_the_photos_its_snapshot_shares(tmp_path):
    ws = Workspace(tmp_path / "ws")
    make_image_folder(ws.data_dir, n_per_class=2)
    folder = job(ws, "train-1", alive=False)
    ws.snapshot(folder / "data")  # hard links to the photos
    ws.forget_usage()
    before = ws.used_bytes()
    own = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != "data")
    assert own > 5000  # the weights, job.json, result.json
    assert gc.remove_job(ws, "train-1") == own  # the job's own files, not the photos its snapshot shares
    assert not folder.exists() and ws.used_bytes() == before - own
    assert sum(ws.counts().values()) == 4


def test_a_live_run_or_a_run_a_live_job_works_on_cannot_be_deleted(tmp_path):
    ws = Workspace(tmp_path / "ws")
    live = job(ws, "train-live", alive=True)
    with pytest.raises(TLError) as info:
        gc.remove_job(ws, "train-live")
    assert str(info.value) == "run 'train-live' is still running; stop it before deleting it"
    base = job(ws, "train-1", alive=False)
    job(ws, "export-1", alive=True, parent=str(base / "run"))
    with pytest.raises(TLError, match=r"^run 'train-1' is used by the export 'export-1' still running"):
        gc.remove_job(ws, "train-1")
    assert live.is_dir() and base.is_dir()


@pytest.mark.parametrize("name", ["nope", "../ws", "", "train-1/run"])
def test_only_a_run_of_this_session_can_be_deleted(tmp_path, name):
    ws = Workspace(tmp_path / "ws")
    job(ws, "train-1", alive=False)
    with pytest.raises(TLError, match=r"^there is no run .* in this session$"):
        gc.remove_job(ws, name)
    assert (ws.jobs_dir / "train-1").is_dir() and ws.root.is_dir()


def test_deleting_a_saved_project(tmp_path):
    ws = Workspace(tmp_path / "ws")
    project = ws.root / "projects" / "mine"
    project.mkdir(parents=True)
    (project / "project.json").write_text("{}", encoding="utf-8")
    (project / "photo.png").write_bytes(b"p" * 700)
    assert gc.remove_project(ws, "mine") == 702 and not project.exists()
    with pytest.raises(TLError, match="is not allowed"):
        gc.remove_project(ws, "../../etc")
    with pytest.raises(TLError, match="^there is no saved project 'mine' in this session$"):
        gc.remove_project(ws, "mine")


def test_a_sub_folder_of_the_earlier_feature_layout_is_one_entry_removed_whole(cache, monkeypatch):
    """Before 2026-12-06 the feature cache had a folder per two hex digits (features/<backbone>/<xx>/<sha>.npy); such
    a folder is never read again, and the clean-up removes it whole as it ages, beside today's flat entries."""
    now = time.time()
    old = entry(cache, "features/k/ab/ab1.npy", 100_000, 20, now)
    os.utime(old.parent, (now - 20 * 86400, now - 20 * 86400))
    new = entry(cache, "features/k/cd2.npy", 100_000, 1, now)
    monkeypatch.setenv("TLCORE_CACHE_MB", str(150_000 / MB))
    result = gc.collect(now=now)
    assert [e["path"] for e in result["cache"]["removed"]] == ["features/k/ab"]
    assert not old.parent.exists() and new.exists()
