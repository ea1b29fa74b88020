"""The learning curve's figure: measured points with their spread, the fitted curve, dashed where it extrapolates."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from tlcore.analysis.learning_curve import CurveFit

__all__ = ["learning_curve_figure"]

_OVERALL = "#1f77b4"


def _fitted(fit: dict) -> CurveFit:
    return CurveFit(fit["method"], float(fit["a"]), float(fit["b"]), float(fit["c"]), float(fit.get("rmse", 0.0)))


def learning_curve_figure(result: dict, labels: dict) -> go.Figure:
    """Validation accuracy against photos per class (log axis): the mean of each share's heads with their standard
    deviation as an error bar, the fitted curve solid over the measured range and dashed out to the extrapolation,
    and the extrapolated point. ``result`` is :func:`tlcore.training.learning_curve.learning_curve`'s; ``labels``
    holds ``photos``, ``accuracy``, ``measured``, ``fit``, ``extrapolated``."""
    points = result["points"]
    x = [p["photos_per_class"] for p in points]
    fig = go.Figure(go.Scatter(
        x=x, y=[p["val_accuracy"] for p in points], mode="markers", name=labels["measured"],
        marker={"size": 9, "color": _OVERALL},
        error_y={"type": "data", "array": [p["std"] for p in points], "visible": True},
        hovertemplate=f"{labels['photos']}: %{{x:g}}<br>{labels['accuracy']}: %{{y:.1%}}<extra></extra>"))
    ext = result["extrapolation"]
    fit = _fitted(result["fit"])
    low, high, far = min(x), max(x), ext["more_photos_per_class"]
    inside = np.geomspace(low, high, 40)
    fig.add_trace(go.Scatter(x=inside, y=fit.predict(inside), mode="lines", name=labels["fit"],
                             line={"color": _OVERALL}, hoverinfo="skip"))
    if far > high:
        beyond = np.geomspace(high, far, 20)
        fig.add_trace(go.Scatter(x=beyond, y=fit.predict(beyond), mode="lines", showlegend=False,
                                 line={"color": _OVERALL, "dash": "dash"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=[far], y=[ext["expected_accuracy"]], mode="markers", name=labels["extrapolated"],
        marker={"size": 11, "symbol": "star", "color": "#ff7f0e"},
        hovertemplate=f"{labels['photos']}: %{{x:g}}<br>{labels['accuracy']}: %{{y:.1%}}<extra></extra>"))
    lows = [p["val_accuracy"] - p["std"] for p in points]
    bottom = max(0.0, min(lows + [ext["expected_accuracy"]]) - 0.05)
    # Ticks at the measured counts and the extrapolation only: a log axis's own minor ticks ("2, 3, ... 9") read
    # as photo counts they are not.
    ticks = sorted({*x, far})
    fig.update_xaxes(type="log", title_text=labels["photos"], tickvals=ticks, ticktext=[f"{v:.0f}" for v in ticks],
                     minor={"showgrid": False}, showgrid=False)
    fig.update_yaxes(range=[bottom, 1.02], tickformat=".0%", title_text=labels["accuracy"])
    fig.update_layout(height=340, margin={"t": 20, "b": 40, "l": 50, "r": 10},
                      legend={"orientation": "h", "y": -0.3})
    return fig
