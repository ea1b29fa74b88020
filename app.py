"""Transfer Lab dashboard: navigation (titles in the session's language) and the home page."""
import streamlit as st

from tlcore.lab.gc import start_periodic
from ui.frame import access, state
from ui.frame.i18n import translate
from ui.frame.layout import t
from ui.views.page import setup


def home():
    setup("app.title")
    st.write(t("app.tagline"))
    st.markdown(t("app.steps"))
    st.info(t("app.start"))


def pages(lang: str) -> list:
    return [st.Page(home, title=translate("nav.home", lang), url_path="home", default=True)] + [
        st.Page(f"pages/{file}.py", title=translate(key, lang), url_path=path)
        for file, key, path in (
            ("1_Data", "data.title", "Data"),
            ("2_Backbone", "backbone.title", "Backbone"),
            ("3_Train", "train.title", "Train"),
            ("4_Fine-tune", "ft.title", "Fine-tune"),
            ("5_Evaluate", "eval.title", "Evaluate"),
            ("6_Predict", "predict.title", "Predict"),
            ("7_Export", "export.title", "Export"),
            ("8_Adversarial", "adv.title", "Adversarial"),
            ("9_Runs", "runs.title", "Runs"),
            ("10_Demo", "demo.title", "Demo"),
        )
    ]


start_periodic()  # the server's disk clean-up: one daemon thread per process (tlcore.lab.gc)
if not state.admitted():
    # The access gate, before any page's own code and before a workspace exists. The pages are declared
    # (hidden) so a page's address still leads to that page once the gate is passed.
    st.navigation(pages(access.gate_language()), position="hidden")
    state.session_id()  # draws the gate and stops
st.navigation(pages(state.language())).run()
