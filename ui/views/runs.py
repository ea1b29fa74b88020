"""Draw the Runs page's parts: the history table, the side-by-side comparison, the from-scratch twin,
saving/opening projects and freeing room (deleting runs and saved projects)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from tlcore.lab.experiments import run_curves, start_scratch_run
from tlcore.lab.gc import freeable_bytes, remove_job, remove_project
from tlcore.jobs.runner import LIVE, job_status, list_jobs
from tlcore.lab.project import (open_project, open_project_zip, project_path, project_zip, save_check, save_project,
                                saved_projects)
from tlcore.training.ledger import run_key, scored_runs

from ui.frame import state
from ui.charts.compare import compare_figure
from ui.views.follow import curve_labels, show_job
from ui.frame.i18n import catalog
from ui.frame.layout import guard, plain, run_kind, t

__all__ = ["show_projects", "show_history", "choose_runs", "show_comparison", "show_scratch", "show_twin_job",
           "show_disk"]


def _pct(value) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value:.1%}"


def _weights(row: dict) -> str:
    return t("runs.weights.none") if row["weights"] == "none" else row["weights"]


def _fine_tune(row: dict) -> str:
    if not row["fine_tune_layers"]:
        return "–"
    return t("runs.fine_tune_cell", layers=row["fine_tune_layers"], epochs=row["fine_tune_epochs"],
             lr=f"{row['fine_tune_lr']:g}")


def _test(row: dict) -> str:
    # A test score appears only once a person has opened that run's test split (Evaluate, which counts the look):
    # a column of test scores beside the validation ones would invite choosing between runs by test accuracy.
    if row["test_accuracy"] is None:
        return "–"
    return _pct(row["test_accuracy"]) if row.get("test_scored") else t("runs.test_kept")


def _with_looks(rows: list[dict]) -> list[dict]:
    """``rows`` with ``test_scored``: whether the session has looked at each run's test split."""
    scored = scored_runs(state.workspace().root)
    return [{**r, "test_scored": run_key(r["run_dir"]) in scored} for r in rows]


def _kind(row: dict, names: dict[str, str]) -> str:
    if row["scratch_of"]:
        return t("runs.kind.scratch", of=names.get(row["scratch_of"], Path(row["scratch_of"]).parent.name))
    return run_kind(row["kind"])


def _columns(row: dict, names: dict[str, str]) -> dict:
    """One run's settings and scores under translated headings (the table and the side-by-side view share them)."""
    seconds = row["seconds"]
    return {
        t("runs.col.kind"): _kind(row, names),
        t("runs.col.backbone"): row["backbone"],
        t("runs.col.weights"): _weights(row),
        t("runs.col.epochs"): row["epochs"],
        t("runs.col.batch"): row["batch_size"],
        t("runs.col.lr"): "–" if row["lr"] is None else f"{row['lr']:g}",
        t("runs.col.fine_tune"): _fine_tune(row),
        t("runs.col.seed"): row["seed"],
        t("runs.col.val"): _pct(row["val_accuracy"]),
        t("runs.col.test"): _test(row),
        t("runs.col.seconds"): "–" if seconds is None else f"{seconds:.0f}",
    }


def _names(rows: list[dict]) -> dict[str, str]:
    return {r["run_dir"]: r["name"] for r in rows}


def _scores_first(headings: list[str]) -> list[str]:
    """``headings`` with the scores first (after the run's name): on a narrow screen the settings scroll out of
    view, not the numbers that compare the runs."""
    scores = [h for h in (t("runs.col.val"), t("runs.col.test")) if h in headings]
    name = [h for h in headings[:1] if h == t("runs.col.name")]
    return name + scores + [h for h in headings if h not in name + scores]


def show_history(rows: list[dict]) -> None:
    """Every finished run, newest first, with its scores and then its settings (test accuracy once its test split
    was looked at)."""
    names = _names(rows)
    table = [{t("runs.col.name"): r["name"], **_columns(r, names)} for r in _with_looks(rows)]
    st.dataframe(table, hide_index=True, column_order=_scores_first(list(table[0])))
    st.caption(t("runs.test_note"))


def choose_runs(rows: list[dict]) -> list[dict]:
    """The runs to compare; at first the newest one and, for a from-scratch twin, the run it repeats."""
    by_name = {r["name"]: r for r in rows}
    default = [rows[0]["name"]]
    twin_of = _names(rows).get(rows[0]["scratch_of"] or "")
    default += [twin_of] if twin_of else [r["name"] for r in rows[1:2]]
    names = _names(rows)
    # Keyed by the number of runs: a run that just finished gets the default selection again.
    chosen = st.multiselect(t("runs.compare"), list(by_name), default=default, key=f"compare_{len(rows)}",
                            format_func=lambda n: t("run.label", name=n, kind=_kind(by_name[n], names),
                                                  backbone=by_name[n]["backbone"],
                                                  accuracy=_pct(by_name[n]["val_accuracy"])))
    return [by_name[n] for n in chosen]


def show_comparison(chosen: list[dict], all_rows: list[dict]) -> None:
    """The chosen runs' curves overlaid, and their settings and scores side by side."""
    if not chosen:
        st.caption(t("runs.compare_hint"))
        return
    curves = {r["name"]: run_curves(r["run_dir"]) for r in chosen}
    parents = {r["name"]: r["parent"] for r in chosen if r.get("parent")}  # a fine-tuning run continues its parent
    st.plotly_chart(compare_figure(curves, curve_labels(), parents), key="compare_curves")
    names = _names(all_rows)
    columns = {r["name"]: _columns(r, names) for r in _with_looks(chosen)}
    headings = _scores_first(list(next(iter(columns.values()))))
    # A static table: every row and whole cells, wrapped (a scrolling grid cut the last rows and long cells).
    st.table([{t("runs.col.setting"): h, **{run: str(values[h]) for run, values in columns.items()}}
              for h in headings], hide_index=True)


def show_scratch(rows: list[dict]) -> None:
    """Pick a pretrained run and train its twin from random weights with the same budget."""
    pretrained = [r for r in rows if r["weights"] != "none"]
    st.subheader(t("runs.scratch.header"))
    st.caption(t("runs.scratch.intro"))
    if not pretrained:
        st.caption(t("runs.scratch.no_pretrained"))
        return
    by_name = {r["name"]: r for r in pretrained}
    name = st.selectbox(t("runs.scratch.base"), list(by_name), key="scratch_base")
    running = state.job_running()
    if st.button(t("runs.scratch.start"), icon=":material/science:", disabled=running):
        with guard():
            start_scratch_run(by_name[name]["run_dir"], state.workspace().jobs_dir)
            st.rerun()
    if running:
        st.caption(t("train.busy"))


def show_twin_job() -> None:
    """The newest job of the session, while it is a from-scratch twin that has not finished well."""
    jobs = list_jobs(state.workspace().jobs_dir)
    if not jobs:
        return
    status = job_status(jobs[0])
    if status.get("scratch_of") and (status["status"] in LIVE or status["status"] == "failed"):
        show_job(jobs[0])


# What each problem tlcore.lab.project.save_check finds says on the page, with its numbers.
_SAVE_PROBLEMS = {"session": "runs.project.too_big", "photo": "runs.project.photo_too_big",
                  "upload": "runs.project.zip_too_big"}


def _save_problem(problem: dict) -> str:
    return t(_SAVE_PROBLEMS[problem["code"]], mb=problem["mb"], cap=problem["cap_mb"], name=plain(problem["name"]))


def _save(ws) -> None:
    """The Save button, with what saving would write, measured first (save_check): a project no session could
    open is refused (the button disabled, the reason shown), a ZIP over the upload cap is a warning."""
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input(t("runs.project.name"), value=t("runs.project.default"), key="project_name")
    check = None
    with guard():  # a bad TLCORE_MAX_SESSION_MB is one sentence
        check = save_check(ws, name=name.strip() or None)
    refusal = check["refusal"] if check else None
    clicked = c2.button(t("runs.project.save"), icon=":material/save:", disabled=check is None or refusal is not None)
    if check:
        st.caption(t("runs.project.size", mb=check["bytes"] / _MB, zip_mb=check["zip_bytes"] / _MB,
                     photos=check["photos"]))
        if refusal:
            st.error(_save_problem(refusal))
        for warning in check["warnings"]:
            st.warning(_save_problem(warning))
    if clicked:
        with guard():
            path = save_project(ws, project_path(ws, name), name=name.strip())
            st.success(t("runs.project.saved", name=path.name))


def _open_saved(ws) -> None:
    saved = saved_projects(ws)
    if not saved:
        st.caption(t("runs.project.none"))
        return
    for i, project in enumerate(saved):
        c1, c2, c3, c4 = st.columns([3, 1, 1, 1], vertical_alignment="center")
        c1.write(t("runs.project.item", name=project["name"], created=project["created"], runs=project["runs"]))
        if c2.button(t("runs.project.open"), key=f"open_project_{i}", icon=":material/folder_open:"):
            with guard():
                opened = open_project(project["path"], ws)
                st.success(t("runs.project.opened", name=opened["name"], photos=opened["photos"], runs=opened["runs"]))
        # Made on click, in the background: zipping every photo on each rerun would be slow.
        c3.download_button(t("runs.project.download"), data=partial(project_zip, project["path"]),
                           file_name=f"{project['path'].name}.zip", mime="application/zip", on_click="ignore",
                           key=f"download_project_{i}", icon=":material/download:")
        if c4.button(t("disk.delete_project"), key=f"delete_project_{i}", icon=":material/delete:"):
            with guard():
                freed = remove_project(ws, project["path"].name)
                st.session_state["tl_deleted"] = t("disk.project_deleted", name=project["name"], mb=freed / _MB)
                st.rerun()


def _open_upload(ws) -> None:
    upload = st.file_uploader(t("runs.project.upload"), type=["zip"], key="project_upload")
    if upload is not None and st.button(t("runs.project.open_zip"), icon=":material/upload_file:"):
        with guard():
            opened = open_project_zip(upload.getvalue(), ws)
            st.success(t("runs.project.opened", name=opened["name"], photos=opened["photos"], runs=opened["runs"]))


def show_projects() -> None:
    """Save this session as a project, or open a saved or uploaded one (which replaces its photos and runs).

    Drawn before the run history, so a project opened here is listed below in the same run.
    """
    ws = state.workspace()
    with st.expander(t("runs.project.header"), icon=":material/inventory_2:"):
        st.caption(t("runs.project.intro"))
        _save(ws)
        st.caption(t("runs.project.replaces"))
        _open_saved(ws)
        _open_upload(ws)


_MB = 1024 * 1024


def _job_label(job: Path, status: dict) -> str:
    kind = run_kind(status.get("kind", "train"))
    word = f"disk.status.{status['status']}"
    return t("disk.item", name=job.name, kind=kind, status=t(word) if word in catalog() else status["status"],
             mb=freeable_bytes(job) / _MB)


def show_disk() -> None:
    """What this session holds on disk against its cap, and deleting a run (its job folder: model, curves,
    exports, checkpoints, photo snapshot) to free room; a live job cannot be deleted."""
    ws = state.workspace()
    st.subheader(t("disk.header"))
    if "tl_deleted" in st.session_state:
        st.success(st.session_state.pop("tl_deleted"))
    with guard():  # a bad TLCORE_MAX_SESSION_MB is one sentence
        quota = ws.quota()
        st.caption(t("disk.intro", used=quota["used_mb"], session=quota["session_mb"]))
    jobs = list_jobs(ws.jobs_dir)
    if not jobs:
        st.caption(t("disk.no_jobs"))
        return
    statuses = {job.name: job_status(job) for job in jobs}
    labels = {job.name: _job_label(job, statuses[job.name]) for job in jobs}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.selectbox(t("disk.choose"), list(labels), format_func=labels.get, key="delete_run_choice")
    if c2.button(t("disk.delete_run"), icon=":material/delete:", key="delete_run"):
        with guard():
            freed = remove_job(ws, name)  # refused, in one sentence, while the job is live
            st.session_state["tl_deleted"] = t("disk.run_deleted", name=name, mb=freed / _MB)
            st.rerun()
