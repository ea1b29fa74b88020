"""The Data page's "Check labels" panel: a label check job, then the photos whose label looks wrong, each with
its thumbnail, given and suggested class, and one-click Move and Remove; then the embedding map of the check."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from tlcore.jobs.runner import LIVE, job_status, new_job_dir, read_events, start_job
from tlcore.lab.workspace import Workspace

from ui.frame import state
from ui.frame.layout import guard, job_error, plain, t
from ui.views.embedding_map import data_map_points, show_embedding_map
from ui.views.follow import follow, phase_progress, show_progress

__all__ = ["KIND", "SHOWN", "show_label_check", "open_issues"]

KIND = "labels"  # the job kind of a label check
SHOWN = 12  # suspects drawn at once: the most suspicious; fixing them and checking again shows the next ones


def open_issues(ws: Workspace, issues: list[dict]) -> list[dict]:
    """The issues still to act on: those whose photo is still in its given class in the workspace (a photo moved
    or removed since the check drops out). Each gets ``name`` (its file name) and ``photo`` (its workspace path)."""
    present = {name: {p.name: p for p in ws.images(name)} for name in ws.classes()}
    found = []
    for issue in issues:
        name = Path(issue["path"]).name  # the job's snapshot mirrors the workspace: class folder, file name
        photo = present.get(issue["given"], {}).get(name)
        if photo is not None:
            found.append({**issue, "name": name, "photo": photo})
    return found


def _start(ws: Workspace) -> None:
    job_dir = new_job_dir(ws.jobs_dir, KIND)
    data = ws.snapshot(job_dir / "data")  # the photos as they are now; the page may change them meanwhile
    start_job(job_dir, ["check", str(data), "--labels", "--map", "--backbone", state.backbone()], kind=KIND,
              meta={"parent": str(ws.data_dir)})


def _suspect(ws: Workspace, issue: dict, classes: list[str]) -> None:
    photo, words, buttons = st.columns([1, 2, 2], vertical_alignment="center")
    photo.image(str(issue["photo"]), width=96)
    words.write(t("labels.caption", given=plain(issue["given"]), suggested=plain(issue["suggested"]),
                  conf=issue["confidence"]))
    words.caption(plain(issue["name"]))
    with buttons, guard():
        if issue["suggested"] in classes and issue["suggested"] != issue["given"]:
            if st.button(t("labels.move", name=issue["suggested"]), key=f"lbl_mv_{issue['given']}_{issue['name']}",
                         icon=":material/drive_file_move:"):
                ws.move_image(issue["given"], issue["name"], issue["suggested"])
                st.rerun()
        if st.button(t("labels.remove"), key=f"lbl_rm_{issue['given']}_{issue['name']}", icon=":material/delete:"):
            ws.remove_image(issue["given"], issue["name"])
            st.rerun()


def _result(ws: Workspace, job_dir: Path, result: dict) -> None:
    issues = open_issues(ws, result.get("label_issues", []))
    if not issues:
        st.success(t("labels.none"))
    else:
        st.write(t("labels.found", n=len(issues)))
        classes = ws.classes()
        for issue in issues[:SHOWN]:
            _suspect(ws, issue, classes)
        if len(issues) > SHOWN:
            st.caption(t("labels.more", n=len(issues) - SHOWN))
    points = result.get("embedding_map")
    if points:
        show_embedding_map(points, key=f"map_{job_dir.name}", root=ws.root,
                           suspects=[i["path"] for i in result.get("label_issues", [])])


def _draw(job_dir: Path, ws: Workspace) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in LIVE:
        show_progress(job_dir, status, *phase_progress(read_events(job_dir)))
    elif key == "failed":
        st.error(t("labels.failed", error=job_error(status)))
    elif status.get("result"):
        _result(ws, job_dir, status["result"])
    return key


def show_label_check(ws: Workspace) -> None:
    """The panel: what it does, the button that starts a check (a job: embedding may take a while the first
    time), and the newest check, followed while it runs."""
    st.subheader(t("labels.title"))
    st.caption(t("labels.intro"))
    if sum(1 for n in ws.counts().values() if n) < 2:
        st.info(t("labels.need_two"))
        return
    running = state.job_running()
    with guard():
        if st.button(t("labels.start"), icon=":material/fact_check:", disabled=running):
            _start(ws)
            st.rerun()
    if running:
        st.caption(t("train.busy"))
    checks = state.jobs_of(ws.data_dir, KIND)
    if checks:
        follow(checks[0][0], lambda job_dir: _draw(job_dir, ws))
    if not checks or not (checks[0][1].get("result") or {}).get("embedding_map"):
        # No check drew a map yet: the photos' embeddings may already be cached (a training run made them).
        with guard():
            points = data_map_points(ws, state.backbone())
            if points:
                show_embedding_map(points, key="map_cached", root=ws.root)
