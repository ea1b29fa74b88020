"""Follow a background job: the phase it is in and a bar that moves, live curves, Stop, final message and the
curves' diagnosis."""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from tlcore.analysis.diagnosis import Done, diagnose
from tlcore.jobs.folder import job_path
from tlcore.io.errors import TLError
from tlcore.jobs.events import FINE_TUNING, LABELS, TRAINING, current_phase
from tlcore.jobs.runner import LIVE, job_meta, job_status, read_events, request_stop
from tlcore.models.run_files import is_run, read_run_json, training_done
from tlcore.training.resume import resume_job, resume_point

from ui.frame import state
from ui.views.advice import show_warnings
from ui.charts.figures import curves_figure
from ui.views.diagnosis import show_diagnosis
from ui.frame.layout import guard, job_error, t

__all__ = ["job_history", "show_job", "curve_labels", "follow", "show_waiting", "phase_progress", "show_progress"]


def curve_labels() -> dict:
    return {k: t(f"chart.{k}") for k in ("loss", "accuracy", "train", "val", "epoch", "fine_tune_start")}


def job_history(job_dir: Path) -> list[dict]:
    """Per-epoch logs: the parent run's history (for a fine-tuning job), then this job's epochs."""
    history = []
    # The parent run named by job.json is read only when it is inside this session's workspace.
    parent = job_path(state.workspace().root, (job_meta(job_dir) or {}).get("parent"), "parent run")
    if parent is not None:
        try:
            history = list(read_run_json(parent, "metrics.json").get("history", []))
        except (TLError, AttributeError, TypeError):
            history = []
    for e in read_events(job_dir):
        if e.get("type") == "resume":  # a resumed worker starts again from its checkpoint's history
            history = list(e["history"])
        elif e.get("type") == "epoch":
            history.append({k: v for k, v in e.items() if k not in ("type", "time")})
    return history


def _done(job_dir: Path) -> Done:
    """What the job's run did (fine-tuned, augmented, ...), so the diagnosis does not advise it again."""
    run = job_path(state.workspace().root, job_dir / "run", "run")
    return Done(**training_done(run)) if run is not None and is_run(run) else Done()


def _epochs_done(events: list[dict]) -> int:
    """Epochs this job has completed, counting those a resumed worker kept from its checkpoint."""
    done = 0
    for e in events:
        if e.get("type") == "resume":
            done = int(e.get("done", 0))
        elif e.get("type") == "epoch":
            done += 1
    return done


def show_progress(job_dir: Path, status: dict, fraction: float, text: str) -> None:
    """A live job's bar, its phase in words, and its Stop button: one look for every kind of job."""
    st.progress(min(max(fraction, 0.0), 1.0), text=text)
    if st.button(t("train.stop"), key=f"stop_{job_dir.name}", disabled=status["status"] == "stopping",
                 icon=":material/stop:"):
        request_stop(job_dir)


def phase_progress(events: list[dict], overall: float = 0.0) -> tuple[float, str]:
    """``(bar, words)`` for the phase a job is in (:func:`tlcore.jobs.events.current_phase`): the phase's own
    count when it has one; else ``overall`` (the job's share done by its own measure: epochs, formats...) and, in
    the words, how long the phase has taken, so that a phase without a count is still seen to be alive."""
    phase = current_phase(events)
    if phase is None:  # the worker has not written its first event yet
        return overall, t("phase.starting")
    values = {"done": phase.get("done", 0), "total": phase.get("total", 0), **{k: phase.get(k, "") for k in LABELS}}
    text = t(f"phase.{phase['phase']}", **values)
    if phase.get("total"):
        return min(max(values["done"] / phase["total"], 0.0), 1.0), text
    seconds = max(0, round(time.time() - float(phase.get("since") or time.time())))
    return overall, t("phase.elapsed", text=text, seconds=seconds)


def _training_progress(events: list[dict], total_epochs: int) -> tuple[float, str]:
    """The bar over all epochs (the head's, then fine-tuning's batch by batch); other phases say their own."""
    epochs = min(_epochs_done(events) / max(total_epochs, 1), 1.0)
    phase = current_phase(events) or {}
    if phase.get("phase") == TRAINING:
        return epochs, t("train.epoch", epoch=_epochs_done(events), total=total_epochs)
    fraction, text = phase_progress(events, epochs)
    if phase.get("phase") == FINE_TUNING and phase.get("total"):  # the batches of the epoch under way
        fraction = min((_epochs_done(events) + fraction) / max(total_epochs, 1), 1.0)
    return fraction, text


def _draw(job_dir: Path) -> str:
    status = job_status(job_dir)
    events = read_events(job_dir)
    start = next((e for e in events if e.get("type") == "start"), {})
    total_epochs = int(start.get("epochs", 0)) + int(start.get("fine_tune_epochs", 0))
    key = status["status"]
    if key in LIVE:
        st.info(t("train.running"))
        show_progress(job_dir, status, *_training_progress(events, total_epochs))
    elif key == "stopped" and not status.get("result"):
        st.warning(t("job.stopped_waiting"))  # stopped in line: nothing was trained
    elif key in ("done", "stopped"):
        result = status.get("result") or {}
        fmt = lambda v: "–" if v is None else f"{v:.1%}"  # noqa: E731
        if key == "stopped":
            st.warning(t("train.stopped"))
        # Validation only: the test split is scored when a person asks for it, on Evaluate (tlcore.training.ledger).
        st.success(t("train.done", val=fmt(result.get("val_accuracy")),
                     seconds=(result.get("seconds") or {}).get("total", 0)))
        show_warnings(result.get("warnings", []))
    elif key == "failed":
        st.error(t("train.failed", error=job_error(status)))
        kept = resume_point(job_dir)
        if kept is not None and st.button(t("train.resume", n=kept), key=f"resume_{job_dir.name}",
                                          icon=":material/replay:"):
            with guard():  # the job caps may refuse it: one sentence
                resume_job(job_dir)
                st.rerun()
    history = job_history(job_dir)
    if history and key in ("done", "stopped"):
        # A finished run's curves are read for the user: the verdict sits beside what it is about.
        curves, panel = st.columns([3, 2])
        curves.plotly_chart(curves_figure(history, curve_labels()), key=f"curves_{job_dir.name}_{len(history)}")
        with panel, guard():
            show_diagnosis(diagnose(history, done=_done(job_dir)))
    elif history:
        st.plotly_chart(curves_figure(history, curve_labels()), key=f"curves_{job_dir.name}_{len(history)}")
    return key


def show_waiting(job_dir: Path, status: dict) -> None:
    """A job in line for a free slot: why it has not started, its place, and Stop (it leaves the line)."""
    executor = status.get("executor") if isinstance(status.get("executor"), dict) else {}
    if executor.get("engine") == "ray":  # in the cluster's queue, not this server's line (tlcore.jobs.ray_jobs)
        st.info(t("job.waiting_cluster", cpus=executor.get("cpus") or "?"))
    else:
        st.info(t("job.waiting", slots=status.get("slots") or "?"))
    if status.get("position"):
        st.caption(t("job.position", n=status["position"]))
    if st.button(t("train.stop"), key=f"stop_{job_dir.name}", icon=":material/stop:"):
        request_stop(job_dir)


def _draw_live(job_dir: Path, draw) -> str:
    # Waiting looks the same for every kind of job, so each page's ``draw`` only knows about work.
    status = job_status(job_dir)
    if status["status"] == "waiting":
        show_waiting(job_dir, status)
        return "waiting"
    return draw(job_dir)


def follow(job_dir: Path, draw) -> None:
    """Call ``draw(job_dir)`` (which returns the job's status); while the job waits or runs, redraw every
    second without rerunning the page, and rerun the whole page once it ends (lists and results change)."""
    if job_status(job_dir)["status"] in LIVE:
        @st.fragment(run_every=1.0)
        def live():
            if _draw_live(job_dir, draw) not in LIVE:
                st.rerun()
        live()
    else:
        draw(job_dir)


def show_job(job_dir: Path) -> None:
    """Draw a training job with its live curves."""
    follow(job_dir, _draw)
