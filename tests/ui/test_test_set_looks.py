"""Looking at test scores is what counts (issue 17): Evaluate opens on validation, and each run whose test split a
person opens is counted once in the session's ledger, with the count shown; training counts nothing."""
from __future__ import annotations

import json
import shutil

from tests.ui.conftest import copy_of_trained, open_page, shown
from tlcore.lab.workspace import Workspace
from tlcore.training.ledger import run_fingerprint, run_key, scored_runs, times_scored

FIRST = "First run scored on this test set."


def _session(trained, tmp_path):
    """A copy of the trained session (its ledger starts empty; the shared one stays as made)."""
    sid, job = copy_of_trained(trained, tmp_path)
    return sid, Workspace.for_session(sid), job / "run"


def _second_run(run, name="run-second"):
    """Another finished run on the same photos and split (its own predictions, as a retrained run has)."""
    job = run.parent.with_name(name)
    shutil.copytree(run.parent, job)
    predictions = job / "run" / "predictions.json"
    rows = json.loads(predictions.read_text())
    for r in rows:
        r["probs"] = list(reversed(r["probs"]))
    predictions.write_text(json.dumps(rows))
    return job / "run"


def _first_look(at) -> bool:
    return any(FIRST in i.value for i in at.info)


def _choose(at, run):
    at.selectbox(key="run_select").set_value(str(run)).run()


def test_evaluate_opens_on_validation_and_a_finished_training_counted_nothing(trained, tmp_path):
    sid, ws, run = _session(trained, tmp_path)
    at = open_page("pages/5_Evaluate.py", sid)
    assert not at.exception
    assert at.radio[0].value == "val"
    assert not _first_look(at) and not at.warning
    assert scored_runs(ws.root) == frozenset()
    assert times_scored(run_fingerprint(run)) == 0  # nor in the cache's ledger, where the training job ran


def test_opening_the_test_split_counts_the_run_once_and_says_so(trained, tmp_path):
    sid, ws, run = _session(trained, tmp_path)
    at = open_page("pages/5_Evaluate.py", sid)
    at.radio[0].set_value("test").run()
    assert not at.exception
    assert _first_look(at)
    fingerprint = run_fingerprint(run)
    assert scored_runs(ws.root) == {run_key(run)} and times_scored(fingerprint, ws.root) == 1

    # Reruns, going back to validation and to test again, a new visit: still one run looked at.
    at.run()
    at.radio[0].set_value("val").run()
    at.radio[0].set_value("test").run()
    again = open_page("pages/5_Evaluate.py", sid)
    again.radio[0].set_value("test").run()
    assert _first_look(again)
    assert times_scored(fingerprint, ws.root) == 1


def test_a_second_run_scored_on_the_same_test_set_raises_the_warning_with_the_count(trained, tmp_path):
    sid, ws, run = _session(trained, tmp_path)
    second = _second_run(run)
    at = open_page("pages/5_Evaluate.py", sid)
    _choose(at, run)
    at.radio[0].set_value("test").run()
    _choose(at, second)  # still on the test split: a look at the second run
    assert not at.exception
    box = shown(at.warning[0].value)
    assert box.startswith("**This test set has been scored by several runs")
    assert "Details: Runs scored on this test set so far: 2." in box
    assert times_scored(run_fingerprint(run), ws.root) == 2
    _choose(at, run)  # back to the first: already counted
    assert times_scored(run_fingerprint(run), ws.root) == 2
    assert "so far: 2." in shown(at.warning[0].value)


def test_looks_are_counted_per_session(trained, tmp_path):
    sid, ws, run = _session(trained, tmp_path)
    other_sid, other_ws, other_run = _session(trained, tmp_path / "other")
    for s in (sid, other_sid):
        at = open_page("pages/5_Evaluate.py", s)
        at.radio[0].set_value("test").run()
        # The same photos in another session: its own first look, not a second one.
        assert _first_look(at) and not at.warning
    assert times_scored(run_fingerprint(run), ws.root) == times_scored(run_fingerprint(other_run), other_ws.root) == 1


def test_runs_page_shows_a_test_accuracy_once_its_test_split_was_looked_at(trained, tmp_path):
    sid, ws, run = _session(trained, tmp_path)
    second = _second_run(run)
    test_accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]

    def test_column(name):
        history = open_page("pages/9_Runs.py", sid).dataframe[0].value
        return history[history["Run"] == name].iloc[0]["Test accuracy"]

    assert test_column(run.parent.name) == test_column(second.parent.name) == "kept back"
    at = open_page("pages/5_Evaluate.py", sid)
    _choose(at, run)
    at.radio[0].set_value("test").run()
    assert test_column(run.parent.name) == f"{test_accuracy:.1%}"
    assert test_column(second.parent.name) == "kept back"  # the other run's test score is still unseen
