"""The diagnosis panel beside a finished run's curves: verdict, evidence, what to try."""
from __future__ import annotations

import streamlit as st

from tlcore.analysis.diagnosis import REMEDIES, Thresholds

from ui.frame import state
from ui.frame.i18n import catalog
from ui.frame.layout import t

__all__ = ["SEVERITY", "evidence_fields", "show_diagnosis"]

# How each verdict is drawn: fine, nothing to judge yet, worth fixing, the model is damaged.
SEVERITY = {"good_fit": "success", "too_short": "info", "no_validation": "info", "overfitting": "warning",
            "underfitting": "warning", "forgetting": "error", "diverged": "error"}
_ICONS = {"success": ":material/check_circle:", "info": ":material/info:", "warning": ":material/warning:",
          "error": ":material/error:"}
# The limit tlcore's own message uses for "still rising", so both say the same.
_RISING = Thresholds().rising


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def _points(value) -> str:
    return "–" if value is None else f"{value * 100:.0f}"


def _plain(value, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


def evidence_fields(evidence: dict) -> dict:
    """A diagnosis's evidence as the text the catalog's sentences take ("–" where unknown)."""
    ev = evidence or {}
    trend = ev.get("train_trend")
    return {
        "epochs": _plain(ev.get("epochs")), "usable": _plain(ev.get("usable_epochs")), "window": _plain(ev.get("window")),
        "train": _pct(ev.get("train_accuracy")), "val": _pct(ev.get("val_accuracy")),
        "gap": _points(ev.get("gap")), "growth": _points(ev.get("gap_growth")),
        "best_epoch": _plain(ev.get("best_val_epoch")), "low_epoch": _plain(ev.get("min_val_loss_epoch")),
        "rise": _pct(ev.get("val_loss_rise")),
        "boundary": _plain(ev.get("fine_tune_epoch")),
        "before": _pct(ev.get("val_accuracy_before")), "after": _pct(ev.get("val_accuracy_after")),
        "loss_before": _plain(ev.get("val_loss_before"), ".2f"), "loss_after": _plain(ev.get("val_loss_after"), ".2f"),
        "bad_epoch": _plain(ev.get("diverged_epoch")),
        "trend": t("diag.trend.rising") if trend is not None and trend > _RISING else t("diag.trend.flat"),
    }


def _remedies(code: str, english: list[str]) -> list[str]:
    """The diagnosis's remedies in the session's language: each English one is a line of ``REMEDIES[code]``, and
    ``diag.<code>.remedies`` translates that list line for line. A remedy this tlcore does not list (a diagnosis
    saved by another version) stays in English."""
    translated = catalog(state.language()).get(f"diag.{code}.remedies")
    if not translated:
        return list(english)
    lines = translated.split("\n")
    known = REMEDIES.get(code, [])
    return [lines[known.index(r)] if r in known and known.index(r) < len(lines) else r for r in english]


def show_diagnosis(diagnosis: dict, container=None) -> None:
    """Draw :func:`tlcore.analysis.diagnosis.diagnose`'s result: the verdict coloured by severity, the evidence in
    one sentence and the remedies as a list, in the session's language.

    The remedies are tlcore's own (English, those that apply to what the run did) unless the session's
    language translates them (``diag.<code>.remedies``, see :mod:`ui.frame.i18n`). ``container`` (default: the
    page) is any Streamlit container, e.g. a column. A code the catalog does not know (a newer tlcore) is shown
    with tlcore's own English message and remedies.
    """
    target = container if container is not None else st
    code = str(diagnosis.get("code", ""))
    kind = SEVERITY.get(code, "info")
    target.markdown(f"**{t('diag.title')}**")
    if f"diag.{code}" in catalog():
        verdict = t(f"diag.{code}")
        sentence = t(f"diag.{code}.evidence", **evidence_fields(diagnosis.get("evidence", {})))
        # English remedies live in tlcore alone (the CLI says them too); other languages translate them line by line.
        remedies = _remedies(code, list(diagnosis.get("remedies", [])))
    else:
        verdict, sentence, remedies = diagnosis.get("message", code), "", list(diagnosis.get("remedies", []))
    getattr(target, kind)(verdict, icon=_ICONS[kind])
    if sentence:
        target.markdown(sentence)
    if remedies:
        target.markdown(t("diag.remedies") + "\n" + "\n".join(f"- {r}" for r in remedies))
