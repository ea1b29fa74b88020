"""A job waiting for a free slot on the Train page, and unexpected errors: a sentence for the user, the
traceback in the log file."""
from __future__ import annotations

import json
import os
import re
import string
import time
from pathlib import Path

import pytest

from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page, shown
from tests.ui.test_pages import runs_radio, texts
from tlcore.jobs import slots
from tlcore.cli import build_parser, log_path
from tlcore.training.commands import finetune_args, train_args
from tlcore.jobs.runner import EventWriter, job_status
from tlcore.lab.project import open_project, project_path, save_project
from tlcore.training.config import TrainConfig
from tlcore.lab.workspace import Workspace, new_session_id


def waiting_job(workspace, position=2, slots=1):
    """A job folder whose worker (this test process stands in for it) waits in line for a slot."""
    job = workspace.jobs_dir / "run-waiting"
    job.mkdir(parents=True)
    (job / "job.json").write_text(json.dumps({"kind": "train", "argv": [], "pid": os.getpid(), "started": time.time()}))
    EventWriter(job / "events.jsonl")({"type": "waiting", "position": position, "slots": slots})
    workspace.update_settings(current_job=str(job))
    return job


def test_train_page_shows_a_waiting_job_with_stop_and_no_second_start(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=2)
    job = waiting_job(workspace, position=2, slots=1)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert "Waiting for a free training slot (1 jobs run at once on this server)." in texts(at)
    assert "Place in line: 2." in texts(at)
    assert next(b for b in at.button if b.label == "Train").disabled  # one job at a time per session
    assert "run-waiting · waiting" in runs_radio(at).options[0]

    next(b for b in at.button if b.label == "Stop").click().run()
    assert not at.exception
    assert (job / "STOP").is_file()
    assert job_status(job)["status"] == "stopping"


def test_waiting_text_is_translated(sid, workspace):
    workspace.update_settings(language="fr")
    make_image_folder(workspace.data_dir, n_per_class=2)
    waiting_job(workspace, position=1, slots=3)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    expected = "En attente d'une place libre pour l'entraînement (3 tâches tournent à la fois sur ce serveur)."
    assert expected in texts(at)


@pytest.mark.parametrize("language, expected", [
    ("en", "Waiting in the Ray cluster's queue until 2 CPU(s) are free for this job."),
    ("fr", "En attente dans la file du cluster Ray, jusqu'à ce que 2 processeur(s) se libèrent pour cette tâche.")])
def test_a_job_in_the_ray_clusters_queue_says_so(sid, workspace, monkeypatch, language, expected):
    from tlcore.jobs import ray_jobs

    # The task's state comes from the server's own handle on it (tlcore.jobs.ray_jobs); here: still queued.
    monkeypatch.setattr(ray_jobs, "task_state", lambda job_dir, executor: "queued")
    workspace.update_settings(language=language)
    make_image_folder(workspace.data_dir, n_per_class=2)
    job = workspace.jobs_dir / "run-queued"
    job.mkdir(parents=True)
    (job / "job.json").write_text(json.dumps({"kind": "train", "started": time.time(), "executor": {
        "engine": "ray", "address": "127.0.0.1:6379", "task": "ab12", "cpus": 2, "gpus": 0, "slots": 1}}))
    workspace.update_settings(current_job=str(job))
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert expected in texts(at)
    assert "Waiting for a free training slot" not in " ".join(texts(at))


def test_a_job_stopped_while_waiting_says_nothing_ran(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=2)
    job = waiting_job(workspace)
    EventWriter(job / "events.jsonl")({"type": "done", "result": {}, "started": False})
    (job / "STOP").touch()
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "result": {}}))
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert "Stopped while waiting for a free slot; nothing was run." in texts(at)
    assert not at.success  # no "Done: validation accuracy –" for a run that never started


def test_a_start_refused_by_the_waiting_cap_is_one_error_and_leaves_no_job(sid, workspace, monkeypatch, tmp_path):
    """Issue 14, item 5: the core refuses beyond the caps (not only a disabled button); the page says why."""
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    monkeypatch.setenv("TLCORE_MAX_WAITING", "1")
    make_image_folder(workspace.data_dir, n_per_class=4)
    running = slots.try_acquire()  # the server's only slot is busy...
    waiting = slots.admit(tmp_path / "another-session" / "jobs")  # ...and another session's job fills the line
    try:
        at = open_page("pages/3_Train.py", sid)
        next(b for b in at.button if b.label == "Train").click().run()
        assert not at.exception
        assert [shown(e.value) for e in at.error] == [
            "this server's waiting line is full (TLCORE_MAX_WAITING=1): every job slot is busy and no more jobs "
            "may wait; try again when one has started"]
        assert list(workspace.jobs_dir.iterdir()) == []  # no job folder, no worker
    finally:
        waiting.release()
        running.release()


@pytest.fixture
def recorded_starts(monkeypatch):
    """Jobs the pages start, recorded instead of run: (job folder, arguments, kind, meta)."""
    import tlcore.jobs.runner

    calls = []

    def start_job(job_dir, args, kind="train", meta=None):
        calls.append((Path(job_dir), list(args), kind, meta))
        # As a worker that ended at once leaves it, so the page can draw the job it just started.
        (Path(job_dir) / "job.json").write_text(json.dumps({"kind": kind, "pid": 0, "started": time.time(),
                                                            **(meta or {})}))
        (Path(job_dir) / "result.json").write_text(json.dumps({"exit_code": 0, "pid": 0, "result": {}}))
        return Path(job_dir)

    monkeypatch.setattr(tlcore.jobs.runner, "start_job", start_job)
    return calls


def test_train_page_starts_the_command_built_from_its_settings_in_a_new_folder(sid, workspace, recorded_starts,
                                                                               monkeypatch):
    """Issue 14, items 2 and 7: the command comes from tlcore.training.commands, the folder from new_job_dir."""
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20250101-120000" if fmt == "%Y%m%d-%H%M%S" else real(fmt, *a))
    make_image_folder(workspace.data_dir, n_per_class=12, size=16)
    (workspace.jobs_dir / "run-20250101-120000").mkdir()  # a job started in the same second
    at = open_page("pages/3_Train.py", sid)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error
    [(job, args, kind, _)] = recorded_starts
    assert kind == "train" and job == workspace.jobs_dir / "run-20250101-120000-001"  # its own folder
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.data, parsed.out) == ("train", str(job / "data"), str(job / "run"))
    assert (parsed.backbone, parsed.weights, parsed.loop) == ("efficientnet_lite0", "imagenet", "fit")
    assert args == train_args(TrainConfig(epochs=parsed.epochs, batch_size=parsed.batch_size, lr=parsed.lr,
                                          dropout=parsed.dropout, split=parsed.split, seed=parsed.seed,
                                          class_weights=parsed.class_weights), job / "data", job / "run")
    assert sorted(p.name for p in (job / "data").iterdir()) == ["blue", "red"]


@pytest.mark.slow
def test_fine_tune_page_starts_the_command_built_from_its_settings(trained, recorded_starts):
    sid, _ = trained
    other = new_session_id()  # a copy: the shared trained session is left as it is
    ws = Workspace.for_session(other)
    open_project(save_project(Workspace.for_session(sid), project_path(ws, "copy")), ws)
    at = open_page("pages/4_Fine-tune.py", other)
    next(b for b in at.button if b.label == "Fine-tune").click().run()
    assert not at.exception and not at.error
    [(job, args, kind, meta)] = recorded_starts
    base = ws.jobs_dir / "run-test" / "run"
    assert kind == "finetune" and job.name.startswith("finetune-") and meta == {"parent": str(base)}
    # The page's widgets start from TrainConfig: its suggested layer count and its fine-tuning defaults.
    from tlcore.io.settings import setting_info

    suggested = setting_info(TrainConfig, "fine_tune_layers").suggested
    assert args == finetune_args(TrainConfig(fine_tune_layers=suggested), base, job / "run")


def _failing_script(marker: str) -> None:
    from ui.frame.layout import guard

    with guard():
        raise RuntimeError(f"{marker}\nsecond line")


def test_an_unexpected_error_is_one_sentence_and_its_traceback_goes_to_the_log_file():
    marker = f"boom-{time.time_ns()}"
    at = AppTest.from_function(_failing_script, args=(marker,), default_timeout=60).run()
    assert not at.exception  # nothing escaped to Streamlit's own traceback box
    assert len(at.error) == 1
    message = shown(at.error[0].value)
    # The page shows a reference only: no exception text (it can hold server paths) and no log path.
    assert marker not in message and str(log_path()) not in message and "RuntimeError" not in message
    assert "Traceback" not in message and "\n" not in message
    reference = re.search(r"reference ([0-9a-f]{8})", message).group(1)
    log = log_path().read_text(encoding="utf-8")
    entry = log[log.index(f"dashboard error [{reference}]"):]  # the operator finds it by the reference
    assert "Traceback (most recent call last)" in entry and f"RuntimeError: {marker}" in entry


def test_a_user_error_is_shown_as_it_is_and_not_logged_as_a_failure():
    def script():
        from tlcore.io.errors import TLError
        from ui.frame.layout import guard

        with guard():
            raise TLError("class name '../x' is not allowed")

    at = AppTest.from_function(script, default_timeout=60).run()
    assert [shown(e.value) for e in at.error] == ["class name '../x' is not allowed"]
    assert "'../x'" not in (log_path().read_text(encoding="utf-8") if log_path().is_file() else "")


def test_a_user_error_is_shown_character_for_character_not_as_markdown():
    def script():
        from tlcore.io.names import check_class_name
        from ui.frame.layout import guard

        with guard():
            check_class_name("*a*\\b_c_:cat: [x](y)")

    at = AppTest.from_function(script, default_timeout=60).run()
    (error,) = at.error
    # The sentence as tlcore wrote it: the name's stars, backslash and brackets, the rule's "/ or \\".
    assert shown(error.value) == ("class name '*a*\\\\b_c_:cat: [x](y)' is not allowed: it contains a / or \\; "
                                  "use 1-60 characters without / or \\, not starting with a dot or a dash")


@pytest.mark.parametrize("text", ["plain", "*bold* _it_ `code` [a](b) <i>", "a\\b \\* 1. # - + ! | ~ $x$ :smile:",
                                  "&lt; &amp;", "é ü 名前", string.punctuation])
def test_plain_text_reads_back_as_it_was(text):
    from ui.frame.layout import plain

    assert shown(plain(text)) == text
    assert all(plain(ch) == "\\" + ch for ch in text if ch in string.punctuation)  # every mark escaped
    assert all(plain(ch) == ch for ch in text if ch not in string.punctuation)
