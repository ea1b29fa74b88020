"""The embedding map (Data and Evaluate pages): the photos as the backbone sees them, classes in colours,
suspicious labels and mistakes ringed."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import streamlit as st

from tlcore.io.errors import TLError
from tlcore.lab.label_check import cached_features, feature_key, map_points
from tlcore.models.run_files import read_run_json

from ui.charts.figures import embedding_map_figure
from ui.frame.layout import t

__all__ = ["map_labels", "show_embedding_map", "run_map_points"]


def map_labels() -> dict:
    return {"class": t("chart.class"), "file": t("map.file"), "suspect": t("map.suspect"), "mistake": t("map.mistake")}


def show_embedding_map(points: Sequence[dict], key: str, suspects: Sequence[str] = (),
                       mistakes: Sequence[str] = ()) -> None:
    """The map's title, what it shows, and the figure; ``suspects`` and ``mistakes`` are photo paths to ring."""
    st.subheader(t("map.title"))
    st.caption(t("map.intro"))
    st.plotly_chart(embedding_map_figure(points, map_labels(), suspects, mistakes), key=key)


@st.cache_data(show_spinner=False, max_entries=8)
def _run_points(run_dir: str, paths: tuple, labels: tuple) -> list[dict] | None:
    config = read_run_json(run_dir, "config.json")
    try:
        key, _ = feature_key(config["backbone"], config.get("weights", "imagenet"), config.get("input_size"))
    except (TLError, KeyError):  # a weights file since removed, or a damaged config: no map, not an error
        return None
    found = cached_features(paths, key)
    if found is None:
        return None
    features, kept = found
    return map_points(features, [paths[i] for i in kept], [labels[i] for i in kept])


def run_map_points(run_dir: Path, rows: Sequence[dict]) -> list[dict] | None:
    """The map of a run's predicted photos (``rows`` of predictions.json) from the embeddings training cached, read
    without building the backbone; None when they are not all cached (random weights, another machine)."""
    if not rows:
        return None
    with st.spinner(t("map.drawing")):
        return _run_points(str(run_dir), tuple(r["path"] for r in rows), tuple(r["label"] for r in rows))
