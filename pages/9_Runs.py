"""Runs: every finished run with its settings and scores, side-by-side comparison, from-scratch twins, projects."""
import streamlit as st

from tlcore.lab.experiments import run_history
from tlcore.lab.mlflow_tracking import logged_to
from ui.frame import state
from ui.frame.layout import plain, t
from ui.views.page import setup
from ui.views.runs import (choose_runs, show_comparison, show_disk, show_history, show_projects, show_scratch,
                          show_twin_job)

setup("runs.title")
st.write(t("runs.intro"))
tracking = logged_to()
if tracking:
    st.caption(t("runs.mlflow", uri=plain(tracking)))
show_projects()  # first: a project opened there is what the rest of the page lists

rows = run_history(state.workspace().jobs_dir)
if not rows:
    st.info(t("no_run"))
else:
    st.subheader(t("runs.history"))
    show_history(rows)
    st.subheader(t("runs.compare_header"))
    show_comparison(choose_runs(rows), rows)
    show_scratch(rows)
show_twin_job()
show_disk()
