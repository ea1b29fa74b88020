"""How to read a Grad-CAM heat map: its colour scale, from low to high, beside the overlays."""
from __future__ import annotations

import streamlit as st

from tlcore.analysis.display import colour_scale

from ui.frame.layout import t

__all__ = ["CAM_WIDTH", "show_colour_scale"]

CAM_WIDTH = 224  # pixels of a heat map in a gallery: the model's usual input, shown at its own size


def show_colour_scale(container=None) -> None:
    """The heat maps' colour scale, "low" to "high" in the session's language, in ``container`` (by default the
    left half of the page: a scale as wide as the page would outweigh the maps it explains)."""
    where = container if container is not None else st.columns([1, 1])[0]
    where.caption(t("cam.scale"))
    low, bar, high = where.columns([1, 5, 1], vertical_alignment="center")
    low.caption(t("cam.low"))
    bar.image(colour_scale(), width="stretch")
    high.caption(t("cam.high"))
