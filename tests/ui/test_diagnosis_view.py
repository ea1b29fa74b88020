"""The diagnosis panel beside a finished run's curves: verdict by severity, evidence, remedies, in both languages."""
from __future__ import annotations

import json
import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.core.test_diagnosis import FINE_TUNE_OK, FORGET, GOOD, OVERFIT
from tests.ui.conftest import open_page, shown
from tests.ui.test_pages import texts
from tlcore.analysis.diagnosis import CODES, REMEDIES, diagnose
from tlcore.jobs.runner import EventWriter
from ui.views.diagnosis import SEVERITY, evidence_fields
from ui.frame.i18n import catalog


def finished_job(workspace, history, name="run-planted", warnings=(), train=None):
    """A done training job whose worker (this test process stands in for it) recorded ``history``; with ``train``
    (its settings), the run folder it saved too."""
    job = workspace.jobs_dir / name
    job.mkdir(parents=True)
    if train is not None:
        (job / "run").mkdir()
        (job / "run" / "config.json").write_text(json.dumps({"train": train, "fine_tuned": False}))
        (job / "run" / "metrics.json").write_text(json.dumps({"history": history}))
    pid = os.getpid()
    (job / "job.json").write_text(json.dumps({"kind": "train", "argv": [], "pid": pid, "started": time.time()}))
    events = EventWriter(job / "events.jsonl")
    events({"type": "start", "command": "train", "epochs": len(history), "fine_tune_epochs": 0})
    for entry in history:
        events({"type": "epoch", **entry})
    result = {"val_accuracy": history[-1].get("val_accuracy"), "test_accuracy": None, "seconds": {"total": 1.0},
              "warnings": list(warnings), "history": history}
    events({"type": "done", "result": result})
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": result}))
    workspace.update_settings(current_job=str(job))
    return job


def test_train_page_shows_the_overfitting_diagnosis_beside_the_curves(sid, workspace):
    finished_job(workspace, OVERFIT)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    assert len(at.columns) >= 2  # curves and panel side by side
    verdicts = [shown(w.value) for w in at.warning]
    assert any(v.startswith("Overfitting:") for v in verdicts), verdicts
    page = texts(at)
    assert "What the curves say" in page
    assert "a gap of 28 points" in page and "best at epoch 4" in page
    assert "- Raise dropout (for example from 0.2 to 0.4)." in page
    assert "turn on augmentation" in page.lower()


def test_the_remedies_beside_the_curves_skip_what_the_run_did(sid, workspace):
    finished_job(workspace, OVERFIT, train={"augment": True, "resample": "oversample"})
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    page = texts(at)
    assert "- Add photos: 25 photos per class are enough to start" in page  # augmentation was on: photos next
    assert "turn on augmentation" not in page.lower()
    assert "- Add photos to the small classes" in page  # oversampling repeats their few photos


def test_a_good_fit_is_green_and_translated(sid, workspace):
    workspace.update_settings(language="fr")
    finished_job(workspace, GOOD)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert any(s.value.startswith("Bon ajustement") for s in at.success)
    assert "Ce que disent les courbes" in texts(at)
    assert not any("Overfitting" in shown(w.value) or "Surapprentissage" in shown(w.value) for w in at.warning)


def test_fine_tuning_that_forgets_is_red_with_the_epoch_of_unfreezing(sid, workspace):
    finished_job(workspace, FORGET)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert any(e.value.startswith("Forgetting:") for e in at.error)
    assert "Right after unfreezing at epoch 6, validation accuracy went from 91% to 60%" in texts(at)


def test_training_warnings_are_explained_beside_the_run(sid, workspace):
    finished_job(workspace, GOOD, warnings=[{"code": "high_lr", "message": "head learning rate 0.1 is high"}])
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert any("head learning rate 0.1 is high" in shown(w.value) for w in at.warning)


def test_a_real_finished_run_gets_a_diagnosis(trained):
    sid, _ = trained
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert "What the curves say" in texts(at)
    assert "What to try:" in texts(at)


def _panel(history, code=None):
    from tlcore.analysis.diagnosis import diagnose
    from ui.views.diagnosis import show_diagnosis

    diagnosis = diagnose(history)  # FINE_TUNE_OK's history says it was fine-tuned
    if code is not None:  # a verdict this dashboard does not know yet
        diagnosis = {**diagnosis, "code": code}
    show_diagnosis(diagnosis)


def test_a_planted_overfitting_history_yields_the_overfitting_panel():
    at = AppTest.from_function(_panel, args=(OVERFIT,), default_timeout=30).run()
    assert not at.exception
    assert [shown(w.value) for w in at.warning] == [catalog("en")["diag.overfitting"]]
    assert not at.success and not at.error
    markdown = "\n".join(m.value for m in at.markdown)
    given = diagnose(OVERFIT)["remedies"]  # a head-only run, neither augmented nor rebalanced
    for remedy in REMEDIES["overfitting"]:
        assert (f"- {remedy}" in markdown) == (remedy in given), remedy
    assert 0 < len(given) < len(REMEDIES["overfitting"])


def test_an_unknown_code_shows_tlcore_message_and_remedies():
    at = AppTest.from_function(_panel, args=(OVERFIT, "wobbly"), default_timeout=30).run()
    assert not at.exception
    assert "training photos by heart" in at.info[0].value  # tlcore's English message
    assert any(REMEDIES["overfitting"][0] in m.value for m in at.markdown)


def test_in_french_the_panel_shows_the_catalogs_remedies_not_tlcores():
    at = AppTest.from_function(_panel, args=(OVERFIT,), default_timeout=30)
    at.session_state["tl_language"] = "fr"
    at.run()
    assert not at.exception
    markdown = "\n".join(m.value for m in at.markdown)
    french = catalog("fr")["diag.overfitting.remedies"].split("\n")
    assert len(french) == len(REMEDIES["overfitting"])
    given = diagnose(OVERFIT)["remedies"]
    # Each remedy given in its French line (the same place in the list), and only those.
    for english, remedy in zip(REMEDIES["overfitting"], french):
        assert (f"- {remedy}" in markdown) == (english in given), remedy
    assert not any(remedy in markdown for remedy in REMEDIES["overfitting"])


def test_in_french_the_remedies_after_fine_tuning_are_the_next_thing_to_try():
    at = AppTest.from_function(_panel, args=(FINE_TUNE_OK,), default_timeout=30)
    at.session_state["tl_language"] = "fr"
    at.run()
    assert not at.exception
    markdown = "\n".join(m.value for m in at.markdown)
    assert "entraînez à nouveau avec l'augmentation activée" in markdown
    assert "affinez les couches hautes du backbone" not in markdown


def _saved_panel():
    from tests.core.test_diagnosis import OVERFIT
    from tlcore.analysis.diagnosis import diagnose
    from ui.views.diagnosis import show_diagnosis

    # A diagnosis another version wrote (metrics.json): one remedy this tlcore lists, one it does not.
    show_diagnosis({**diagnose(OVERFIT), "remedies": ["Raise dropout (for example from 0.2 to 0.4).",
                                                       "Sing to the model."]})


def test_a_remedy_of_another_version_stays_in_english():
    at = AppTest.from_function(_saved_panel, default_timeout=30)
    at.session_state["tl_language"] = "fr"
    at.run()
    assert not at.exception
    markdown = "\n".join(m.value for m in at.markdown)
    assert "- Augmentez le dropout (par exemple de 0,2 à 0,4).\n- Sing to the model." in markdown


@pytest.mark.parametrize("code", CODES)
def test_every_code_has_a_verdict_evidence_and_remedies_in_both_languages(code):
    assert code in SEVERITY
    for suffix in ("", ".evidence"):
        en, fr = (catalog(lang)[f"diag.{code}{suffix}"] for lang in ("en", "fr"))
        assert en and fr and en != fr
    # The English remedies are tlcore's alone (the CLI and metrics.json say them); French translates each line.
    assert f"diag.{code}.remedies" not in catalog("en")
    french = catalog("fr")[f"diag.{code}.remedies"].split("\n")
    assert len(french) == len(REMEDIES[code]) and all(french) and not set(french) & set(REMEDIES[code])
    # Every sentence formats even with no evidence at all ("–" for the unknown numbers).
    fields = {k: "–" for k in evidence_fields({})}
    for text in (catalog(lang)[f"diag.{code}.evidence"] for lang in ("en", "fr")):
        assert text.format(**fields)
