"""The embedding map (Data and Evaluate pages): the photos as the backbone sees them, classes in colours,
suspicious labels and mistakes ringed."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import streamlit as st

from tlcore.io.errors import TLError
from tlcore.jobs.folder import job_path
from tlcore.lab.workspace import Workspace
from tlcore.lab.label_check import cached_features, feature_key, map_points
from tlcore.models.run_files import read_run_json

from ui.charts.figures import embedding_map_figure, embedding_map_point
from ui.frame.layout import t

__all__ = ["map_labels", "show_embedding_map", "run_map_points", "data_map_points"]


class _NotCached(Exception):
    """Raised, not returned, by the cached functions: Streamlit caches a return value, and photos missing from the
    feature cache now may be there on the next run (a training run or a label check puts them there)."""


def map_labels() -> dict:
    return {"class": t("chart.class"), "file": t("map.file"), "suspect": t("map.suspect"), "mistake": t("map.mistake")}


def show_embedding_map(points: Sequence[dict], key: str, root: Path, suspects: Sequence[str] = (),
                       mistakes: Sequence[str] = ()) -> None:
    """The map's title, what it shows, and the figure; ``suspects`` and ``mistakes`` are photo paths to ring.
    A click on a dot shows its photo when the photo is a file inside ``root`` (the session's workspace: the
    points may come from a job's result file, which is checked like any other)."""
    st.subheader(t("map.title"))
    st.caption(t("map.intro"))
    event = st.plotly_chart(embedding_map_figure(points, map_labels(), suspects, mistakes), key=key,
                            on_select="rerun", selection_mode="points")
    clicked = (getattr(getattr(event, "selection", None), "points", None) or [{}])[0]
    chosen = embedding_map_point(points, clicked.get("curve_number"), clicked.get("point_index"))
    path = job_path(root, chosen["path"], "photo") if chosen else None
    if path is not None and path.is_file():
        st.image(str(path), width=240, caption=t("map.chosen", cls=chosen["label"], file=path.name))
    else:
        st.caption(t("map.click"))


@st.cache_data(show_spinner=False, max_entries=8)
def _run_points(run_dir: str, paths: tuple, labels: tuple) -> list[dict]:
    try:
        config = read_run_json(run_dir, "config.json")
        key, _ = feature_key(config["backbone"], config.get("weights", "imagenet"), config.get("input_size"))
    except (TLError, KeyError, AttributeError):  # a weights file since removed, a damaged config: no map, no error
        raise _NotCached from None
    found = cached_features(paths, key)
    if found is None:
        raise _NotCached
    features, kept = found
    return map_points(features, [paths[i] for i in kept], [labels[i] for i in kept])


def run_map_points(run_dir: Path, rows: Sequence[dict]) -> list[dict] | None:
    """The map of a run's predicted photos (``rows`` of predictions.json) from the embeddings training cached, read
    without building the backbone; None when they are not all cached (random weights, another machine)."""
    if not rows:
        return None
    with st.spinner(t("map.drawing")):
        try:
            return _run_points(str(run_dir), tuple(r["path"] for r in rows), tuple(r["label"] for r in rows))
        except _NotCached:
            return None



@st.cache_data(show_spinner=False, max_entries=8)
def _data_points(signature: tuple, backbone: str) -> list[dict]:
    try:
        key, _ = feature_key(backbone)
    except TLError:
        raise _NotCached from None
    paths = [row[0] for row in signature]
    found = cached_features(paths, key)
    if found is None:
        raise _NotCached
    features, kept = found
    return map_points(features, [paths[i] for i in kept], [signature[i][1] for i in kept])


def data_map_points(ws: Workspace, backbone: str) -> list[dict] | None:
    """The map of the session's photos from the embeddings of ``backbone`` (ImageNet weights) already cached on
    this machine, read without building it; None until every photo is cached (by a training run or a label
    check). Remembered for the same photo files (path, class, change time), so reruns neither read nor project
    them again."""
    signature = []
    for name in ws.classes():
        for path in ws.images(name):
            try:
                signature.append((str(path), name, path.stat().st_mtime_ns))
            except OSError:  # removed meanwhile
                continue
    if len({row[1] for row in signature}) < 2:
        return None
    with st.spinner(t("map.drawing")):
        try:
            return _data_points(tuple(signature), backbone)
        except _NotCached:
            return None
