"""Plotly figures for the dashboard (pure functions of plain data)."""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["curves_figure", "embedding_map_figure", "embedding_map_point", "confusion_figure", "probabilities_figure", "export_figure",
           "robustness_figure", "leaderboard_figure"]


def curves_figure(history: Sequence[dict], labels: dict) -> go.Figure:
    """Loss and accuracy per epoch, train and validation, with the fine-tuning start marked."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(labels["loss"], labels["accuracy"]))
    epochs = [h["epoch"] for h in history]
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, name, dash in (("", labels["train"], "solid"), ("val_", labels["val"], "dot")):
            values = [h.get(prefix + metric) for h in history]
            if any(v is not None for v in values):
                fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=f"{name}",
                                         legendgroup=name, showlegend=col == 1,
                                         line={"dash": dash, "color": "#1f77b4" if not prefix else "#ff7f0e"}),
                              row=1, col=col)
    boundary = next((h["epoch"] for h in history if h.get("phase") == "fine_tune"), None)
    if boundary is not None:
        for col in (1, 2):
            fig.add_vline(x=boundary - 0.5, line_dash="dash", line_color="grey", row=1, col=col)
        # Inside the accuracy panel, at its foot (above it sits the panel's title): accuracy is low only in the
        # first epochs, far from the boundary. The label goes on the side of the line with more epochs, so it
        # stays inside the panel.
        late = boundary - 0.5 > (epochs[0] + epochs[-1]) / 2
        fig.add_annotation(x=boundary - 0.5, y=0.03, xref="x2", yref="y2 domain", text=labels["fine_tune_start"],
                           showarrow=False, xanchor="right" if late else "left", yanchor="bottom",
                           xshift=-4 if late else 4, font={"color": "grey"}, bgcolor="rgba(255,255,255,0.8)")
    fig.update_xaxes(title_text=labels["epoch"], dtick=max(1, len(epochs) // 10 or 1))
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=340, margin={"t": 40, "b": 40, "l": 40, "r": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], labels: dict) -> go.Figure:
    """Heatmap, rows true and columns predicted; selectable cells (one marker per cell)."""
    n = len(classes)
    fig = go.Figure(go.Heatmap(z=confusion, x=list(classes), y=list(classes), colorscale="Blues",
                               text=confusion, texttemplate="%{text}", showscale=False, hoverinfo="skip"))
    # Invisible markers make every cell clickable for st.plotly_chart(on_select=...).
    fig.add_trace(go.Scatter(x=[c for _ in range(n) for c in classes], y=[r for r in classes for _ in range(n)],
                             mode="markers", marker={"size": 40, "opacity": 0}, showlegend=False,
                             hovertemplate=f"{labels['true']}: %{{y}}<br>{labels['predicted']}: %{{x}}<extra></extra>"))
    fig.update_layout(height=120 + 60 * n, margin={"t": 10, "b": 40, "l": 40, "r": 10},
                      xaxis_title=labels["predicted"], yaxis_title=labels["true"], yaxis_autorange="reversed")
    return fig


def probabilities_figure(classes: Sequence[str], probs: Sequence[float], labels: dict, k: int = 5) -> go.Figure:
    order = sorted(range(len(classes)), key=lambda i: -probs[i])[:k]
    fig = go.Figure(go.Bar(x=[probs[i] for i in order][::-1], y=[classes[i] for i in order][::-1], orientation="h",
                           text=[f"{probs[i]:.1%}" for i in order][::-1], textposition="auto"))
    fig.update_layout(height=80 + 40 * len(order), margin={"t": 10, "b": 30, "l": 10, "r": 10},
                      xaxis={"range": [0, 1], "title": labels["probability"]})
    return fig


def export_figure(names: Sequence[str], sizes_mb: Sequence[float | None], latencies_ms: Sequence[float | None],
                  labels: dict) -> go.Figure:
    """File size and latency per exported model, side by side (Keras last as the reference).

    A model without a size (Keras when only TFLite files were made: its latency is measured as the reference, but
    it has no file here) is left out of the size panel rather than drawn as an empty bar. Numbers are written as
    the verification table and the model card write them: sizes with two decimals, latencies with one.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=(labels["size"], labels["latency"]))
    colors = ["#7f7f7f" if n == "Keras" else "#1f77b4" for n in names]
    sized = [(n, s, c) for n, s, c in zip(names, sizes_mb, colors) if s is not None]
    fig.add_trace(go.Bar(x=[n for n, _, _ in sized], y=[s for _, s, _ in sized], marker_color=[c for _, _, c in sized],
                         showlegend=False, text=[f"{s:.2f}" for _, s, _ in sized], textposition="auto"), row=1, col=1)
    lat = [v if v is not None else 0.0 for v in latencies_ms]
    fig.add_trace(go.Bar(x=list(names), y=lat, marker_color=colors, showlegend=False,
                         text=[f"{v:.1f}" if v is not None else "–" for v in latencies_ms], textposition="auto"),
                  row=1, col=2)
    fig.update_yaxes(title_text="MB", row=1, col=1)
    fig.update_yaxes(title_text="ms", row=1, col=2)
    fig.update_layout(height=300, margin={"t": 40, "b": 40, "l": 40, "r": 10})
    return fig


def robustness_figure(curves: dict[str, dict], labels: dict) -> go.Figure:
    """Accuracy against epsilon, one line per method and curve (e.g. before/after hardening)."""
    fig = go.Figure()
    dashes = ["solid", "dot", "dash", "dashdot"]
    colors = {"fgsm": "#1f77b4", "pgd": "#d62728"}
    for i, (name, curve) in enumerate(curves.items()):
        for method in ("fgsm", "pgd"):
            if method in curve:
                fig.add_trace(go.Scatter(x=curve["epsilons"], y=curve[method], mode="lines+markers",
                                         name=f"{method.upper()} {name}".strip(),
                                         line={"dash": dashes[i % len(dashes)], "color": colors[method]}))
    fig.update_layout(height=320, margin={"t": 10, "b": 40, "l": 40, "r": 10},
                      xaxis_title=labels["epsilon"], yaxis_title=labels["accuracy"], yaxis={"range": [0, 1.02]},
                      legend={"orientation": "h", "y": -0.3})
    return fig


def leaderboard_figure(rows: Sequence[dict], chosen: str, labels: dict) -> go.Figure:
    """Accuracy on the user's photos against weights size (log scale) and against images/s, one marker per
    backbone (named), the chosen one larger and in red; backbones of unknown speed are left out of the second."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=(labels["size"], labels["speed"]))
    for col, key in ((1, "size_mb"), (2, "images_per_s")):
        for is_chosen in (False, True):
            points = [r for r in rows if r.get(key) is not None and (r["name"] == chosen) == is_chosen]
            if not points:
                continue
            fig.add_trace(go.Scatter(
                x=[r[key] for r in points], y=[r["accuracy"] for r in points], mode="markers+text",
                text=[r["name"] for r in points], textposition="top center",
                marker={"size": 18 if is_chosen else 11, "color": "#d62728" if is_chosen else "#1f77b4",
                        "line": {"width": 2 if is_chosen else 0, "color": "black"}},
                name=labels["chosen"] if is_chosen else labels["others"], legendgroup=str(is_chosen),
                showlegend=col == 1,
                customdata=[[r["size_mb"], r.get("images_per_s") or 0.0] for r in points],
                hovertemplate=(f"%{{text}}<br>{labels['accuracy']} %{{y:.1%}}<br>{labels['mb']} %{{customdata[0]}}"
                               f"<br>{labels['images_per_s']} %{{customdata[1]:.1f}}<extra></extra>"),
            ), row=1, col=col)
    fig.update_xaxes(title_text=labels["mb"], type="log", row=1, col=1)
    fig.update_xaxes(title_text=labels["images_per_s"], row=1, col=2)
    # Headroom above 100% so the name over a perfect score is not cut by the panel title.
    fig.update_yaxes(range=[0, 1.18], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], tickformat=".0%")
    fig.update_yaxes(title_text=labels["accuracy"], row=1, col=1)
    fig.update_layout(height=380, margin={"t": 40, "b": 40, "l": 50, "r": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def embedding_map_point(points: Sequence[dict], curve: int, index: int) -> dict | None:
    """The photo of ``points`` behind a click on :func:`embedding_map_figure`: trace ``curve`` (one per class,
    in name order; the rings after them are not photos), its ``index``-th dot; None for anything else."""
    names = sorted({p["label"] for p in points})
    if not (isinstance(curve, int) and isinstance(index, int) and 0 <= curve < len(names) and index >= 0):
        return None
    mine = [p for p in points if p["label"] == names[curve]]
    return mine[index] if index < len(mine) else None


def embedding_map_figure(points: Sequence[dict], labels: dict, suspects: Sequence[str] = (),
                         mistakes: Sequence[str] = ()) -> go.Figure:
    """The embedding map: one dot per photo (``{"path", "label", "x", "y"}``), one colour per class, the class and
    file name on hover; photos in ``suspects`` (a suspicious label) and ``mistakes`` (a wrong prediction) ringed.

    ``labels`` holds ``class``, ``file``, ``suspect`` and ``mistake``: the legend's and the hover's words.
    """
    fig = go.Figure()
    for name in sorted({p["label"] for p in points}):
        mine = [p for p in points if p["label"] == name]
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in mine], y=[p["y"] for p in mine], mode="markers", name=name,
            marker={"size": 8, "opacity": 0.8},
            customdata=[[p["label"], p["path"].replace("\\", "/").rsplit("/", 1)[-1]] for p in mine],
            hovertemplate=f"{labels['class']}: %{{customdata[0]}}<br>{labels['file']}: %{{customdata[1]}}<extra></extra>"))
    # Rings over the dots, so a marked photo keeps its class's colour.
    for marked, key, colour, symbol in ((set(suspects), "suspect", "#d62728", "circle-open"),
                                        (set(mistakes), "mistake", "#111111", "x-thin-open")):
        ringed = [p for p in points if p["path"] in marked]
        if ringed:
            fig.add_trace(go.Scatter(
                x=[p["x"] for p in ringed], y=[p["y"] for p in ringed], mode="markers", name=labels[key],
                marker={"size": 16, "symbol": symbol, "color": colour, "line": {"width": 2, "color": colour}},
                hoverinfo="skip"))
    # The axes of a projection have no units: only the distances mean something.
    fig.update_xaxes(showticklabels=False, title=None, zeroline=False)
    fig.update_yaxes(showticklabels=False, title=None, zeroline=False, scaleanchor="x")
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h"})
    return fig
