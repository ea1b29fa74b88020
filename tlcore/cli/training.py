"""``train`` and ``finetune``: their options are :class:`~tlcore.training.config.TrainConfig`'s fields."""
from __future__ import annotations

from dataclasses import fields

from .options import add_settings, config_from_args, job_options, resume_option
from .progress import callbacks, phase_callback, resume_event, run_with_events

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub) -> None:
    """The ``train`` and ``finetune`` commands."""
    from ..training.commands import FINETUNE_RENAMES
    from ..training.config import FINE_TUNE_SETTINGS, TrainConfig

    p = sub.add_parser("train", help="train a classifier on a folder or zip of class folders")
    p.add_argument("data", help="folder of class folders, folder with train/ val/ [test/], or a .zip of either")
    p.add_argument("--out", required=True, help="run directory to write")
    add_settings(p, TrainConfig, [f.name for f in fields(TrainConfig)])
    resume_option(p)
    job_options(p)

    p = sub.add_parser("finetune", help="fine-tune a trained run: unfreeze the backbone's top layers")
    p.add_argument("run_dir")
    p.add_argument("--out", help="run directory to write (default: replace RUN_DIR)")
    add_settings(p, TrainConfig, FINE_TUNE_SETTINGS, renames=FINETUNE_RENAMES, suggested=["fine_tune_layers"])
    resume_option(p)
    job_options(p)


def _train(args):
    from ..training.config import TrainConfig
    from ..training.pipeline import train

    config = config_from_args(TrainConfig, args, [f.name for f in fields(TrainConfig)])
    events, on_extract, on_epoch, should_stop = callbacks(args)
    start = {"command": "train", "epochs": config.epochs,
             "fine_tune_epochs": config.fine_tune_epochs if config.fine_tune_layers else 0}
    resume_event(events, args, args.out, lambda found: len(found.history))
    return run_with_events(args, events, start, lambda: train(
        args.data, config, out=args.out, on_epoch=on_epoch, on_extract=on_extract, should_stop=should_stop,
        resume=args.resume, on_phase=phase_callback(args, events)))


def _finetune(args):
    from ..training.config import FINE_TUNE_SETTINGS, TrainConfig
    from ..training.pipeline import fine_tune

    config = config_from_args(TrainConfig, args, FINE_TUNE_SETTINGS)
    events, _, on_epoch, should_stop = callbacks(args)
    start = {"command": "finetune", "epochs": 0, "fine_tune_epochs": config.fine_tune_epochs}
    # Fine-tuning checkpoints count only fine-tuning epochs, which is all this command runs.
    resume_event(events, args, args.out or args.run_dir, lambda found: found.epochs_done)
    return run_with_events(args, events, start, lambda: fine_tune(
        args.run_dir, config, out=args.out, on_epoch=on_epoch, should_stop=should_stop, resume=args.resume,
        on_phase=phase_callback(args, events)))


COMMANDS = {"train": _train, "finetune": _finetune}
