"""Training alarms in plain language: what each warning means and how to fix it."""
from __future__ import annotations

import streamlit as st

from tlcore.data.advice import tier_values
from tlcore.training.alarms import reused_test_set_alarms

from ui.frame.i18n import catalog
from ui.frame.layout import plain, t

__all__ = ["alarm_text", "show_warnings", "show_test_set_looks"]


def _details(key: str, warning: dict) -> str:
    """The alarm's numbers in the session's language (``<key>.details`` filled with its ``values``), or "" when
    the catalog says it all; tlcore's English message when the numbers cannot be said otherwise."""
    message = str(warning.get("message", "")).strip()
    values = warning.get("values")
    if f"{key}.details" in catalog() and isinstance(values, dict):
        try:
            # Names in the values (a class, a backbone) are data: escaped, unlike the catalog's sentence.
            return t(f"{key}.details", **{k: plain(v) if isinstance(v, str) else v for k, v in values.items()})
        except (KeyError, ValueError, IndexError, TypeError):
            pass  # values of another version of tlcore: its own message still has the numbers
    elif f"{key}.details" not in catalog():
        # The explanation and the fix say everything this alarm knows; its English message would repeat them.
        return ""
    return plain(message)


def alarm_text(warning: dict) -> str:
    """One warning as Markdown: its explanation and fix (by ``code``), then the numbers it was raised for.

    The explanation (``alarm.<code>``) says what is wrong, the fix (``alarm.<code>.fix``) what to do, and
    the details (``alarm.<code>.details``, filled with the alarm's ``values``) only the numbers, so no line
    repeats another and all are in the session's language. tlcore's English message (the command line's,
    which also says what to do) is shown instead of the details only for an alarm without ``values`` (a run
    of an earlier version). A code without an explanation in the catalog (a new or foreign one) shows its
    message alone, so no warning is ever hidden.
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
    details = _details(key, warning)
    if details:
        text += "  \n" + t("alarm.details", message=details)
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


def show_test_set_looks(times: int, container=None) -> None:
    """After a look at a run's test split: how many runs have been scored on this test set
    (:func:`tlcore.training.ledger.score_run_test_set`), a note for the first, the ``test_set_reuse`` warning
    from the second; nothing for 0 (no test split)."""
    target = container if container is not None else st
    if times >= 2:
        show_warnings(reused_test_set_alarms(times), target)
    elif times == 1:
        target.info(t("eval.first_look"), icon=":material/visibility:")
