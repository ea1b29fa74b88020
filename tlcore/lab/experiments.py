"""Run history and comparisons: every finished run's settings and scores, and its from-scratch twin.

A run's settings come from its ``config.json`` (the full :class:`~tlcore.training.pipeline.TrainConfig`), its
scores and curves from ``metrics.json``; nothing is recomputed. A from-scratch twin trains the
same architecture on the same photos, split and budget but from random weights, which shows what
the pretrained weights bring.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..io.confine import confined_or_none
from ..io.errors import TLError
from ..io.files import link_tree
from ..jobs.runner import job_meta, job_status, list_jobs, new_job_dir, start_job
from ..models.run_files import fine_tuned_layers, read_run_json

__all__ = ["run_history", "run_curves", "scratch_args", "start_scratch_run"]

_FINISHED = ("done", "stopped")


def _weights_label(weights) -> str:
    return "none" if weights is None else str(weights)


def run_history(jobs_dir: str | Path) -> list[dict]:
    """One row per finished (or stopped) run under ``jobs_dir``, newest first.

    Each row holds ``name``, ``run_dir``, ``kind`` (train, finetune, harden), ``scratch_of`` (the run a
    from-scratch twin copies, else None), ``parent`` (the name of the job whose run this one continues, as
    fine-tuning and hardening do: its history starts with that run's epochs; else None), ``backbone``,
    ``weights`` ("imagenet", "none" or a file), ``epochs``, ``batch_size``, ``lr``, ``dropout``,
    ``fine_tune_layers`` (0 when not fine-tuned), ``fine_tune_epochs``, ``fine_tune_lr``, ``seed``, ``augment``,
    ``epochs_run``, ``val_accuracy``, ``test_accuracy``, ``seconds`` and ``started`` (Unix time).
    """
    rows = []
    for job in list_jobs(jobs_dir):
        status = job_status(job)
        run = job / "run"
        if status["status"] not in _FINISHED or not (run / "config.json").is_file():
            continue
        config, metrics = read_run_json(run, "config.json", default={}), read_run_json(run, "metrics.json", default={})
        train = config.get("train") or {}
        tuned_layers = fine_tuned_layers(run)  # counted as every page counts them: the layers that learnt
        tuned = bool(tuned_layers)
        result = status.get("result") or {}
        rows.append({
            "name": job.name,
            "run_dir": str(run),
            "kind": status.get("kind", "train"),
            "scratch_of": status.get("scratch_of"),
            "parent": _parent_job(status.get("parent")),
            "backbone": config.get("backbone"),
            "weights": _weights_label(config.get("weights", train.get("weights"))),
            "epochs": train.get("epochs"),
            "batch_size": train.get("batch_size"),
            "lr": train.get("lr"),
            "dropout": train.get("dropout"),
            "fine_tune_layers": len(tuned_layers),
            "fine_tune_epochs": train.get("fine_tune_epochs") if tuned else None,
            "fine_tune_lr": train.get("fine_tune_lr") if tuned else None,
            "seed": train.get("seed"),
            "augment": bool(train.get("augment", False)),
            "epochs_run": len(metrics.get("history") or []),
            "val_accuracy": metrics.get("val_accuracy", result.get("val_accuracy")),
            "test_accuracy": metrics.get("test_accuracy", result.get("test_accuracy")),
            "seconds": (result.get("seconds") or metrics.get("seconds") or {}).get("total"),
            "started": status.get("started"),
        })
    return rows


def _parent_job(parent) -> str | None:
    """The job name of the run folder ``<jobs>/<job>/run`` that job.json names as a job's parent (a name, not the
    path: it is the same once the runs are saved as a project and opened elsewhere)."""
    if not isinstance(parent, str) or not parent:
        return None
    return Path(parent).parent.name or None


def run_curves(run_dir: str | Path) -> list[dict]:
    """The per-epoch logs of a run (``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``phase``).

    A fine-tuned run's history starts with its head epochs (its parent's, see ``parent`` in :func:`run_history`),
    so its curves are complete on their own; its own epochs are numbered on from its parent's.
    """
    return list(read_run_json(run_dir, "metrics.json", default={}).get("history") or [])


def _job_data(job_dir: Path) -> Path:
    """The photo snapshot a run was trained on: its job's ``data/``, or that of the run it continues.

    The parents named by ``job.json`` files (which may come from a project) are followed only inside
    the job's workspace, and a snapshot holding a link that leads out of it is refused: its photos are
    copied into the twin's job.
    """
    root = Path(job_dir).parent.parent  # <workspace>/jobs/<job>
    for _ in range(20):  # parents form a short chain; the bound only guards against a cycle
        job = confined_or_none(root, job_dir, "job")
        if job is None:
            break
        data = confined_or_none(root, job / "data")
        if data is not None and data.is_dir():
            _check_no_link_out(root, data, job.name)
            return data
        parent = confined_or_none(root, (job_meta(job) or {}).get("parent"), "parent run")
        if parent is None:
            break
        job_dir = parent.parent
    raise TLError(f"the photos that run {job_dir.name!r} was trained on are no longer there, "
                  "so it cannot be trained again from scratch")


def _check_no_link_out(root: Path, data: Path, job: str) -> None:
    for folder, dirs, files in os.walk(data):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink() and confined_or_none(root, path) is None:
                raise TLError(f"the photos of run {job!r} include {name!r}, a link leading outside this workspace, "
                              "so it cannot be trained again from scratch")


def _twin_config(run_dir: str | Path):
    """The :class:`~tlcore.training.pipeline.TrainConfig` of ``run_dir``'s from-scratch twin.

    The settings come from the run's ``config.json`` (which may come from a project), so they are checked
    as training checks them (:func:`tlcore.training.commands.config_from_settings`) before they make a command.
    """
    from ..training.commands import config_from_settings  # TensorFlow's import, only when a twin is made

    config = read_run_json(run_dir, "config.json", default={})
    train = config.get("train")
    if not isinstance(train, dict) or not config.get("backbone"):
        raise TLError(f"{str(run_dir)!r} has no training settings in its config.json, so it cannot be repeated")
    settings = config_from_settings({**train, "backbone": config["backbone"]},
                                    f"training settings of run {Path(run_dir).parent.name!r}")
    tuned = bool(config.get("fine_tuned")) and settings.fine_tune_layers > 0
    # Random weights, on this machine's default device; fine-tuning only when the run had some.
    return replace(settings, weights=None, strategy="default",
                   fine_tune_layers=settings.fine_tune_layers if tuned else 0)


def scratch_args(run_dir: str | Path, data: str | Path, out: str | Path) -> list[str]:
    """``tlcore train`` arguments for the from-scratch twin of ``run_dir``: its backbone, split, seed and
    budget (head epochs, and fine-tuning when it had some) with ``--weights none``, on ``data``, saved to ``out``."""
    from ..training.commands import train_args

    return train_args(_twin_config(run_dir), data, out)


def start_scratch_run(run_dir: str | Path, jobs_dir: str | Path) -> Path:
    """Start the from-scratch twin of ``run_dir`` as a background training job under ``jobs_dir``; its job folder.

    The photos are the run's own snapshot (hard links where possible), so the twin sees exactly
    the same images and, with the same seed, the same train/validation/test split.
    """
    from ..training.commands import train_args

    run_dir = Path(run_dir)
    data = _job_data(run_dir.parent)
    twin = _twin_config(run_dir)  # checks the run before a folder is made or anything copied
    job_dir = new_job_dir(jobs_dir, "scratch")
    args = train_args(twin, job_dir / "data", job_dir / "run")

    try:
        link_tree(data, job_dir / "data")
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    # Not "parent": that would make the twin's curves start with the pretrained run's epochs.
    return start_job(job_dir, args, kind="train", meta={"scratch_of": str(run_dir)})
