"""Calibration on the dashboard: the reliability diagram and ECE (Evaluate), the "unknown" threshold (Predict)."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from tlcore.analysis.calibration import apply_threshold, suggest_run_threshold
from tlcore.io.errors import TLError

from ui.frame.layout import t

__all__ = ["reliability_figure", "show_reliability", "choose_threshold", "show_answer"]

_FALLBACK_THRESHOLD = 0.5
# Below this gap between mean confidence and accuracy, "over-" or "under-confident" would overstate it.
_WELL_CALIBRATED = 0.02


def reliability_figure(calibration: dict, labels: dict) -> go.Figure:
    """Accuracy per confidence bin (bars, count in the hover) against the diagonal of perfect calibration."""
    bins = [b for b in calibration["bins"] if b["count"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=labels["perfect"],
                             line={"dash": "dash", "color": "grey"}, hoverinfo="skip"))
    fig.add_trace(go.Bar(
        x=[(b["lower"] + b["upper"]) / 2 for b in bins], y=[b["accuracy"] for b in bins],
        width=[0.95 * (b["upper"] - b["lower"]) for b in bins], name=labels["accuracy"], marker_color="#1f77b4",
        customdata=[[b["lower"], b["upper"], b["confidence"], b["count"]] for b in bins],
        hovertemplate=(f"{labels['range']} %{{customdata[0]:.0%}}–%{{customdata[1]:.0%}}<br>"
                       f"{labels['confidence']} %{{customdata[2]:.1%}}<br>{labels['accuracy']} %{{y:.1%}}<br>"
                       f"{labels['count']} %{{customdata[3]}}<extra></extra>")))
    fig.update_layout(height=340, margin={"t": 10, "b": 40, "l": 50, "r": 10}, legend={"orientation": "h", "y": -0.25},
                      xaxis={"range": [0, 1], "title": labels["confidence"], "tickformat": ".0%"},
                      yaxis={"range": [0, 1.02], "title": labels["accuracy"], "tickformat": ".0%"})
    return fig


def _direction(calibration: dict) -> str:
    gap = calibration["mean_confidence"] - calibration["accuracy"]
    if abs(gap) < _WELL_CALIBRATED:
        return "calib.well"
    return "calib.over" if gap > 0 else "calib.under"


def show_reliability(calibration: dict, key: str) -> None:
    """The calibration section of the Evaluate page for one split's ``metrics["calibration"]``."""
    st.subheader(t("calib.title"))
    if not calibration["n"]:
        return
    left, right = st.columns([1, 2])
    left.metric(t("calib.ece"), f"{calibration['ece']:.3f}", help=t("calib.ece_help"))
    left.markdown(t(_direction(calibration), ece=calibration["ece"], conf=calibration["mean_confidence"],
                    acc=calibration["accuracy"]))
    labels = {k: t(f"calib.chart.{k}") for k in ("perfect", "accuracy", "confidence", "range", "count")}
    right.plotly_chart(reliability_figure(calibration, labels), key=key)


def choose_threshold(run_dir: Path | None, key: str) -> float:
    """A slider for the confidence below which Predict answers "unknown".

    It starts at the threshold suggested on ``run_dir``'s validation
    predictions (never its test ones), or at 0.5 without a run or a suggestion,
    with a caption saying which.
    """
    suggestion = None
    if run_dir is not None:
        try:
            suggestion = suggest_run_threshold(run_dir)
        except TLError:  # a run from an older version without predictions.json: predicting still works
            suggestion = None
    default = _FALLBACK_THRESHOLD
    # A suggestion of 0 (validation needed no threshold) would never answer "unknown", not even for a
    # photo unlike every class, which validation photos cannot show: keep the fallback then.
    if suggestion and suggestion["threshold"]:
        default = suggestion["threshold"]
    threshold = st.slider(t("calib.threshold"), 0.0, 1.0, float(default), step=0.01, key=key,
                          help=t("calib.threshold_help"))
    if suggestion is None or not suggestion["n"]:
        st.caption(t("calib.no_run", default=_FALLBACK_THRESHOLD))
    elif suggestion["threshold"] is None:
        st.caption(t("calib.no_suggestion", n=suggestion["n"], target=suggestion["target_precision"],
                     default=_FALLBACK_THRESHOLD))
    elif suggestion["threshold"] == 0:
        st.caption(t("calib.not_needed", n=suggestion["n"], precision=suggestion["precision"],
                     default=_FALLBACK_THRESHOLD))
    else:
        st.caption(t("calib.suggested", threshold=suggestion["threshold"], n=suggestion["n"],
                     precision=suggestion["precision"], unknown=suggestion["unknown_share"]))
    return threshold


def show_answer(where, probs, classes: list[str], threshold: float) -> None:
    """The prediction for one photo in ``where`` (a column): the top class, or "unknown" with the reason."""
    best = int(probs.argmax())
    label = apply_threshold(probs, classes, threshold)
    if label is None:
        where.markdown(t("calib.unknown"))
        where.caption(t("calib.unknown_why", label=classes[best], conf=float(probs[best]), threshold=threshold))
    else:
        where.markdown(t("predict.result", label=label, conf=float(probs[best])))
