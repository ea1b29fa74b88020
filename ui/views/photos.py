"""A class's photos on the Data page, a page of thumbnails at a time, each with its Remove button under it."""
from __future__ import annotations

import math

import streamlit as st

from tlcore.lab.workspace import Workspace

from ui.frame.layout import t

__all__ = ["PER_PAGE", "COLUMNS", "page_count", "show_class_photos"]

PER_PAGE = 24  # four rows of six: quick to draw, and every photo is still a page or a few away
COLUMNS = 6


def page_count(n_photos: int, per_page: int = PER_PAGE) -> int:
    """How many pages ``n_photos`` take (at least one, for an empty class)."""
    return max(1, math.ceil(n_photos / per_page))


def _page_key(name: str) -> str:
    return f"photos_page_{name}"


def show_class_photos(ws: Workspace, name: str) -> None:
    """The photos of class ``name``: a page number when they take more than one page, then the page's thumbnails
    in rows, each with a Remove button as wide as it (removing reruns the page, on the same page)."""
    images = ws.images(name)
    pages = page_count(len(images))
    key = _page_key(name)
    # Photos removed since the page was chosen: stay on the last page there still is (set before the widget exists).
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
    page = 1
    if pages > 1:
        number, where = st.columns([1, 4], vertical_alignment="bottom")
        page = int(number.number_input(t("data.page"), min_value=1, max_value=pages, step=1, key=key))
        first = (page - 1) * PER_PAGE
        where.caption(t("data.page_of", pages=pages, first=first + 1, last=min(first + PER_PAGE, len(images)),
                        n=len(images)))
    shown = images[(page - 1) * PER_PAGE:page * PER_PAGE]
    # One row of columns per row of photos, aligned at the bottom: the buttons line up even when the photos'
    # shapes differ (columns filled top to bottom would drift apart).
    for start in range(0, len(shown), COLUMNS):
        for column, path in zip(st.columns(COLUMNS, vertical_alignment="bottom"), shown[start:start + COLUMNS]):
            with column:
                st.image(str(path), width="stretch")
                if st.button(t("data.remove_image"), key=f"rm_{name}_{path.name}", width="stretch"):
                    ws.remove_image(name, path.name)
                    st.rerun()
