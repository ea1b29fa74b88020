"""Backbone: compare the pretrained networks, score them on the user's photos, and choose one."""

import streamlit as st

from tlcore.jobs.runner import new_job_dir, start_job
from tlcore.backbones.registry import get_spec, list_backbones
from tlcore.backbones.speed import measure_speed, measured_speeds
from ui.frame import state
from ui.frame.layout import guard, t
from ui.views.page import setup
from ui.views.leaderboard import show_leaderboard, speed_options

setup("backbone.title")
st.markdown(t("backbone.intro"))

speeds = measured_speeds()
names = list_backbones()
rows = []
for name in names:
    spec = get_spec(name)
    rows.append({
        t("backbone.col.name"): name,
        t("backbone.col.params"): round(spec.params / 1e6, 1),
        t("backbone.col.size"): spec.size_mb,
        t("backbone.col.top1"): f"{spec.imagenet_top1:.1%}",
        t("backbone.col.input"): spec.input_size,
        t("backbone.col.speed"): speeds.get(name),
        t("backbone.col.weights"): t("backbone.offline") if spec.offline else t("backbone.download"),
    })
st.dataframe(rows, hide_index=True, **speed_options())

current = state.backbone()
choice = st.selectbox(t("backbone.choose"), names, index=names.index(current) if current in names else 0,
                      key="backbone_select")
if choice != current:
    state.set_backbone(choice)
spec = get_spec(choice)
st.success(t("backbone.chosen", name=choice))
if not spec.offline:
    st.warning(t("backbone.needs_download", name=choice, mb=spec.size_mb))
with guard():
    if st.button(t("backbone.measure")):
        with st.spinner(t("backbone.measuring", name=choice)):
            measure_speed(choice)
        st.rerun()

st.subheader(t("backbone.lb_title"))
st.write(t("backbone.lb_intro"))
ws = state.workspace()
has_data = sum(1 for n in ws.counts().values() if n) >= 2
running = state.job_running()
if st.button(t("backbone.lb_start"), icon=":material/leaderboard:", disabled=running or not has_data):
    with guard():
        job_dir = new_job_dir(ws.jobs_dir, "leaderboard")
        data = ws.snapshot(job_dir / "data")
        start_job(job_dir, ["leaderboard", str(data)], kind="leaderboard", meta={"parent": str(ws.data_dir)})
        st.rerun()
if not has_data:
    st.caption(t("no_data"))
elif running:
    st.caption(t("train.busy"))

boards = state.jobs_of(ws.data_dir, "leaderboard")
if boards:
    show_leaderboard(boards[0][0], choice)
