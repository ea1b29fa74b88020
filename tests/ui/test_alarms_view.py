"""Alarms in the dashboard: explanations and fixes while configuring (Train, Fine-tune) and for any warning list;
the details line says the numbers, never the fix again."""
from __future__ import annotations

import ast
import string

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder
from tests.ui.conftest import ROOT, open_page, shown
from ui.frame.i18n import LANGUAGES, catalog

UNCOMPENSATED = "the classes are imbalanced and nothing compensates"


def warnings_text(at) -> str:
    return "\n".join(shown(w.value) for w in at.warning)


def test_train_page_explains_uncompensated_imbalance_and_its_fix(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=12, classes=("red",))
    make_image_folder(workspace.data_dir, n_per_class=4, classes=("blue",), seed=1)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert UNCOMPENSATED not in warnings_text(at).lower()  # class weights "auto" compensate by default

    at.selectbox(key="class_weights").select("none").run()
    assert not at.exception
    text = warnings_text(at)
    assert UNCOMPENSATED in text.lower()
    assert "Fix: Set class weights to auto or balanced, or choose oversampling or undersampling." in text
    assert "Details: “red” has 12 training photos, “blue” 4: 3.0 to 1." in text  # the numbers, from tlcore's values

    at.selectbox(key="resample").select("oversample").run()
    assert UNCOMPENSATED not in warnings_text(at).lower()


def test_train_page_warns_about_strong_augmentation(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=4)
    at = open_page("pages/3_Train.py", sid)
    next(c for c in at.checkbox if c.label.startswith("Augment")).check().run()
    assert "augmentation is strong" not in warnings_text(at)
    at.slider(key="augment_strength").set_value(0.5).run()
    assert not at.exception
    assert "The augmentation is strong" in warnings_text(at)
    assert "Use a strength of about 0.2." in warnings_text(at)


def test_fine_tune_page_warns_about_long_fine_tuning_without_early_stopping(trained):
    sid, _ = trained
    at = open_page("pages/4_Fine-tune.py", sid)
    assert not at.exception
    assert "starts from random weights" in warnings_text(at)  # the base run was trained with --weights none
    assert "early stopping" not in warnings_text(at)
    at.slider[1].set_value(15)  # epochs
    at.toggle(key="early_stopping").set_value(False).run()
    assert not at.exception
    assert "Turn early stopping on, or fine-tune for 10 epochs or fewer." in warnings_text(at)
    at.select_slider[0].set_value(1e-3).run()
    assert "erase what the pretrained backbone already knows" in warnings_text(at)


def _warnings_script():
    from tlcore.training.alarms import reused_test_set_alarms
    from ui.views.advice import show_warnings

    show_warnings([{"code": "mystery_code", "message": "something odd happened (3 times)"},
                   *reused_test_set_alarms(4), *reused_test_set_alarms(4),
                   # A warning kept by a run of an earlier version: a message, no values.
                   {"code": "skipped_files", "message": "2 file(s) could not be read and were left out"}])


def test_show_warnings_explains_known_codes_once_and_falls_back_to_the_message(sid):
    at = AppTest.from_function(_warnings_script)
    at.query_params["s"] = sid
    at.run()
    assert not at.exception
    assert len(at.warning) == 3  # the repeated warning is drawn once
    assert shown(at.warning[0].value) == "something odd happened (3 times)"
    reuse = shown(at.warning[1].value)
    assert "Fix: Choose between runs by validation accuracy" in reuse
    assert "Details: Runs scored on this test set so far: 4." in reuse
    assert "Details: 2 file(s) could not be read and were left out" in shown(at.warning[2].value)


def test_fix_and_details_do_not_repeat_each_other(sid):
    at = AppTest.from_function(_warnings_script)
    at.query_params["s"] = sid
    at.run()
    explanation, fix, details = shown(at.warning[1].value).split("  \n")
    assert fix.startswith("Fix: ") and details.startswith("Details: ")
    # The advice is said once: tlcore's English message (the command line's) repeats it, so it is not shown.
    assert shown(at.warning[1].value).lower().count("validation accuracy") == 1
    assert "choose between runs" not in details.lower() and "4" not in fix


def test_show_warnings_speaks_french(sid, workspace):
    workspace.update_settings(language="fr")
    at = AppTest.from_function(_warnings_script)
    at.query_params["s"] = sid
    at.run()
    reuse = shown(at.warning[1].value)
    assert "Correction : Choisissez entre les entraînements par la précision de validation" in reuse
    assert "Détails : Entraînements notés sur ce jeu de test jusqu'ici : 4." in reuse  # the numbers in French too


def _alarm_calls() -> dict[str, set[str]]:
    """Every alarm tlcore's training raises, by code: the names of the values it passes ``alarm(...)``."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tlcore" / "training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "alarm":
                code = node.args[0].value
                found[code] = found.get(code, set()) | {k.arg for k in node.keywords}
    return found


def test_the_scan_finds_the_alarms():
    calls = _alarm_calls()
    assert calls["high_lr"] == {"lr"} and calls["random_weights"] == set() and calls["test_set_reuse"] == {"n"}
    assert {"few_held_out", "class_imbalance", "skipped_files", "nothing_unfrozen"} <= set(calls)


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_each_alarm_is_explained_and_its_details_take_exactly_its_values(lang):
    texts = catalog(lang)
    for code, values in _alarm_calls().items():
        assert f"alarm.{code}" in texts, (lang, code)
        details = texts.get(f"alarm.{code}.details")
        if not values:
            # Nothing to add to the explanation and the fix (a template would fall back to the English message).
            assert details is None, (lang, code)
            continue
        assert details is not None, (lang, code, "numbers without a sentence to say them")
        assert {f for _, f, _, _ in string.Formatter().parse(details) if f} == values, (lang, code)
        fix = texts.get(f"alarm.{code}.fix")
        assert fix is None or details != fix
