"""Fixtures for the dashboard tests: sessions set up directly, and one real finished training job."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.jobs.runner import LIVE, job_status, start_job
from tlcore.lab.workspace import Workspace, new_session_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def components_scanned_once():
    """Every ``AppTest.run`` of a new AppTest scans all installed packages for Streamlit components
    (about 0.5 s here, more than most pages take); the installed packages do not change during a run."""
    import functools

    from streamlit.components.v2 import manifest_scanner

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest_scanner, "scan_component_manifests",
                   functools.lru_cache(maxsize=None)(manifest_scanner.scan_component_manifests))
        yield


@pytest.fixture(scope="session")
def ui_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ui-cache")


@pytest.fixture(autouse=True)
def shared_ui_cache(ui_cache, monkeypatch):
    # Sessions are isolated by their ids (as in production); one cache lets tests share a trained job.
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(ui_cache))
    return ui_cache


def shown(text) -> str:
    """What a reader sees of a page's Markdown ``text`` where data was escaped (``ui.frame.layout.plain``):
    CommonMark drops the backslash before punctuation."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(text))


def open_page(page: str, sid: str, timeout: float = 60) -> AppTest:
    """Run ``page`` (``app.py`` or ``pages/N_Name.py``) as the browser session ``sid``."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=timeout)
    at.query_params["s"] = sid
    return at.run()


@pytest.fixture
def sid() -> str:
    return new_session_id()


@pytest.fixture
def workspace(sid) -> Workspace:
    return Workspace.for_session(sid)


def wait_for_job(job: Path, limit: float = 300) -> dict:
    """Poll a job until it is no longer waiting, running or stopping (or ``limit`` seconds pass); its status."""
    deadline = time.time() + limit
    while job_status(job)["status"] in LIVE and time.time() < deadline:
        time.sleep(0.1)
    return job_status(job)


@pytest.fixture(scope="session")
def trained(ui_cache) -> tuple[str, Path]:
    """A session with two colour classes and one finished training job (a real worker process)."""
    import os

    os.environ["TLCORE_CACHE_DIR"] = str(ui_cache)
    sid = new_session_id()
    ws = Workspace.for_session(sid)
    make_image_folder(ws.data_dir, n_per_class=8)
    job = ws.jobs_dir / "run-test"
    # 64-pixel inputs: what the pages do with a model does not depend on its size, and every job on this run
    # (export, robustness, ideal image) then costs a twelfth of the 224-pixel default (tests/ui/test_browser.py).
    start_job(job, ["train", str(ws.snapshot(job / "data")), "--out", str(job / "run"), "--weights", "none",
                    "--epochs", "3", "--split", "0.5,0.25,0.25", "--input-size", str(SMALL_INPUT)])
    status = wait_for_job(job)
    assert status["status"] == "done", status
    ws.update_settings(current_job=str(job))
    return sid, job


def copy_of_trained(trained: tuple[str, Path], folder: Path) -> tuple[str, Path]:
    """A new session holding what ``trained`` holds, moved as a user would (a project saved to ``folder``
    and opened): for tests that add jobs or exports, so that the shared session stays as made."""
    from tlcore.lab.project import open_project, save_project

    sid, job = trained
    saved = save_project(Workspace.for_session(sid), folder / "trained-project")
    copy_sid = new_session_id()
    ws = Workspace.for_session(copy_sid)
    open_project(saved, ws)
    assert Path(ws.settings()["current_job"]).name == job.name
    return copy_sid, ws.jobs_dir / job.name

