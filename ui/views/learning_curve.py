"""The Train page's "Will more photos help?" panel: a learning-curve job, followed, then its chart and verdict.

The curve runs as a job (``python -m tlcore learning-curve``) like every other piece of work: photos not yet
embedded take a while, and with the embeddings cached (any dataset trained on) the job ends in seconds.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from tlcore.jobs.runner import LIVE, job_status, new_job_dir, read_events, start_job
from tlcore.lab.workspace import Workspace
from tlcore.training.learning_curve import LearningCurveConfig, learning_curve_args

from ui.charts.learning_curve import learning_curve_figure
from ui.frame import state
from ui.frame.layout import guard, job_error, plain, t
from ui.views.follow import follow, phase_progress, show_progress

__all__ = ["show_learning_curve", "KIND"]

KIND = "learning_curve"  # the job kind, and what the page's job list leaves to this panel


def _labels(repeats: int) -> dict:
    return {"photos": t("curve.chart.photos"), "accuracy": t("chart.accuracy"),
            "measured": t("curve.chart.measured", n=repeats), "fit": t("curve.chart.fit"),
            "extrapolated": t("curve.chart.extrapolated")}


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _table(result: dict) -> None:
    rows = []
    for name, entry in result["per_class"].items():
        ext = entry.get("extrapolation")
        if ext is None:
            continue
        rows.append({t("curve.col.class"): name, t("curve.col.photos"): ext["photos_per_class"],
                     t("curve.col.now"): _pct(ext["accuracy"]), t("curve.col.expected"): _pct(ext["expected_accuracy"]),
                     t("curve.col.gain"): f"+{ext['gain'] * 100:.1f}"})
    st.dataframe(rows, hide_index=True)


def _result(job_dir: Path, result: dict) -> None:
    if result.get("stopped"):
        st.warning(t("curve.stopped"))
    ext = result["extrapolation"]
    st.plotly_chart(learning_curve_figure(result, _labels(result["repeats"])), key=f"curve_{job_dir.name}")
    # Photos per class are a mean over the classes (98.5); said in whole photos.
    st.caption(t("curve.expect", photos=f"{ext['more_photos_per_class']:.0f}", expected=_pct(ext["expected_accuracy"]),
                 now=_pct(ext["accuracy"]), n=f"{ext['photos_per_class']:.0f}"))
    if ext.get("class_gaining_most") is not None:
        st.caption(t("curve.most", name=plain(ext["class_gaining_most"]), points=f"{ext['class_gain'] * 100:.1f}"))
    else:
        st.caption(t("curve.none_gains"))
    with st.expander(t("curve.per_class")):
        _table(result)
    st.caption(t("curve.cost", hits=result["cache_hits"], computed=result["computed"],
                 seconds=f"{result['seconds']['total']:.1f}"))


def _draw(job_dir: Path) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in LIVE:
        show_progress(job_dir, status, *phase_progress(read_events(job_dir)))
    elif key == "failed":
        st.error(t("curve.failed", error=job_error(status)))
    elif key == "stopped" and not status.get("result"):
        st.warning(t("job.stopped_waiting"))
    elif status.get("result"):
        _result(job_dir, status["result"])
    return key


def _start(ws: Workspace, config: LearningCurveConfig) -> None:
    job_dir = new_job_dir(ws.jobs_dir, "curve")
    data = ws.snapshot(job_dir / "data")
    start_job(job_dir, learning_curve_args(config, data), kind=KIND, meta={"parent": str(ws.data_dir)})
    st.rerun()


def show_learning_curve(ws: Workspace, config: LearningCurveConfig) -> None:
    """The panel: what a learning curve answers, a button that measures it with ``config`` (the backbone, split
    and seed the page trains with) on the session's photos, and the newest curve of these photos, followed while
    it runs."""
    st.subheader(t("curve.title"))
    st.write(t("curve.intro"))
    running = state.job_running()
    if st.button(t("curve.start"), icon=":material/show_chart:", disabled=running, key="curve_start"):
        with guard():  # a refused setting or a full session: one sentence
            _start(ws, config)
    jobs = state.jobs_of(ws.data_dir, KIND)
    if jobs:
        follow(jobs[0][0], _draw)
