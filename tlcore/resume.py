"""Resume a training job whose worker died (killed, out of memory, server restarted) from its checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import checkpoint_dir, load_checkpoint
from .errors import TLError
from .jobs import job_status, start_job

__all__ = ["resume_point", "resumable", "resume_job"]

_RESUMABLE = ("train", "finetune")  # the commands that checkpoint each epoch


def _job_args(meta: dict) -> list[str]:
    """The job's own arguments: ``argv`` minus the interpreter prefix and the options start_job adds."""
    argv = list(meta.get("argv", []))[3:]  # python -m tlcore
    for option in ("--progress", "--stop-file"):
        if option in argv:
            i = argv.index(option)
            del argv[i:i + 2]
    return [a for a in argv if a != "--json"]


def _out_of(args: list[str]) -> str | None:
    if "--out" in args and args.index("--out") + 1 < len(args):
        return args[args.index("--out") + 1]
    if args and args[0] == "finetune" and len(args) > 1:
        return args[1]  # fine-tuning without --out replaces its run
    return None


def resume_point(job_dir: str | Path) -> int | None:
    """Epochs a failed training job completed and checkpointed (what resuming keeps), or None when it cannot resume."""
    status = job_status(job_dir)
    if status.get("status") != "failed":
        return None
    args = _job_args(status)
    out = _out_of(args)
    if not args or args[0] not in _RESUMABLE or out is None:
        return None
    try:
        found = load_checkpoint(checkpoint_dir(out))
    except TLError:
        return None
    if found is None:
        return None
    # A fine-tuning job's checkpoint history starts with its run's head epochs, which it did not train.
    return found.epochs_done if args[0] == "finetune" else len(found.history)


def resumable(job_dir: str | Path) -> bool:
    """Whether ``job_dir`` is a failed training job that left a checkpoint to continue from."""
    return resume_point(job_dir) is not None


def resume_job(job_dir: str | Path) -> Path:
    """Start the job in ``job_dir`` again with ``--resume``; it continues from its last completed epoch."""
    job_dir = Path(job_dir)
    if not resumable(job_dir):
        raise TLError(f"the job {job_dir.name!r} cannot be resumed: it has not failed or left no checkpoint")
    meta = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    args = _job_args(meta)
    if "--resume" not in args:
        args.append("--resume")
    for stale in ("result.json", "STOP"):  # the new worker writes its own
        (job_dir / stale).unlink(missing_ok=True)
    extra = {k: v for k, v in meta.items() if k not in ("kind", "argv", "pid", "started")}
    return start_job(job_dir, args, kind=meta.get("kind", "train"), meta={**extra, "resumed": True})
