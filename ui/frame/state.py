"""The one home of session state, with typed accessors.

Only small values live in ``st.session_state``; a session's photos, settings
and runs live in its own workspace folder, found again after a refresh
through the ``?s=`` id in the address.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from tlcore.lab.gc import mark_seen
from tlcore.jobs.folder import job_path
from tlcore.jobs.runner import LIVE, job_status, list_jobs
from tlcore.backbones.registry import DEFAULT_BACKBONE
from tlcore.lab.workspace import Workspace
from tlcore.models.run_files import is_run

from ui.frame import access

__all__ = ["session_id", "admitted", "workspace", "language", "set_language", "backbone", "set_backbone", "split", "set_split",
           "finished_runs", "job_running", "current_job", "set_current_job", "training_jobs", "export_jobs",
           "jobs_of", "exported_models", "attack_result", "set_attack_result", "first_sight_of_recording"]

_SID = "tl_session_id"


def session_id() -> str:
    """This browser session's id, kept in the address so a refresh or a bookmark finds the same workspace.

    Only an id this server issued and admitted counts (:func:`ui.frame.access.admitted_session`): a made-up
    or forged one in the address gets a new session, and until the browser passes the access gate
    (when the server has one) the page shows the gate and stops here.
    """
    sid = access.admitted_session(st.session_state.get(_SID), st.query_params.get("s"))
    st.session_state[_SID] = sid
    if st.query_params.get("s") != sid:  # page switches clear the address's parameters
        st.query_params["s"] = sid
    return sid


def admitted() -> bool:
    """Whether this browser session has passed the access gate (draws nothing, unlike :func:`session_id`)."""
    return access.admission(st.session_state.get(_SID), st.query_params.get("s")) is not None


def workspace() -> Workspace:
    ws = Workspace.for_session(session_id())
    # The per-file cap Streamlit enforces on uploads is also the one the workspace keeps to.
    ws.max_file_mb = st.get_option("server.maxUploadSize")
    mark_seen(ws.root)  # idle sessions expire (tlcore.lab.gc); at most one write a minute
    return ws


def language() -> str:
    # Read once per session: every piece of text asks for it.
    if "tl_language" not in st.session_state:
        st.session_state["tl_language"] = workspace().settings().get("language", "en")
    return st.session_state["tl_language"]


def set_language(lang: str) -> None:
    workspace().update_settings(language=lang)
    st.session_state["tl_language"] = lang


def backbone() -> str:
    return workspace().settings().get("backbone", DEFAULT_BACKBONE)


def set_backbone(name: str) -> None:
    workspace().update_settings(backbone=name)


def split() -> tuple[int, int, int, int]:
    """(train %, val %, test %, seed)."""
    s = workspace().settings()
    return tuple(s.get("split", (80, 10, 10))) + (int(s.get("seed", 0)),)


def set_split(train: int, val: int, test: int, seed: int) -> None:
    workspace().update_settings(split=[train, val, test], seed=seed)


def current_job() -> Path | None:
    """The job the Train page follows: one of this session's job folders, or None (settings may come from a
    project, so a value naming anything else is ignored)."""
    ws = workspace()
    job = job_path(ws.root, ws.settings().get("current_job"), "current job")
    if job is None or job.parent != ws.jobs_dir.absolute() or not job.is_dir():
        return None
    return ws.jobs_dir / job.name  # as list_jobs names it, so the Train page finds it in its list


def set_current_job(job_dir: Path) -> None:
    workspace().update_settings(current_job=str(job_dir))


_MODEL_JOBS = ("train", "finetune", "harden")  # the kinds of job that produce a run


def training_jobs() -> list[Path]:
    """This session's jobs that produce a model (train, fine-tune, harden), newest first."""
    return [job for job in list_jobs(workspace().jobs_dir) if job_status(job).get("kind", "train") in _MODEL_JOBS]


def jobs_of(run_dir: Path, kind: str) -> list[tuple[Path, dict]]:
    """(job directory, status) of every ``kind`` job (export, robustness, harden) on ``run_dir``, newest first."""
    jobs = []
    for job in list_jobs(workspace().jobs_dir):
        status = job_status(job)
        if status.get("kind") == kind and status.get("parent") == str(run_dir):
            jobs.append((job, status))
    return jobs


def export_jobs(run_dir: Path) -> list[tuple[Path, dict]]:
    """(job directory, status) of every export of ``run_dir``, newest first."""
    return jobs_of(run_dir, "export")


def attack_result() -> dict | None:
    """The last single-image attack of this session (arrays and settings), if any."""
    return st.session_state.get("tl_attack")


def set_attack_result(result: dict | None) -> None:
    st.session_state["tl_attack"] = result


def exported_models(run_dir: Path) -> list[Path]:
    """The TFLite and ONNX files of the newest finished export of ``run_dir`` that still exist inside this
    session's workspace (a path of a job file leading elsewhere is skipped)."""
    root = workspace().root
    for job, status in export_jobs(run_dir):
        if status["status"] in ("done", "stopped"):
            exports = (status.get("result") or {}).get("exports") or []
            files = [job_path(root, e.get("path"), "export") for e in exports if isinstance(e, dict)]
            return [f for f in files if f is not None and f.suffix in (".tflite", ".onnx") and f.is_file()]
    return []


def finished_runs() -> list[tuple[Path, dict]]:
    """(run directory, job status) of every finished or stopped job, newest first."""
    ws = workspace()
    runs = []
    for job in list_jobs(ws.jobs_dir):
        if job_path(ws.root, job / "run", "run") is None:
            continue  # a link leading out of the workspace
        status = job_status(job)
        if status["status"] in ("done", "stopped") and is_run(job / "run"):
            runs.append((job / "run", status))
    return runs


def job_running() -> bool:
    """Whether one of this session's jobs is still live, waiting for a slot included (one at a time per session)."""
    return any(job_status(job)["status"] in LIVE for job in list_jobs(workspace().jobs_dir))


def first_sight_of_recording(batch: str) -> bool:
    """Whether the camera recording ``batch`` is new to this session (then it is remembered): the recorder's
    value stays the same on every rerun until the next recording, and its frames must be added once."""
    if st.session_state.get("tl_recording") == batch:
        return False
    st.session_state["tl_recording"] = batch
    return True
