"""The page frame: access gate, page config, the sidebar (language, session note, sign-out, checklists) and the title."""
from __future__ import annotations

import streamlit as st

from ui.frame import access, state
from ui.frame.chrome import WIDGET_TEXTS, widget_texts_css
from ui.frame.i18n import LANGUAGES, translate
from ui.frame.layout import attach_log_file, t
from ui.views.checklist import show_checklists

__all__ = ["setup"]


def _leave_legacy_pages_mode() -> None:
    """Route through ``app.py`` even when a server's first visitor opens a page's address directly.

    Streamlit decides at its first script run whether the ``pages/`` folder
    is a legacy multipage app; if that run is a page rather than ``app.py``,
    every session gets file-name navigation without the home page until
    someone opens the home page. Clearing the flag and rerunning sends this
    run through ``app.py``'s ``st.navigation`` (same page, translated titles).
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a future Streamlit without the legacy mode
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


# A bare page (the demo) shows its content alone: no sidebar, no header, little margin.
_BARE_CSS = ("<style>[data-testid=stSidebar], [data-testid=stSidebarCollapsedControl], [data-testid=stHeader] "
             "{display: none;} .block-container {padding-top: 1rem;}</style>")


def setup(title_key: str, bare: bool = False) -> None:
    """Page config, sidebar (language, session note, checklists) and the page title; ``bare``: the access gate and
    the page config alone, the sidebar and header hidden (a page to present full screen)."""
    _leave_legacy_pages_mode()
    attach_log_file()
    st.set_page_config(page_title=f"Transfer Lab · {translate(title_key)}", page_icon="🔬", layout="wide",
                       initial_sidebar_state="collapsed" if bare else "auto")
    state.session_id()  # the access gate: until this browser session is admitted, the page stops here
    style = widget_texts_css(state.language(), {key: t(f"widget.{key}") for key in WIDGET_TEXTS})
    if style:
        st.html(style)
    if bare:
        st.html(_BARE_CSS)
        return
    with st.sidebar:
        current = state.language()
        codes = list(LANGUAGES)
        # A saved language whose file is gone reads as English (translate's fallback) and the menu says so.
        choice = st.selectbox(translate("sidebar.language", current), codes, format_func=LANGUAGES.get,
                              index=codes.index(current) if current in LANGUAGES else 0, key="language_select")
        if choice != current:
            state.set_language(choice)
            st.rerun()
        st.caption(t("sidebar.session"))
        access.sign_out_button(current)
        show_checklists()
    st.title(t(title_key))
