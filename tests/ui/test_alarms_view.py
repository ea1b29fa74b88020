"""Alarms in the dashboard: explanations and fixes while configuring (Train, Fine-tune) and for any warning list."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page, shown

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
    assert "'red' has 12, 'blue' has 4 images" in text  # the numbers, from tlcore's message

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
    from ui.views.advice import show_warnings

    show_warnings([{"code": "mystery_code", "message": "something odd happened (3 times)"},
                   {"code": "test_set_reuse", "message": "this test set has now been scored 4 times; ..."},
                   {"code": "test_set_reuse", "message": "this test set has now been scored 4 times; ..."}])


def test_show_warnings_explains_known_codes_once_and_falls_back_to_the_message(sid):
    at = AppTest.from_function(_warnings_script)
    at.query_params["s"] = sid
    at.run()
    assert not at.exception
    assert len(at.warning) == 2  # the repeated warning is drawn once
    assert shown(at.warning[0].value) == "something odd happened (3 times)"
    assert "Choose between runs by validation accuracy" in shown(at.warning[1].value)
    assert "scored 4 times" in shown(at.warning[1].value)


def test_show_warnings_speaks_french(sid, workspace):
    workspace.update_settings(language="fr")
    at = AppTest.from_function(_warnings_script)
    at.query_params["s"] = sid
    at.run()
    assert "Correction : Choisissez entre les entraînements par la précision de validation" in shown(at.warning[1].value)
