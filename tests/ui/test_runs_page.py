"""The Runs page: history table, overlaid curves, side-by-side scores, projects saved and reopened, scratch twins."""
from __future__ import annotations

import json
import os

import pytest

from tests.ui.conftest import open_page, shown, wait_for_job
from tests.ui.test_pages import texts
from tlcore.lab.experiments import run_history
from tlcore.jobs.runner import list_jobs
from tlcore.lab.project import open_project, project_path, save_project
from tlcore.lab.workspace import Workspace, new_session_id

PAGE = "pages/9_Runs.py"


def button(at, label):
    return next(b for b in at.button if b.label == label)


def curves_of(at, value: str = "y") -> dict:
    """(trace name, "loss" or "accuracy") -> y (or x) values of the comparison figure."""
    chart = next(c for c in at.get("plotly_chart") if "compare_curves" in str(c.proto.id))
    figure = json.loads(chart.proto.spec)
    return {(trace["name"], "accuracy" if trace.get("xaxis") == "x2" else "loss"): trace[value]
            for trace in figure["data"]}


def test_the_page_lists_a_finished_run_and_compares_it(trained):
    sid, job = trained
    at = open_page(PAGE, sid)
    assert not at.exception
    assert at.title[0].value == "9 · Runs"
    history = at.dataframe[0].value
    assert "run-test" in list(history["Run"])
    row = history[history["Run"] == "run-test"].iloc[0]
    assert row["Starting weights"] == "random (from scratch)" and row["Epochs (head)"] == 3
    assert at.multiselect(key=f"compare_{len(history)}").value[0] == "run-test"

    curves = curves_of(at)
    metrics = json.loads((job / "run" / "metrics.json").read_text())["history"]
    for metric in ("loss", "accuracy"):
        assert curves["run-test · validation", metric] == [h["val_" + metric] for h in metrics]
        assert curves["run-test · train", metric] == [h[metric] for h in metrics]
    side_by_side = at.table[0].value  # a static table: every row shown, cells wrapped
    assert list(side_by_side["Setting"])[:4] == ["Validation accuracy", "Test accuracy", "Kind", "Backbone"]
    assert "Seconds" in list(side_by_side["Setting"]) and "run-test" in side_by_side.columns


def test_reopening_a_saved_project_in_a_new_session_shows_the_same_runs_and_curves(trained):
    sid, _ = trained
    before = open_page(PAGE, sid)
    other = new_session_id()  # a restart without the old address: only the project is left
    save_project(Workspace.for_session(sid), project_path(Workspace.for_session(other), "demo"), name="demo")

    at = open_page(PAGE, other)
    assert "No finished training yet" in texts(at)
    assert "**demo**" in texts(at)
    button(at, "Open").click().run()
    assert not at.exception
    assert any("Project 'demo' opened" in s.value for s in at.success)
    assert list(at.dataframe[0].value["Run"]) == list(before.dataframe[0].value["Run"])
    assert curves_of(at) == curves_of(before)
    assert Workspace.for_session(other).counts() == Workspace.for_session(sid).counts()


def test_saving_a_project_from_the_page_and_refusing_a_bad_name(trained):
    sid, _ = trained
    at = open_page(PAGE, sid)
    at.text_input(key="project_name").input("../escape")
    button(at, "Save project").click().run()
    assert any("project name '../escape' is not allowed" in shown(e.value) for e in at.error)
    at.text_input(key="project_name").input("lab-notes")
    button(at, "Save project").click().run()
    assert not at.exception and not at.error
    assert (project_path(Workspace.for_session(sid), "lab-notes") / "project.json").is_file()
    assert "**lab-notes**" in texts(at)


@pytest.mark.slow
def test_training_from_scratch_adds_a_twin_compared_with_its_run(trained):
    sid, _ = trained
    other = new_session_id()  # the twin's job must not change the shared trained session
    ws = Workspace.for_session(other)
    open_project(save_project(Workspace.for_session(sid), project_path(ws, "copy")), ws)
    # The trained run used random weights; mark it pretrained so it can be repeated from scratch.
    config = ws.jobs_dir / "run-test" / "run" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "weights": "imagenet"}))

    at = open_page(PAGE, other)
    button(at, "Train from scratch for comparison").click().run()
    assert not at.exception
    twin = list_jobs(ws.jobs_dir)[0]
    assert twin.name.startswith("scratch-")
    assert "argv" not in json.loads((twin / "job.json").read_text())
    assert wait_for_job(twin)["status"] == "done"
    trained_with = json.loads((twin / "run" / "config.json").read_text())["train"]
    assert trained_with["weights"] is None and trained_with["epochs"] == 3

    at = open_page(PAGE, other)
    rows = run_history(ws.jobs_dir)
    assert [r["name"] for r in rows] == [twin.name, "run-test"]
    assert at.multiselect(key="compare_2").value == [twin.name, "run-test"]
    assert {(f"{twin.name} · validation", "loss"), ("run-test · validation", "loss")} <= set(curves_of(at))
    assert "from scratch, like run-test" in list(at.dataframe[0].value["Kind"])


def test_the_save_button_says_the_size_and_warns_or_refuses_as_opening_would(sid, monkeypatch):
    """Issue 17, item 7: the page shows what saving would write (each photo once) and, from tlcore's save_check,
    a warning when the ZIP is over the upload cap (server.maxUploadSize) or a refusal when no session could open
    the project (TLCORE_MAX_SESSION_MB)."""
    from streamlit import config

    from tests.conftest import make_image_folder
    from tests.core.test_experiments import fake_job
    from tlcore.lab.project import save_check
    from tlcore.training.config import TrainConfig

    ws = Workspace.for_session(sid)
    make_image_folder(ws.data_dir, n_per_class=3)
    job = fake_job(ws.jobs_dir, "run-a", TrainConfig())
    (job / "run" / "model.weights.h5").write_bytes(os.urandom(1_500_000))  # weights that do not compress
    check = save_check(ws, name="my-project")

    at = open_page(PAGE, sid)
    size = (f"Saving writes about {check['bytes'] / 2**20:.1f} MB, each of its {check['photos']} distinct photos "
            f"stored once; as a ZIP, at most {check['zip_bytes'] / 2**20:.1f} MB.")
    assert size in [c.value for c in at.caption] and not at.warning and not at.error

    upload = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)  # MB: the ZIP (1.5 MB of weights) is over it, every photo fits
    try:
        at = open_page(PAGE, sid)
        assert [w.value for w in at.warning] == [
            f"As a ZIP this project would take up to {check['zip_bytes'] / 2**20:.1f} MB, over the upload limit of 1 MB, "
            "so its download would not open by uploading it; it still opens from the list below."]
        button(at, "Save project").click().run()
        assert not at.exception and not at.error
        assert (project_path(ws, "my-project") / "project.json").is_file()  # a warning, not a refusal
    finally:
        config.set_option("server.maxUploadSize", upload)

    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "1")  # below what the project takes once opened
    at = open_page(PAGE, sid)
    refusal = [shown(e.value) for e in at.error]
    assert refusal == [f"This project would take {check['open_bytes'] / 2**20:.1f} MB once opened, over the limit of "
                       "1 MB per session, so no session could open it; delete some runs or photos first."]
    assert button(at, "Save project").disabled


def test_scores_come_first_and_a_fine_tuning_run_continues_its_parent_in_the_chart(sid):
    """Issue 17, item 6: the history table hid the accuracies off to the right, and the chart drew a fine-tuning
    run's head epochs (its parent's) exactly under its parent's curves."""
    from tests.core.test_experiments import HISTORY, fake_job
    from tlcore.training.config import TrainConfig

    ws = Workspace.for_session(sid)
    base = fake_job(ws.jobs_dir, "run-a", TrainConfig(epochs=2), started=1.0)
    tuned = fake_job(ws.jobs_dir, "finetune-b", TrainConfig(epochs=2, fine_tune_layers=3, fine_tune_epochs=2),
                     kind="finetune", fine_tuned=True, started=2.0, parent=str(base / "run"))
    own = [{"epoch": e, "phase": "fine_tune", "loss": 0.3, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.85}
           for e in (3, 4)]
    metrics = json.loads((tuned / "run" / "metrics.json").read_text())
    (tuned / "run" / "metrics.json").write_text(json.dumps({**metrics, "history": HISTORY + own}))

    at = open_page(PAGE, sid)
    assert not at.exception
    history = at.dataframe[0]
    order = list(history.proto.column_order)
    assert order[:3] == ["Run", "Validation accuracy", "Test accuracy"]
    assert sorted(order) == sorted(history.value.columns)  # reordered, none hidden

    assert at.multiselect(key="compare_2").value == ["finetune-b", "run-a"]
    xs = curves_of(at, "x")
    for metric in ("loss", "accuracy"):
        assert xs["run-a · validation", metric] == [1, 2]
        assert xs["finetune-b · validation", metric] == [3, 4]  # after its parent's last head epoch
        assert xs["finetune-b · train", metric] == [3, 4]
    at.multiselect(key="compare_2").set_value(["finetune-b"]).run()  # alone: its whole history
    assert curves_of(at, "x")["finetune-b · validation", "loss"] == [1, 2, 3, 4]


def test_the_page_says_where_runs_are_logged_to_mlflow_only_when_they_are(sid, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    at = open_page(PAGE, sid)
    assert not at.exception and not any("MLflow" in c.value for c in at.caption)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:pa55@tracker_1.example:5000")  # jobs inherit it
    at = open_page(PAGE, sid)
    assert not at.exception
    said = [shown(c.value) for c in at.caption if "MLflow" in c.value]
    assert said == ["New training, fine-tuning and export runs are also logged to MLflow at "
                    "http://team:***@tracker_1.example:5000."]
