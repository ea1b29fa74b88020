"""Plotly figure comparing several runs' curves (a pure function of plain data)."""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["compare_figure", "own_epochs"]

_COLOURS = plotly.colors.qualitative.Plotly


def _epoch(entry: dict, index: int) -> int:
    """An entry's epoch number (1 = first); its place in the history when it has none."""
    epoch = entry.get("epoch")
    return epoch if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else index + 1


def own_epochs(history: Sequence[dict], parent: Sequence[dict] | None) -> list[tuple[int, dict]]:
    """``(epoch, entry)`` of the epochs of ``history`` that are its own: after ``parent``'s last epoch when the run
    continues ``parent`` (a fine-tuning run's history starts with a copy of its parent's, numbered on from it),
    else all of them."""
    numbered = [(_epoch(h, i), h) for i, h in enumerate(history)]
    if not parent:
        return numbered
    last = max(_epoch(h, i) for i, h in enumerate(parent))
    return [(epoch, h) for epoch, h in numbered if epoch > last]


def compare_figure(curves: Mapping[str, Sequence[dict]], labels: dict,
                   parents: Mapping[str, str] | None = None) -> go.Figure:
    """Loss and accuracy per epoch of every run in ``curves`` (run label -> history), overlaid.

    One colour per run; training dashed, validation solid, so the eye compares the runs' validation
    curves first. ``labels`` names ``loss``, ``accuracy``, ``train``, ``val`` and ``epoch``.

    ``parents`` (run label -> the label of the run it continues) draws a continuation as one: when a fine-tuning
    run is shown with its parent, the epochs they share are drawn once, as the parent's (drawn twice, the second
    curve hid exactly under the first), and the run's own epochs follow the parent's last one, joined to it by a
    dotted line in the run's colour.
    """
    parents = parents or {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=(labels["loss"], labels["accuracy"]))
    for i, (run, history) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        parent_history = curves.get(parents.get(run)) if parents.get(run) != run else None
        own = own_epochs(history, parent_history)
        epochs = [epoch for epoch, _ in own]
        first = True
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, part, dash in (("val_", labels["val"], "solid"), ("", labels["train"], "dash")):
                values = [h.get(prefix + metric) for _, h in own]
                if not any(v is not None for v in values):
                    continue
                joined = _join(parent_history, own, prefix + metric)
                if joined:
                    fig.add_trace(go.Scatter(x=joined[0], y=joined[1], mode="lines", name=run, legendgroup=run,
                                             showlegend=False, hoverinfo="skip",
                                             line={"dash": "dot", "color": colour}), row=1, col=col)
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


def _join(parent: Sequence[dict] | None, own: list[tuple[int, dict]], key: str) -> tuple[list, list] | None:
    """The segment from the parent's last value of ``key`` to the run's first one, or None (no parent, or a value
    missing at either end)."""
    if not parent or not own:
        return None
    before = parent[-1].get(key)
    after = own[0][1].get(key)
    if before is None or after is None:
        return None
    return [_epoch(parent[-1], len(parent) - 1), own[0][0]], [before, after]
