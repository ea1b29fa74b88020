"""Transfer Lab dashboard: home page (the steps live in pages/)."""
import streamlit as st

from ui.layout import setup, t

setup("app.title")
st.write(t("app.tagline"))
st.markdown(t("app.steps"))
st.info(t("app.start"))
