"""The Data page's dataset health report: counts against the data tiers, leaks, copies, balance, bias."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from tlcore.data.advice import tier_values
from tlcore.data.health import EXTREME_ASPECT, TINY_SIDE, check_dataset
from tlcore.lab.workspace import Workspace

from ui.frame.layout import plain, t

__all__ = ["dataset_report", "show_report", "health_counts_figure"]

_SHOWN = 10  # leaks and copy groups drawn with their photos; the rest are counted
_NAMES = 5  # file names quoted in one sentence
_THUMB = 96  # pixels: enough to see that two photos are the same
_SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
_TIER_COLOURS = {"start": "#d62728", "good": "#bcbd22", "great": "#17becf"}  # tlcore.data.advice.TIERS


def _signature(ws: Workspace) -> tuple:
    """(path, class, size, modification time) of every photo: any added, removed or replaced photo changes it."""
    rows = []
    for name in ws.classes():
        for path in ws.images(name):
            try:
                info = os.stat(path)
            except OSError:  # removed meanwhile
                continue
            rows.append((str(path), name, info.st_size, info.st_mtime_ns))
    return tuple(rows)


@st.cache_data(show_spinner=False, max_entries=32)
def _cached_report(signature: tuple, fractions: tuple, seed: int) -> dict:
    # A list of (file, class) pairs: classes still without photos are left out rather than refused.
    return check_dataset([(path, name) for path, name, _, _ in signature], split=fractions, seed=seed)


def dataset_report(ws: Workspace, split: tuple[int, int, int, int]) -> dict | None:
    """The health report of the session's photos split as training will split them, or None before two classes have photos.

    ``split`` is ``(train %, val %, test %, seed)`` (:func:`ui.frame.state.split`). The
    report is cached on the photos' names, sizes and times and on the split,
    so reruns of the page do not read every photo again.
    """
    signature = _signature(ws)
    if len({name for _, name, _, _ in signature}) < 2:
        return None
    train, val, test, seed = split
    with st.spinner(t("health.reading")):
        return _cached_report(signature, (train / 100, val / 100, test / 100), int(seed))


def health_counts_figure(counts: dict, tiers: dict, labels: dict) -> go.Figure:
    """Photos per class stacked by split, with the data tiers as dashed lines.

    ``tiers`` maps tier names to photos per class, lowest first (``TIERS``); ``labels`` holds the axis and
    split names and one per tier. Tiers are drawn up to the first one above the largest class: the next
    goal shows, while a far one does not squash the bars.
    """
    classes = list(counts)
    fig = go.Figure()
    for split, colour in _SPLIT_COLOURS.items():
        values = [counts[c][split] for c in classes]
        if any(values):
            fig.add_trace(go.Bar(x=classes, y=values, name=labels[split], marker_color=colour,
                                 text=values, textposition="inside"))
    largest = max(row["total"] for row in counts.values())
    shown = []
    for name, least in tiers.items():
        shown.append((name, least))
        if least > largest:
            break
    for name, least in shown:
        fig.add_hline(y=least, line_dash="dash", line_color=_TIER_COLOURS[name],
                      annotation_text=f"{labels[name]} ({least:,})", annotation_position="top left")
    top = max(largest, shown[-1][1])
    fig.update_layout(barmode="stack", height=300, margin={"t": 10, "b": 40, "l": 40, "r": 10},
                      xaxis_title=labels["class"], yaxis_title=labels["count"], yaxis={"range": [0, top * 1.12]},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _name(item: dict) -> str:
    return f"{item['label']}/{Path(item['path']).name}"


def _names(items: list[dict]) -> str:
    names = [plain(_name(i)) for i in items]  # a class and a file name: the user's, not Markdown
    return ", ".join(names[:_NAMES]) + (" …" if len(names) > _NAMES else "")


def _remove(ws: Workspace, items: list[dict]) -> None:
    for item in items:
        ws.remove_image(item["label"], Path(item["path"]).name)


def _split_name(split: str) -> str:
    return t(f"health.split_{split}")


def _show_leaks(leaks: list[dict], ws: Workspace) -> None:
    for i, leak in enumerate(leaks[:_SHOWN]):
        a, b = leak["a"], leak["b"]
        text, left, right, action = st.columns([6, 1, 1, 2], vertical_alignment="center")
        text.error(t("health.leak", a=plain(_name(a)), asplit=_split_name(a["split"]), b=plain(_name(b)),
                     bsplit=_split_name(b["split"]), kind=t(f"health.kind_{leak['kind']}")))
        left.image(a["path"], width=_THUMB)
        right.image(b["path"], width=_THUMB)
        # The copy outside train goes: the model keeps what it learns from, the score stops being inflated.
        if action.button(t("health.remove_copy"), key=f"health_leak_{i}_{_name(b)}", icon=":material/delete:"):
            _remove(ws, [b])
            st.rerun()
    if len(leaks) > _SHOWN:
        st.error(t("health.leak_more", n=len(leaks) - _SHOWN))


def _show_duplicates(groups: list[dict], ws: Workspace) -> None:
    within = [g for g in groups if max(Counter(m["split"] for m in g).values()) > 1]
    if not within:
        return
    st.warning(t("health.duplicates", n=len(within)))
    for i, group in enumerate(within[:_SHOWN]):
        cols = st.columns([1] * min(len(group), 4) + [2], vertical_alignment="center")
        for col, member in zip(cols, group[:4]):
            col.image(member["path"], caption=_name(member), width=_THUMB)
        keep, rest = group[0], group[1:]  # the first is in the earliest split: train when any is
        if cols[-1].button(t("health.keep_one", keep=plain(_name(keep)), n=len(rest)), key=f"health_dup_{i}_{_name(keep)}"):
            _remove(ws, rest)
            st.rerun()


def _show_bias(bias: dict) -> None:
    (a, b), (va, vb) = bias["classes"], bias["values"]
    if bias["feature"] == "camera":
        va, vb = va or t("health.no_camera"), vb or t("health.no_camera")
    shares = bias["shares"] or (None, None)
    st.warning(t(f"health.bias_{bias['feature']}", a=plain(a), b=plain(b), va=va, vb=vb, pa=shares[0], pb=shares[1]))


def show_report(report: dict, ws: Workspace) -> None:
    """Draw a :func:`tlcore.data.health.check_dataset` report of ``ws``'s photos; leaks first, each with a remove button."""
    rec, counts = report["recommended"], report["counts"]
    codes = {w["code"] for w in report["warnings"]}
    _show_leaks(report["leaks"], ws)

    labels = {"class": t("chart.class"), "count": t("chart.count"),
              **{split: _split_name(split) for split in _SPLIT_COLOURS},
              **{name: t(f"tier.{name}") for name in rec["tiers"]}}
    st.plotly_chart(health_counts_figure(counts, rec["tiers"], labels))
    values = tier_values()
    low = sorted((row["total"], name) for name, row in counts.items() if row["total"] < rec["tiers"]["start"])
    if low:
        st.warning(t("health.too_few", n=len(low), start=rec["tiers"]["start"],
                     classes=", ".join(f"{plain(name)} {n:,}" for n, name in low[:_NAMES]) + (" …" if len(low) > _NAMES else "")))
    elif rec["tier"]:
        more = (" " + t("health.tier_next", next=t(f"tier.{rec['next']}"), least=rec["tiers"][rec["next"]])
                if rec["next"] else "")
        st.info(t("health.tier", name=plain(rec["class"]), n=rec["photos"], tier=t(f"tier.{rec['tier']}")) + more,
                icon=":material/photo_library:")
    st.caption(t("health.tiers", **values))

    _show_duplicates(report["duplicates"], ws)
    if "imbalance" in codes:
        totals = {name: row["total"] for name, row in counts.items()}
        big, small = max(totals, key=totals.get), min(totals, key=totals.get)
        st.warning(t("health.imbalance", big=plain(big), nbig=totals[big], small=plain(small), nsmall=totals[small],
                     ratio=report["imbalance_ratio"],
                     weights=", ".join(f"{plain(name)} {w:g}" for name, w in report["class_weights"].items())))
    for bias in report["capture_bias"]:
        _show_bias(bias)
    if report["tiny"]:
        st.warning(t("health.tiny", n=len(report["tiny"]), side=TINY_SIDE, files=_names(report["tiny"])))
    if report["extreme_aspect"]:
        st.warning(t("health.extreme", n=len(report["extreme_aspect"]), ratio=f"{EXTREME_ASPECT:g}",
                     files=_names(report["extreme_aspect"])))
    if report["skipped"]:
        st.warning(t("health.skipped", n=len(report["skipped"])))
        st.dataframe([{"file": s["path"], "reason": s["reason"]} for s in report["skipped"]], hide_index=True)
    if not (report["leaks"] or report["duplicates"] or report["capture_bias"]) and "imbalance" not in codes:
        st.success(t("health.all_good"))
