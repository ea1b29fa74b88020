"""The Train page's "Will more photos help?" panel: its button starts the job, a finished curve draws its chart,
its promise and the class that gains most, in English and in French."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder
from tests.ui.conftest import ROOT, open_page, shown, wait_for_job
from tlcore.jobs.runner import start_job
from tlcore.lab.workspace import Workspace, new_session_id
from tlcore.training.learning_curve import LearningCurveConfig, learning_curve_args

PAGE = "pages/3_Train.py"


def texts(at) -> str:
    return "\n".join(shown(e.value) for kind in ("markdown", "caption", "warning", "error", "subheader")
                     for e in getattr(at, kind))


def test_the_panel_offers_the_curve_and_starts_it_with_the_page_s_settings(sid, workspace, monkeypatch):
    import ui.views.learning_curve as view

    make_image_folder(workspace.data_dir, n_per_class=20)
    workspace.update_settings(split=[70, 20, 10], seed=4)
    started = []
    monkeypatch.setattr(view, "start_job", lambda job_dir, args, kind, meta: started.append((args, kind, meta)))
    at = open_page(PAGE, sid)
    assert not at.exception
    assert "Will more photos help?" in texts(at)
    at.button(key="curve_start").click().run()
    assert not at.exception
    (args, kind, meta), = started
    assert kind == "learning_curve" and meta == {"parent": str(workspace.data_dir)}
    assert args[0] == "learning-curve"
    assert "--split=0.7,0.2,0.1" in args and "--seed=4" in args and "--backbone=efficientnet_lite0" in args


def test_no_panel_without_two_classes(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=4, classes=("red",))
    at = open_page(PAGE, sid)
    assert not at.exception
    assert "Will more photos help?" not in texts(at)


@pytest.fixture(scope="module")
def measured(ui_cache) -> str:
    """A session whose photos have a finished learning curve (a real worker, tiny random-weight backbone), shared
    by the tests below, which only read it."""
    import os

    os.environ["TLCORE_CACHE_DIR"] = str(ui_cache)
    sid = new_session_id()
    workspace = Workspace.for_session(sid)
    make_image_folder(workspace.data_dir, n_per_class=20)
    job = workspace.jobs_dir / "curve-test"
    config = LearningCurveConfig(weights=None, input_size=32, repeats=2, epochs=3)
    start_job(job, learning_curve_args(config, workspace.snapshot(job / "data")), kind="learning_curve",
              meta={"parent": str(workspace.data_dir)})
    status = wait_for_job(job)
    assert status["status"] == "done", status
    return sid


def test_a_finished_curve_shows_its_chart_promise_and_table(measured):
    at = open_page(PAGE, measured)
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    words = texts(at)
    assert "With twice the photos (32 per class instead of 16), expect about" in words
    assert ("The class that would gain most from more photos" in words
            or "No class is expected to gain half a point" in words)
    assert "embeddings from the cache" in words
    assert len(at.dataframe) == 1 and set(at.dataframe[0].value["Class"]) == {"red", "blue"}


def test_a_finished_curve_reads_in_french(measured):
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.query_params["s"] = measured
    at.session_state["tl_language"] = "fr"  # this browser session only: the shared workspace keeps English
    at.run()
    assert not at.exception
    words = texts(at)
    assert "Plus de photos aideraient-elles ?" in words
    assert "Avec deux fois plus de photos (32 par classe au lieu de 16)" in words
    assert len(at.get("plotly_chart")) == 1
