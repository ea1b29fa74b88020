"""The accuracy under everyday corruptions (tlcore.adversarial.corruptions): a pure function of the result and
its labels."""
from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["corruptions_figure"]

# Severity 1 light to 3 dark: the stronger the corruption, the darker its bar.
_SEVERITY_COLOURS = {1: "#9ecae1", 2: "#4292c6", 3: "#08519c"}


def corruptions_figure(result: dict, labels: dict) -> go.Figure:
    """Accuracy per corruption, one bar per severity (grouped), and the clean accuracy as a dashed line across.

    ``labels``: ``accuracy`` (the axis), ``severity`` (a bar's name, with ``{n}``), ``clean`` (the line's name) and
    ``names`` (each corruption's words, in the order shown)."""
    names = labels["names"]
    by = {(r["corruption"], r["severity"]): r["accuracy"] for r in result["results"]}
    shown = [c for c in names if any((c, s) in by for s in (1, 2, 3))]
    fig = go.Figure()
    for severity in (1, 2, 3):
        values = [by.get((c, severity)) for c in shown]
        fig.add_trace(go.Bar(x=[names[c] for c in shown], y=values, name=labels["severity"].format(n=severity),
                             marker_color=_SEVERITY_COLOURS[severity],
                             # Inside the bar's top: above it, three groups' labels ran into each other and the line.
                             text=[f"{v:.0%}" if v is not None else "" for v in values], textposition="inside",
                             insidetextanchor="end", textangle=0, textfont={"size": 10},
                             hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    clean = result.get("clean_accuracy")
    if clean is not None:
        # A line as a trace (not a shape): it then has its name in the legend, like the bars.
        fig.add_trace(go.Scatter(x=[names[c] for c in shown], y=[clean] * len(shown), mode="lines",
                                 name=labels["clean"], line={"dash": "dash", "color": "#d62728", "shape": "hv"},
                                 hovertemplate=f"{labels['clean']}: {clean:.1%}<extra></extra>"))
    fig.update_layout(barmode="group", height=340, margin={"t": 10, "b": 40, "l": 50, "r": 10},
                      yaxis={"range": [0, 1.12], "tickformat": ".0%", "title": labels["accuracy"]},
                      legend={"orientation": "h", "y": -0.2})
    return fig
