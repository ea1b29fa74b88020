"""Resume a training job whose worker died (killed, out of memory, server restarted) from its checkpoint.

The command is rebuilt, never read back: ``job.json`` may come from a project ZIP, so neither a stored
command line nor a path in it is an authority. What resuming runs follows from the job folder's own
layout (``<job>/data`` the photos, ``<job>/run`` the run being written, its checkpoint beside it) and
from the checkpoint's settings, checked as training checks them (:func:`tlcore.training.commands.config_from_settings`).
A fine-tuning job continues the parent run its ``job.json`` names only when that is a run of another
job in the same ``jobs/`` folder.
"""
from __future__ import annotations

from pathlib import Path

from .checkpoint import checkpoint_dir, load_checkpoint
from .commands import config_from_settings, finetune_args, train_args
from ..io.confine import confine
from ..io.errors import TLError
from ..jobs.folder import job_path
from ..jobs.runner import job_meta, job_status, start_job

__all__ = ["resume_point", "resumable", "resume_job"]

_RESUMABLE = ("train", "finetune")  # the commands that checkpoint each epoch
_RESTARTED = ("result.json", "STOP")  # what the new worker writes again


def _folder(jobs: Path, path: Path, what: str, name: str) -> Path:
    """``path`` (inside the job's ``jobs/`` after resolving links) as the job names it, or TLError."""
    try:
        confine(jobs, path, what)
    except TLError:
        raise TLError(f"the {what} of job {name!r} leads outside its workspace, so it cannot be resumed") from None
    return path


def _parent_run(job: Path, meta: dict) -> Path:
    """The run a fine-tuning job continues: a run of another job in the same ``jobs/`` folder."""
    jobs = job.parent
    parent = job_path(jobs.parent, meta.get("parent"), "parent run")  # relative values are to the workspace
    if parent is not None:
        try:
            confine(jobs, parent, "parent run")
        except TLError:
            parent = None
    if parent is None or parent.parent.resolve() == job.resolve() or not (parent / "config.json").is_file():
        raise TLError(f"the run that job {job.name!r} fine-tunes is not a run of this workspace, "
                      "so it cannot be resumed")
    return parent


def _plan(job_dir: str | Path) -> tuple[str, list[str], int]:
    """What resuming ``job_dir`` runs: (kind, arguments, epochs kept), or :class:`TLError` saying why it cannot."""
    job = Path(job_dir).absolute()
    status = job_status(job)
    if status.get("status") != "failed":
        raise TLError(f"the job {job.name!r} cannot be resumed: it has not failed")
    kind = status.get("kind")
    if kind not in _RESUMABLE:
        raise TLError(f"the job {job.name!r} cannot be resumed: {kind!r} jobs keep no checkpoint")
    jobs = job.parent
    _folder(jobs, job, "folder", job.name)
    out = _folder(jobs, job / "run", "run folder", job.name)
    folder = _folder(jobs, checkpoint_dir(out), "checkpoint", job.name)
    found = load_checkpoint(folder)
    _folder(jobs, folder, "checkpoint", job.name)  # loading may have put back an older version of it
    if found is None:
        raise TLError(f"the job {job.name!r} cannot be resumed: it left no checkpoint")
    config = config_from_settings(found.state["settings"], f"settings of the checkpoint of job {job.name!r}")
    if config.weights not in ("imagenet", None):  # a path from the file: only the two kinds pages start
        raise TLError(f"the checkpoint of job {job.name!r} names the weights file {config.weights!r}; "
                      "only runs from ImageNet or random weights are resumed here")
    try:
        # A fine-tuning checkpoint's history starts with its run's head epochs, which it did not train.
        kept = found.epochs_done if kind == "finetune" else len(found.history)
    except (TypeError, ValueError):
        raise TLError(f"the checkpoint of job {job.name!r} is damaged; train again") from None
    if kind == "finetune":
        args = finetune_args(config, _parent_run(job, status), out)
    else:
        data = _folder(jobs, job / "data", "photos", job.name)
        if not data.is_dir():
            raise TLError(f"the photos job {job.name!r} was trained on are gone, so it cannot be resumed")
        args = train_args(config, data, out)
    return kind, [*args, "--resume"], kept


def resume_point(job_dir: str | Path) -> int | None:
    """Epochs a failed training job completed and checkpointed (what resuming keeps), or None when it cannot resume."""
    try:
        return _plan(job_dir)[2]
    except TLError:
        return None


def resumable(job_dir: str | Path) -> bool:
    """Whether ``job_dir`` is a failed training job that left a checkpoint to continue from."""
    return resume_point(job_dir) is not None


def resume_job(job_dir: str | Path) -> Path:
    """Start the job in ``job_dir`` again with ``--resume``; it continues from its last completed epoch.

    :class:`TLError` says why it cannot (not failed, no checkpoint, settings or paths refused, or the
    job caps of :func:`tlcore.jobs.runner.start_job`); then the job is left as it was.
    """
    job_dir = Path(job_dir)
    kind, args, _ = _plan(job_dir)
    meta = job_meta(job_dir) or {}
    extra = {k: v for k, v in meta.items() if k not in ("kind", "argv", "pid", "started", "resumed")}
    kept = {name: (job_dir / name).read_bytes() for name in _RESTARTED if (job_dir / name).is_file()}
    for name in kept:
        (job_dir / name).unlink()
    try:
        return start_job(job_dir, args, kind=kind, meta={**extra, "resumed": True})
    except TLError:
        for name, data in kept.items():  # refused (a cap): the job still reads as it did
            (job_dir / name).write_bytes(data)
        raise
