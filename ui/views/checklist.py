"""The sidebar's live checklists: before training and before deployment, one line per item."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import streamlit as st

from tlcore.lab.checklist import Item, deployment_checklist, gather_facts, training_checklist

from ui.frame import state
from ui.frame.i18n import catalog, translate

__all__ = ["show_checklists", "item_line"]

log = logging.getLogger("tlcore.ui")

# Icon and colour per status, as Streamlit Markdown.
_ICONS = {"ok": ":green[:material/check_circle:]", "todo": ":gray[:material/radio_button_unchecked:]",
          "warn": ":orange[:material/warning:]", "n/a": ":gray[:material/remove:]"}


def item_line(item: Item, lang: str = "en") -> tuple[str, str]:
    """(Markdown line: icon and the item's name, its explanation in ``lang``) of one checklist item."""
    detail = dict(item.detail)
    for name in ("drop", "limit"):  # fractions of accuracy, said in points
        if name in detail:
            detail[name] = float(detail[name]) * 100
    key = f"checklist.{item.key}.{item.reason}"
    # A diagnosis code newer than this catalog still gets its (English) message rather than a key.
    why = translate(key, lang, **detail) if key in catalog() else str(detail.get("message") or item.reason)
    return f"{_ICONS[item.status]} {translate('checklist.' + item.key, lang)}", why


def _section(title_key: str, items: list[Item], lang: str) -> tuple[str, list[tuple[str, str]]]:
    """The section's heading (with how many of the items that apply are ticked) and its lines."""
    applies = [item for item in items if item.status != "n/a"]
    done = sum(item.status == "ok" for item in applies)
    return f"**{translate(title_key, lang)}** · {done}/{len(applies)}", [item_line(item, lang) for item in items]


def show_checklists() -> None:
    """Draw both checklists for this session; on any error, log it and draw nothing.

    Runs on every page rerun: gathering reads image headers only when the
    photos changed and never loads TensorFlow (see :func:`tlcore.lab.checklist.gather_facts`).
    """
    try:  # everything is worded before anything is drawn, so an error never leaves half a list
        lang = state.language()
        facts = gather_facts(state.workspace(), import_backbones=False)
        # The Train page's choices for the next run, live while it is open (its widget keys).
        chosen = {k: st.session_state[k] for k in ("class_weights", "resample")
                  if isinstance(st.session_state.get(k), str)}
        facts = dataclasses.replace(facts, **chosen)
        run = translate("checklist.run", lang, name=Path(facts.run).parent.name) if facts.run else None
        sections = [(_section("checklist.training", training_checklist(facts), lang), None),
                    (_section("checklist.deployment", deployment_checklist(facts), lang), run)]
    except Exception:  # noqa: BLE001 - a checklist must never break the page it sits on
        log.exception("sidebar checklist failed")
        return
    st.divider()
    for (heading, lines), note in sections:
        st.markdown(heading, help=note)
        for line, why in lines:
            st.markdown(line, help=why)
