"""The dashboard's process set-up (ui.frame.runtime): no Keras reset after a script run, the libraries frozen out of
the collector, a cached model's kernels kept from one click to the next."""
from __future__ import annotations

import gc

import keras
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import open_page
from ui.frame import runtime


def test_a_page_run_does_not_reset_keras(sid, monkeypatch):
    resets = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: resets.append(a))
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    next(b for b in at.button if "sample" in b.label).click().run()
    assert not at.exception
    assert resets == []  # Streamlit's own clean-up would have called it after each of the two runs


def test_streamlit_runs_the_clean_up_without_the_keras_reset():
    # If a Streamlit upgrade renames its clean-up, this fails rather than the dashboard silently slowing down.
    assert script_runner._clean_problem_modules is runtime.clean_after_run
    assert gc.get_freeze_count() > 0


def _predict_twice():
    import numpy as np
    import streamlit as st

    from tlcore.models.classifier import build_head

    @st.cache_resource
    def model():
        return build_head(8, 2)

    probs = model().predict_on_batch(np.ones((1, 8), np.float32))
    st.session_state["probs"] = np.asarray(probs).tolist()
    st.session_state["same"] = model() is model()


def test_a_cached_model_survives_reruns_and_predicts_the_same():
    at = AppTest.from_function(_predict_twice, default_timeout=60).run()
    first = at.session_state["probs"]
    at.run()
    assert not at.exception
    assert at.session_state["same"] and at.session_state["probs"] == first
