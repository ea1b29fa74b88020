"""Calibration on the dashboard: reliability diagram and ECE on Evaluate, the "unknown" threshold on Predict."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.ui.conftest import open_page
from tests.ui.test_pages import png, texts
from tlcore.analysis.calibration import suggest_run_threshold
from ui.views.calibration import reliability_figure


def copy_run(trained, workspace, rewrite) -> tuple[list[dict], list[str]]:
    """The finished run copied into ``workspace`` with its saved predictions passed through ``rewrite(rows, classes)``."""
    _, job = trained
    copy = workspace.jobs_dir / job.name
    shutil.copytree(job, copy, ignore=shutil.ignore_patterns("data"))
    rows = json.loads((copy / "run" / "predictions.json").read_text())
    classes = (copy / "run" / "labels.txt").read_text().splitlines()
    rows = rewrite(rows, classes)
    (copy / "run" / "predictions.json").write_text(json.dumps(rows))
    return rows, classes


def test_reliability_figure_draws_non_empty_bins_against_the_diagonal():
    calibration = {"bins": [{"lower": 0.5, "upper": 0.6, "count": 0, "confidence": None, "accuracy": None},
                            {"lower": 0.9, "upper": 1.0, "count": 4, "confidence": 0.95, "accuracy": 0.5}]}
    labels = {k: k for k in ("perfect", "accuracy", "confidence", "range", "count")}
    diagonal, bars = reliability_figure(calibration, labels).data
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    assert list(bars.x) == [pytest.approx(0.95)] and list(bars.y) == [0.5]
    assert bars.customdata[0][3] == 4 and "count %{customdata[3]}" in bars.hovertemplate


def test_evaluate_page_shows_the_reliability_diagram_and_ece(trained):
    sid, _ = trained
    at = open_page("pages/5_Evaluate.py", sid)
    assert not at.exception
    assert "Calibration: can you trust its confidence?" in [s.value for s in at.subheader]
    assert "Calibration error (ECE)" in [m.label for m in at.metric]
    assert len(at.get("plotly_chart")) == 2  # the confusion matrix and the reliability diagram


def test_evaluate_page_explains_an_over_confident_model(trained, sid, workspace):
    def all_wrong_at_90(rows, classes):
        for r in rows:
            wrong = next(c for c in classes if c != r["label"])
            r["probs"] = [0.9 if c == wrong else 0.1 / (len(classes) - 1) for c in classes]
        return rows

    copy_run(trained, workspace, all_wrong_at_90)
    at = open_page("pages/5_Evaluate.py", sid)
    assert not at.exception
    ece = next(m for m in at.metric if m.label == "Calibration error (ECE)")
    assert ece.value == "0.900"  # every answer at 90% and none right: one bin, |0 - 0.9|
    assert "**over-confident**: it says 90% on average but is right 0% of the time" in texts(at)


def test_predict_slider_starts_at_the_threshold_of_the_validation_predictions(trained, sid, workspace):
    def known_validation(rows, classes):
        def probs(label, conf, right):
            top = label if right else next(c for c in classes if c != label)
            return [conf if c == top else (1 - conf) / (len(classes) - 1) for c in classes]

        val = [dict(r, probs=probs(r["label"], conf, right))
               for r, conf, right in zip([r for r in rows if r["split"] == "val"], (0.9, 0.8, 0.7), (True, True, False))]
        # A very confident mistake on the test split would leave no threshold at all, were it used.
        test = [dict(val[0], split="test", probs=probs(val[0]["label"], 0.99, False))]
        return val + test

    copy_run(trained, workspace, known_validation)
    at = open_page("pages/6_Predict.py", sid)
    assert not at.exception
    slider = at.slider[0]
    assert slider.label == "Answer \u201cunknown\u201d below this confidence"
    assert slider.value == pytest.approx(0.71)  # the mistake at 0.7 is left out; 2 of 2 right from 0.71
    assert "Suggested from the run's 3 validation photos: from 71% up" in texts(at)


def test_predict_keeps_the_default_threshold_when_validation_needs_none(trained, sid, workspace):
    def all_right(rows, classes):
        return [dict(r, probs=[0.6 if c == r["label"] else 0.4 / (len(classes) - 1) for c in classes])
                for r in rows]

    rows, _ = copy_run(trained, workspace, all_right)
    at = open_page("pages/6_Predict.py", sid)
    assert not at.exception
    assert at.slider[0].value == 0.5  # not 0: that would never answer "unknown", even for a photo unlike any class
    n_val = sum(r["split"] == "val" for r in rows)
    assert (f"On the run's {n_val} validation photos the answers were already 100% right without a threshold; "
            "it starts at 0.50") in texts(at)


def top_probability(at) -> float:
    """The largest probability in the Predict page's chart (the exact figure, not the rounded text)."""
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return max(x for trace in spec["data"] for x in trace["x"])


def test_predict_answers_unknown_below_the_threshold(trained):
    sid, job = trained
    suggested = suggest_run_threshold(job / "run")["threshold"]
    at = open_page("pages/6_Predict.py", sid)
    assert at.slider[0].value == pytest.approx(suggested or 0.5)  # None or 0 (no threshold needed): 0.5
    at.file_uploader[0].set_value(("red.png", png(), "image/png"))
    at.slider[0].set_value(0.0).run()
    assert not at.exception
    answer = next(m.value for m in at.markdown if m.value.startswith("Prediction: **"))
    assert answer != "Prediction: **unknown**"
    best, top = answer.split("**")[1], top_probability(at)
    # The small run is very sure of its own colours, yet not 100% sure: 1.0 always answers "unknown".
    assert top < 1.0
    for threshold in (0.99, 1.0):
        at.slider[0].set_value(threshold).run()
        assert not at.exception
        answers = [m.value for m in at.markdown if m.value.startswith("Prediction: **")]
        if top < threshold:
            assert answers == ["Prediction: **unknown**"]
            why = f"Its best guess, {best}, has only {top:.1%}, below your threshold of {threshold:.0%}"
            assert any(c.value.startswith(why) for c in at.caption)
        else:  # as sure as the threshold: answered ("unknown" only below it)
            assert answers == [answer]
        assert len(at.get("plotly_chart")) == 1  # the probabilities are still shown


def test_predict_page_in_french_answers_inconnu(trained, sid, workspace):
    copy_run(trained, workspace, lambda rows, classes: rows)  # a session of its own: the language is a setting
    workspace.update_settings(language="fr")
    at = open_page("pages/6_Predict.py", sid)
    at.file_uploader[0].set_value(("red.png", png(), "image/png"))
    at.slider[0].set_value(1.0).run()
    assert not at.exception
    assert at.slider[0].label == "Répondre \u00ab inconnu \u00bb sous cette confiance"
    assert any(m.value == "Prédiction : **inconnu**" for m in at.markdown)
