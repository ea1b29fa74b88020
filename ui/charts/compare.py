"""Plotly figure comparing several runs' curves (a pure function of plain data)."""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["compare_figure"]

_COLOURS = plotly.colors.qualitative.Plotly


def compare_figure(curves: Mapping[str, Sequence[dict]], labels: dict) -> go.Figure:
    """Loss and accuracy per epoch of every run in ``curves`` (run label -> history), overlaid.

    One colour per run; training dashed, validation solid, so the eye compares the runs' validation
    curves first. ``labels`` names ``loss``, ``accuracy``, ``train``, ``val`` and ``epoch``.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=(labels["loss"], labels["accuracy"]))
    for i, (run, history) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        epochs = [h.get("epoch") for h in history]
        first = True
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, part, dash in (("val_", labels["val"], "solid"), ("", labels["train"], "dash")):
                values = [h.get(prefix + metric) for h in history]
                if not any(v is not None for v in values):
                    continue
                fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=f"{run} · {part}",
                                         legendgroup=run, showlegend=col == 1,
                                         line={"dash": dash, "color": colour}, marker={"size": 5}),
                              row=1, col=col)
                first = False
        if first:  # a run without epochs still gets a legend entry, so its absence is visible
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=run, legendgroup=run,
                                     line={"color": colour}), row=1, col=1)
    fig.update_xaxes(title_text=labels["epoch"])
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=380, margin={"t": 40, "b": 40, "l": 40, "r": 10}, legend={"orientation": "h", "y": -0.25})
    return fig
