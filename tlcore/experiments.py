"""Run history and comparisons: every finished run's settings and scores, and its from-scratch twin.

A run's settings come from its ``config.json`` (the full :class:`~tlcore.train.TrainConfig`), its
scores and curves from ``metrics.json``; nothing is recomputed. A from-scratch twin trains the
same architecture on the same photos, split and budget but from random weights, which shows what
the pretrained weights bring.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .errors import TLError
from .jobs import job_status, list_jobs, start_job

__all__ = ["run_history", "run_curves", "scratch_args", "start_scratch_run"]

_FINISHED = ("done", "stopped")


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _weights_label(weights) -> str:
    return "none" if weights is None else str(weights)


def run_history(jobs_dir: str | Path) -> list[dict]:
    """One row per finished (or stopped) run under ``jobs_dir``, newest first.

    Each row holds ``name``, ``run_dir``, ``kind`` (train, finetune, harden), ``scratch_of`` (the run a
    from-scratch twin copies, else None), ``backbone``, ``weights`` ("imagenet", "none" or a file),
    ``epochs``, ``batch_size``, ``lr``, ``dropout``, ``fine_tune_layers`` (0 when not fine-tuned),
    ``fine_tune_epochs``, ``fine_tune_lr``, ``seed``, ``augment``, ``epochs_run``, ``val_accuracy``,
    ``test_accuracy``, ``seconds`` and ``started`` (Unix time).
    """
    rows = []
    for job in list_jobs(jobs_dir):
        status = job_status(job)
        run = job / "run"
        if status["status"] not in _FINISHED or not (run / "config.json").is_file():
            continue
        config, metrics = _json(run / "config.json"), _json(run / "metrics.json")
        train = config.get("train") or {}
        tuned = bool(config.get("fine_tuned")) and int(train.get("fine_tune_layers") or 0) > 0
        result = status.get("result") or {}
        rows.append({
            "name": job.name,
            "run_dir": str(run),
            "kind": status.get("kind", "train"),
            "scratch_of": status.get("scratch_of"),
            "backbone": config.get("backbone"),
            "weights": _weights_label(config.get("weights", train.get("weights"))),
            "epochs": train.get("epochs"),
            "batch_size": train.get("batch_size"),
            "lr": train.get("lr"),
            "dropout": train.get("dropout"),
            "fine_tune_layers": int(train.get("fine_tune_layers") or 0) if tuned else 0,
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


def run_curves(run_dir: str | Path) -> list[dict]:
    """The per-epoch logs of a run (``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``phase``).

    A fine-tuned run's history starts with its head epochs, so its curves are complete on their own.
    """
    return list(_json(Path(run_dir) / "metrics.json").get("history") or [])


def _job_data(job_dir: Path) -> Path:
    """The photo snapshot a run was trained on: its job's ``data/``, or that of the run it continues."""
    for _ in range(20):  # parents form a short chain; the bound only guards against a cycle
        if (job_dir / "data").is_dir():
            return job_dir / "data"
        parent = _json(job_dir / "job.json").get("parent")
        if not parent:
            break
        job_dir = Path(parent).parent
    raise TLError(f"the photos that run {job_dir.name!r} was trained on are no longer there, "
                  "so it cannot be trained again from scratch")


def scratch_args(run_dir: str | Path, data: str | Path, out: str | Path) -> list[str]:
    """``tlcore train`` arguments for the from-scratch twin of ``run_dir``: its backbone, split, seed and
    budget (head epochs, and fine-tuning when it had some) with ``--weights none``, on ``data``, saved to ``out``."""
    config = _json(Path(run_dir) / "config.json")
    train = config.get("train")
    if not isinstance(train, dict) or not config.get("backbone"):
        raise TLError(f"{str(run_dir)!r} has no training settings in its config.json, so it cannot be repeated")
    split = ",".join(str(float(v)) for v in train.get("split", (0.8, 0.1, 0.1)))
    args = ["train", str(data), "--out", str(out), "--backbone", str(config["backbone"]), "--weights", "none",
            "--epochs", str(train.get("epochs", 20)), "--batch-size", str(train.get("batch_size", 32)),
            "--lr", str(train.get("lr", 1e-3)), "--dropout", str(train.get("dropout", 0.2)),
            "--split", split, "--seed", str(train.get("seed", 0)),
            "--class-weights", str(train.get("class_weights", "auto"))]
    if config.get("fine_tuned") and int(train.get("fine_tune_layers") or 0) > 0:
        args += ["--fine-tune-layers", str(train["fine_tune_layers"]),
                 "--fine-tune-epochs", str(train.get("fine_tune_epochs", 5)),
                 "--fine-tune-lr", str(train.get("fine_tune_lr", 1e-5)), "--patience", str(train.get("patience", 3))]
    if train.get("augment"):
        args += ["--augment", "--augment-copies", str(train.get("augment_copies", 2))]
        if train.get("augment_strength") is not None:
            args += ["--augment-strength", str(train["augment_strength"])]
    # Settings newer runs record; older runs' configs lack them and keep the defaults.
    if train.get("resample") not in (None, "none"):
        args += ["--resample", str(train["resample"])]
    if train.get("early_stopping") is False:
        args.append("--no-early-stopping")
    if train.get("loop") not in (None, "fit"):
        args += ["--loop", str(train["loop"])]
    if train.get("clip_norm") is not None:
        args += ["--clip-norm", str(train["clip_norm"])]
    return args


def start_scratch_run(run_dir: str | Path, jobs_dir: str | Path) -> Path:
    """Start the from-scratch twin of ``run_dir`` as a background training job under ``jobs_dir``; its job folder.

    The photos are the run's own snapshot (hard links where possible), so the twin sees exactly
    the same images and, with the same seed, the same train/validation/test split.
    """
    run_dir = Path(run_dir)
    data = _job_data(run_dir.parent)
    jobs_dir = Path(jobs_dir)
    stamp = time.strftime("scratch-%Y%m%d-%H%M%S")
    job_dir, n = jobs_dir / stamp, 1
    while job_dir.exists():
        job_dir, n = jobs_dir / f"{stamp}-{n}", n + 1
    args = scratch_args(run_dir, job_dir / "data", job_dir / "run")  # checks the run before copying anything

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(data, job_dir / "data", copy_function=link)
    # Not "parent": that would make the twin's curves start with the pretrained run's epochs.
    return start_job(job_dir, args, kind="train", meta={"scratch_of": str(run_dir)})
