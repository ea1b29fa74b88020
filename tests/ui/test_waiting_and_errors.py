"""A job waiting for a free slot on the Train page, and unexpected errors: a sentence for the user, the
traceback in the log file."""
from __future__ import annotations

import json
import os
import time

from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page
from tests.ui.test_pages import runs_radio, texts
from tlcore.cli import log_path
from tlcore.jobs import EventWriter, job_status


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


def _failing_script(marker: str) -> None:
    from ui.layout import guard

    with guard():
        raise RuntimeError(f"{marker}\nsecond line")


def test_an_unexpected_error_is_one_sentence_and_its_traceback_goes_to_the_log_file():
    marker = f"boom-{time.time_ns()}"
    at = AppTest.from_function(_failing_script, args=(marker,), default_timeout=60).run()
    assert not at.exception  # nothing escaped to Streamlit's own traceback box
    assert len(at.error) == 1
    message = at.error[0].value
    assert f"RuntimeError: {marker} second line" in message and str(log_path()) in message
    assert "Traceback" not in message and "\n" not in message
    log = log_path().read_text(encoding="utf-8")
    entry = log[log.rindex("dashboard error"):]  # this test's entry is the last one
    assert "Traceback (most recent call last)" in entry and f"RuntimeError: {marker}" in entry


def test_a_user_error_is_shown_as_it_is_and_not_logged_as_a_failure():
    def script():
        from tlcore.errors import TLError
        from ui.layout import guard

        with guard():
            raise TLError("class name '../x' is not allowed")

    at = AppTest.from_function(script, default_timeout=60).run()
    assert [e.value for e in at.error] == ["class name '../x' is not allowed"]
    assert "'../x'" not in (log_path().read_text(encoding="utf-8") if log_path().is_file() else "")
