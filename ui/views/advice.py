"""Training alarms in plain language: what each warning means and how to fix it."""
from __future__ import annotations

import streamlit as st

from tlcore.data.advice import tier_values

from ui.frame.i18n import catalog
from ui.frame.layout import plain, t

__all__ = ["alarm_text", "show_warnings"]


def alarm_text(warning: dict) -> str:
    """One warning as Markdown: its explanation and fix (by ``code``), then its own message with the numbers.

    A code without an explanation in the catalog (a new or foreign one) shows
    its message alone, so no warning is ever hidden.
    """
    code = str(warning.get("code", ""))
    message = str(warning.get("message", "")).strip()
    key = f"alarm.{code}"
    if key not in catalog():
        return plain(message or code)
    # The data tiers are the numbers an explanation or a fix may quote (few_images): one home, tlcore.data.advice.
    values = tier_values()
    text = f"**{t(key, **values)}**"
    if f"{key}.fix" in catalog():
        text += "  \n" + t("alarm.fix", fix=t(f"{key}.fix", **values))
    if message:
        # The message comes from tlcore in English; in another language it is only the detail with the numbers.
        text += "  \n" + t("alarm.details", message=plain(message))
    return text


def show_warnings(warnings: list[dict], container=None) -> None:
    """Draw each warning (``{code, message}`` dicts, as in a training summary) as one ``st.warning`` box.

    ``container`` (default: the page) is any Streamlit container, e.g. a column.
    Repeated warnings (same code and message) are drawn once.
    """
    target = container if container is not None else st
    seen = set()
    for warning in warnings or []:
        ident = (warning.get("code"), warning.get("message"))
        if ident in seen:
            continue
        seen.add(ident)
        target.warning(alarm_text(warning), icon=":material/warning:")
