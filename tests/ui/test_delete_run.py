"""Freeing room on the dashboard: deleting a run or a saved project on the Runs page, the Data page's
warning near the session cap, sessions marked as seen, and the server's periodic clean-up thread."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tests.ui.conftest import open_page, shown
from tests.ui.test_pages import png
from tlcore.lab import gc

PAGE = "pages/9_Runs.py"
MB = 1024 * 1024


def fake_job(workspace, name: str, alive: bool, weights: int = 200_000):
    """A job folder with a model file: finished, or live (its worker is this test process)."""
    folder = workspace.jobs_dir / name
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "model.weights.h5").write_bytes(b"w" * weights)
    pid = os.getpid() if alive else 0
    (folder / "job.json").write_text(json.dumps({"kind": "train", "pid": pid, "started": time.time()}),
                                     encoding="utf-8")
    if not alive:
        (folder / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": {}}), encoding="utf-8")
    return folder


def delete(at, name: str):
    at.selectbox(key="delete_run_choice").set_value(name).run()
    return next(b for b in at.button if b.key == "delete_run").click().run()


def test_the_runs_page_deletes_a_run_and_frees_its_room(sid, workspace):
    folder = fake_job(workspace, "train-old", alive=False)
    fake_job(workspace, "train-keep", alive=False, weights=10)
    at = open_page(PAGE, sid)
    assert not at.exception
    choice = at.selectbox(key="delete_run_choice")
    assert set(choice.options) >= {"train-old · training · finished · frees 0.2 MB", "train-keep · training · "
                                   "finished · frees 0.0 MB"}
    at = delete(at, "train-old")
    assert not at.exception and not at.error
    assert not folder.exists() and (workspace.jobs_dir / "train-keep").is_dir()
    assert any(s.value == "Run 'train-old' deleted: 0.2 MB freed." for s in at.success)
    assert at.selectbox(key="delete_run_choice").options == ["train-keep · training · finished · frees 0.0 MB"]


def test_a_live_run_is_not_deleted_and_the_page_says_why_in_one_sentence(sid, workspace):
    folder = fake_job(workspace, "train-live", alive=True)
    at = delete(open_page(PAGE, sid), "train-live")
    assert not at.exception
    assert [shown(e.value) for e in at.error] == ["run 'train-live' is still running; stop it before deleting it"]
    assert folder.is_dir()


def test_the_runs_page_deletes_a_saved_project(sid, workspace):
    from tlcore.lab.project import project_path, save_project

    workspace.add_class("cats")
    workspace.add_image("cats", "a.png", png())
    path = save_project(workspace, project_path(workspace, "mine"), name="mine")
    at = open_page(PAGE, sid)
    next(b for b in at.button if b.key == "delete_project_0").click().run()
    assert not at.exception and not at.error
    assert not path.exists()
    assert any(s.value.startswith("Project 'mine' deleted:") for s in at.success)
    assert "No saved project yet." in [c.value for c in at.caption]


def test_data_page_says_what_the_cap_counts_and_warns_near_and_over_it(sid, workspace, monkeypatch):
    fake_job(workspace, "train-1", alive=False, weights=int(0.92 * MB))
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "1")
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    caption = next(c.value for c in at.caption if "per session" in c.value)
    assert "(photos, runs, exports, saved projects)" in caption and caption.startswith("This session holds 0.9")
    assert [shown(w.value) for w in at.warning] == [
        "This session uses 0.9 MB of its 1 MB: delete runs or saved projects you no longer need on the Runs page "
        "before adding more."]
    (workspace.jobs_dir / "train-1" / "run" / "more.bin").write_bytes(b"m" * int(0.1 * MB))
    workspace.forget_usage()
    at = open_page("pages/1_Data.py", sid)
    assert any(e.value.startswith("This session holds 1.0 MB, over its limit of 1 MB") for e in at.error)


def test_opening_a_page_marks_its_session_as_seen(sid, workspace):
    now = time.time()
    old = now - 30 * 86400
    for path in [*workspace.root.rglob("*"), workspace.root]:
        os.utime(path, (old, old))
    assert gc.last_seen(workspace.root) == pytest.approx(old)
    open_page(PAGE, sid)
    assert gc.last_seen(workspace.root) > now - 60
    assert gc.collect(dry_run=True)["sessions"] == []  # not idle: kept


def test_the_dashboard_starts_one_clean_up_thread(sid):
    for _ in range(2):  # every rerun executes app.py: still one thread
        at = open_page("app.py", sid)
        assert not at.exception
    threads = [t for t in threading.enumerate() if t.name == gc.THREAD_NAME]
    assert len(threads) == 1 and threads[0].is_alive() and threads[0].daemon
