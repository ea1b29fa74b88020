"""Draw the Backbone page's leaderboard job: progress while it runs, then accuracy against size and speed."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from tlcore.jobs.events import PHASE
from tlcore.jobs.runner import LIVE, job_status, read_events

from ui.frame import state
from ui.charts.figures import leaderboard_figure
from ui.views.follow import follow, phase_progress, show_progress
from ui.frame.layout import job_error, plain, t

__all__ = ["show_leaderboard", "speed_options"]


def _labels() -> dict:
    return {"size": t("backbone.chart.size"), "speed": t("backbone.chart.speed"), "accuracy": t("chart.accuracy"),
            "mb": t("backbone.chart.mb"), "images_per_s": t("backbone.chart.images_per_s"),
            "chosen": t("backbone.chart.chosen"), "others": t("backbone.chart.others")}


def speed_options() -> dict:
    """``st.dataframe`` options for a table with the images/s column: one decimal, and a backbone never measured
    reads "not measured yet" (Streamlit would write "None")."""
    return {"placeholder": t("backbone.not_measured"),
            "column_config": {t("backbone.col.speed"): st.column_config.NumberColumn(format="%.1f")}}


def _chart(rows: list[dict], chosen: str, key: str) -> None:
    st.plotly_chart(leaderboard_figure(rows, chosen, _labels()), key=key)


def _table(rows: list[dict], chosen: str) -> None:
    st.dataframe([{
        t("backbone.col.rank"): rank,
        t("backbone.col.name"): r["name"],
        t("backbone.col.accuracy"): f"{r['accuracy']:.1%}",
        t("backbone.col.size"): r["size_mb"],
        t("backbone.col.params"): round(r["params"] / 1e6, 1),
        t("backbone.col.speed"): r["images_per_s"],
        t("backbone.col.chosen"): "✓" if r["name"] == chosen else "",
    } for rank, r in enumerate(rows, start=1)], hide_index=True, **speed_options())


def _use(name: str) -> None:
    # A callback runs before the page: forgetting the selectbox's state makes it start again from the new choice.
    state.set_backbone(name)
    st.session_state.pop("backbone_select", None)


def _result(job_dir: Path, result: dict, chosen: str) -> None:
    rows = result.get("rows", [])
    if result.get("stopped"):
        st.warning(t("backbone.lb_stopped"))
    if rows:
        st.caption(t("backbone.lb_caption", n_val=result["n_val"], n_train=result["n_train"],
                     where=t(f"backbone.lb_where.{result.get('held_out', 'split')}")))
        _chart(rows, chosen, f"leaderboard_{job_dir.name}")
        _table(rows, chosen)
        unknown = [r["name"] for r in rows if r.get("images_per_s") is None]
        if unknown:
            st.caption(t("backbone.lb_no_speed", names=", ".join(unknown)))
        best = rows[0]["name"]
        st.success(t("backbone.lb_best", name=best))
        if best != chosen:
            st.button(t("backbone.lb_use", name=best), on_click=_use, args=(best,), key=f"use_{job_dir.name}")
    elif not result.get("stopped"):
        st.warning(t("backbone.lb_none"))
    skipped = result.get("skipped", [])
    if skipped:
        with st.expander(t("backbone.lb_skipped", n=len(skipped))):
            for s in skipped:
                st.caption(f"**{s['name']}**: {plain(s['reason'])}")


def _draw(job_dir: Path, chosen: str) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in LIVE:
        everything = read_events(job_dir)
        events = [e for e in everything if e.get("type") == "leaderboard"]
        last = events[-1] if events else {}
        newest = next((e for e in reversed(everything) if e.get("type") in ("leaderboard", PHASE)), {})
        if last:
            share = last.get("done", 0) / max(last.get("total", 1), 1) if last["stage"] == "embed" else 1.0
            fraction = (last["index"] + share) / max(last["count"], 1)
            where = {"name": last["backbone"], "i": last["index"] + 1, "n": last["count"]}
            if newest.get("type") == PHASE:  # building this backbone, or scoring it
                text = t("backbone.lb_phase", **where, phase=phase_progress(everything)[1])
            elif last["stage"] == "embed":
                text = t("backbone.lb_embedding", **where, done=last.get("done", 0), total=last.get("total", 0))
            else:
                text = last["backbone"]
        else:  # starting, loading TensorFlow
            fraction, text = phase_progress(everything)
        show_progress(job_dir, status, fraction, text)
        scored = [e["row"] for e in events if e["stage"] == "scored"]
        if scored:  # the backbones scored so far, best first
            _chart(sorted(scored, key=lambda r: -r["accuracy"]), chosen, f"leaderboard_{job_dir.name}_{len(scored)}")
    elif key == "failed":
        st.error(t("backbone.lb_failed", error=job_error(status)))
    elif key == "stopped" and not status.get("result"):
        st.warning(t("job.stopped_waiting"))
    elif status.get("result"):
        _result(job_dir, status["result"], chosen)
    return key


def show_leaderboard(job_dir: Path, chosen: str) -> None:
    """A leaderboard job, followed while it runs; ``chosen`` (the session's backbone) is highlighted."""
    follow(job_dir, partial(_draw, chosen=chosen))
