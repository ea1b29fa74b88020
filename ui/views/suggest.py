"""The Data page's "Labelling help" panel: unlabelled photos uploaded, a finished run's suggestion for each (least
confident first: the ones worth a look), per-photo class and selection, and the selected photos added to their
classes with the checks of any upload.

The photos wait in the session's workspace (:meth:`tlcore.lab.workspace.Workspace.add_unlabelled`, its own
folder, never shared) until accepted or discarded. Prediction runs inline with a progress bar, not as a background
job: measured on the shared ants and bees photos (docs/BENCHMARKS.md, "Labelling help") a Lite0 run takes about
0.05 s a photo on a 2-core host, so a few dozen photos take a second or two and a round of ``MAX_PHOTOS`` about
5 s; the photos beyond it wait for the next round.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from tlcore.data.unlabelled import UnlabelledPhoto
from tlcore.io.errors import TLError
from tlcore.lab.workspace import Workspace
from tlcore.models.suggest import SuggestConfig, Suggestions, suggest_labels

from ui.frame import state, widgets
from ui.frame.layout import guard, run_label, t
from ui.frame.models import run_model
from ui.views.photos import PER_PAGE, page_count

__all__ = ["MAX_PHOTOS", "COLUMNS", "show_labelling_help", "suggestions_for", "accept"]

# Photos suggested in one round (the least confident first among them); the others wait for the next round.
# About 5 s at the measured 0.05 s a photo (docs/BENCHMARKS.md, "Labelling help"): short enough to wait for with a
# moving bar, so no background job.
MAX_PHOTOS = 100
COLUMNS = 4  # thumbnails per row: room under each for its class and its selection

_RESULT = "suggest_result"  # (run, classes, {(name, mtime): Suggestion}): reruns and later rounds do not predict again
_CHOICES = "suggest_choices"  # the user's class and selection per photo, kept across the pages of the grid
_ROUND = "suggest_round"  # the uploader's round: a new uploader after each upload, so a rerun never adds twice
_DONE = "suggest_done"  # what the last action did, said on the next run (after the rerun that shows it)


def _runs() -> dict[str, str]:
    return {str(run): run_label(run, status) for run, status in state.finished_runs()}


def suggestions_for(run_dir, photos) -> Suggestions:
    """The run's suggestions for the waiting ``photos`` (paths), least confident first. Each photo is predicted once
    per run: photos uploaded later, or what is left after some were added, reuse the earlier predictions."""
    run_key = (str(run_dir), (run_dir / "model.weights.h5").stat().st_mtime_ns)
    cached = st.session_state.get(_RESULT)
    classes, known = cached[1:] if cached is not None and cached[0] == run_key else (None, {})
    keys = {p: (p.name, p.stat().st_mtime_ns) for p in photos}  # a photo replaced under its name is predicted again
    new = [p for p in photos if keys[p] not in known]
    skipped = []
    if new:
        model = run_model(run_dir)
        bar = st.progress(0.0, text=t("suggest.predicting", done=0, total=len(new)))

        def on_progress(done, total):
            bar.progress(done / max(total, 1), text=t("suggest.predicting", done=done, total=total))

        result = suggest_labels(model, [UnlabelledPhoto(p.name, p) for p in new], on_progress=on_progress)
        bar.empty()
        classes, skipped = result.classes, result.skipped
        by_name = {p.name: keys[p] for p in new}
        known = {**known, **{by_name[s.path]: s for s in result.rows}}
    # Only the photos still waiting: those added or discarded are forgotten.
    known = {key: known[key] for key in keys.values() if key in known}
    st.session_state[_RESULT] = (run_key, classes, known)
    rows = sorted((known[keys[p]] for p in photos if keys[p] in known), key=lambda s: s.confidence)
    return Suggestions(classes, rows, skipped)


def _choices(result: Suggestions, threshold: float) -> dict:
    """The class and selection of each photo: the suggestion, selected when at or above ``threshold``. A photo
    keeps what the user chose while it waits; a new threshold selects again (its widgets get new keys: ``gen``)."""
    choices = st.session_state.get(_CHOICES)
    names = tuple(s.path for s in result.rows)
    if choices is None or choices["names"] != names:
        old = choices or {"gen": 0, "class": {}, "pick": {}, "threshold": threshold}
        choices = {"names": names, "threshold": old["threshold"], "gen": old["gen"] + 1,
                   "class": {s.path: old["class"].get(s.path, s.suggested) for s in result.rows},
                   "pick": {s.path: old["pick"].get(s.path, s.confidence >= threshold) for s in result.rows}}
    if choices["threshold"] != threshold:
        choices.update(threshold=threshold, gen=choices["gen"] + 1,
                       pick={s.path: s.confidence >= threshold for s in result.rows})
    st.session_state[_CHOICES] = choices
    return choices


def accept(ws: Workspace, choices: dict) -> tuple[list, list[dict]]:
    """Add the selected photos to their chosen classes (:meth:`Workspace.accept_unlabelled`)."""
    picked = {name: choices["class"][name] for name, pick in choices["pick"].items() if pick}
    return ws.accept_unlabelled(picked)


def _upload(ws: Workspace) -> None:
    files = st.file_uploader(t("suggest.upload"), accept_multiple_files=True,
                             key=f"suggest_files_{st.session_state.get(_ROUND, 0)}")
    if not files:
        return
    added, rejected = [], []
    for f in files:  # a ZIP is extracted safely by the workspace; any other file must be a photo
        try:
            new, bad = (ws.add_unlabelled_zip(f.getvalue()) if f.name.lower().endswith(".zip")
                        else ws.add_unlabelled([(f.name, f.getvalue())]))
        except TLError as exc:  # an unusable ZIP is one line of the list: the other files still count, once
            new, bad = [], [{"name": f.name, "reason": str(exc)}]
        added += new
        rejected += bad
    st.session_state[_ROUND] = st.session_state.get(_ROUND, 0) + 1
    st.session_state[_DONE] = ("suggest.uploaded", len(added), rejected)
    st.rerun()


def _say_done() -> None:
    if _DONE in st.session_state:
        key, n, rejected = st.session_state.pop(_DONE)
        st.success(t(key, n=n))
        if rejected:
            st.warning(t("data.rejected", n=len(rejected)))
            st.dataframe(rejected, hide_index=True)


def _grid(result: Suggestions, choices: dict) -> None:
    rows = result.rows
    pages = page_count(len(rows))
    page = 1
    if pages > 1:
        # Photos added since the page was chosen: stay on the last page there still is (set before the widget).
        if st.session_state.get("suggest_page", 1) > pages:
            st.session_state["suggest_page"] = pages
        page = int(st.number_input(t("data.page"), min_value=1, max_value=pages, step=1, key="suggest_page"))
    shown = rows[(page - 1) * PER_PAGE:page * PER_PAGE]
    gen = choices["gen"]
    for start in range(0, len(shown), COLUMNS):
        for column, s in zip(st.columns(COLUMNS, vertical_alignment="bottom"), shown[start:start + COLUMNS]):
            with column:
                st.image(str(s.file), width="stretch")
                st.caption(t("suggest.suggested", cls=s.suggested, confidence=s.confidence))
                chosen = choices["class"][s.path]
                choices["class"][s.path] = st.selectbox(
                    t("suggest.class", name=s.path), result.classes, index=result.classes.index(chosen),
                    key=f"suggest_class_{gen}_{s.path}", label_visibility="collapsed")
                choices["pick"][s.path] = st.checkbox(t("suggest.pick"), value=choices["pick"][s.path],
                                                      key=f"suggest_pick_{gen}_{s.path}")


def show_labelling_help(ws: Workspace) -> None:
    """The whole panel: a run to suggest with, the upload, the suggestions and the buttons that act on them."""
    st.subheader(t("suggest.title"))
    st.caption(t("suggest.intro"))
    _say_done()
    runs = _runs()
    if not runs:
        st.info(t("suggest.no_run"))
        return
    with guard():
        _upload(ws)
    waiting = ws.unlabelled()
    if not waiting:
        return
    run_dir = st.selectbox(t("suggest.run"), list(runs), format_func=runs.get, key="suggest_run")
    with guard():
        photos = waiting[:MAX_PHOTOS]
        if len(waiting) > len(photos):
            st.caption(t("suggest.more", n=len(photos), more=len(waiting) - len(photos)))
        result = suggestions_for(Path(run_dir), photos)
        threshold = widgets.slider(st, SuggestConfig, "threshold", t("suggest.threshold"), step=0.05,
                                   key="suggest_threshold")
        if result.skipped:  # checked as images when uploaded: only a file changed since then
            st.warning(t("suggest.skipped", n=len(result.skipped)))
            st.dataframe(result.skipped, hide_index=True)
        choices = _choices(result, threshold)
        _grid(result, choices)
        picked = sum(choices["pick"].values())
        st.caption(t("suggest.summary", n=len(result.rows), sure=len(result.sure(threshold)), picked=picked))
        if st.button(t("suggest.accept", n=picked), type="primary", disabled=not picked, key="suggest_accept"):
            added, rejected = accept(ws, choices)
            st.session_state[_DONE] = ("suggest.accepted", len(added), rejected)
            st.rerun()
    # Outside the block above: photos the model cannot read (changed since they were checked) can still go.
    if st.button(t("suggest.discard", n=len(waiting)), key="suggest_discard"):
        ws.discard_unlabelled()
        st.session_state[_DONE] = ("suggest.discarded", len(waiting), [])
        st.rerun()
