"""Transfer Lab dashboard: navigation (titles in the session's language) and the home page."""
import streamlit as st

from ui import state
from ui.i18n import translate
from ui.layout import setup, t


def home():
    setup("app.title")
    st.write(t("app.tagline"))
    st.markdown(t("app.steps"))
    st.info(t("app.start"))


lang = state.language()
pages = [st.Page(home, title=translate("nav.home", lang), url_path="home", default=True)] + [
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
    )
]
st.navigation(pages).run()
