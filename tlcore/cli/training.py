"""``train``, ``finetune`` and ``learning-curve``: their options are the fields of
:class:`~tlcore.training.config.TrainConfig` and :class:`~tlcore.training.learning_curve.LearningCurveConfig`."""
from __future__ import annotations

import sys
from dataclasses import fields

from .options import add_settings, config_from_args, job_options, resume_option, tracking_of, tracking_option
from .progress import callbacks, phase_callback, resume_event, run_with_events

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub) -> None:
    """The ``train``, ``finetune`` and ``learning-curve`` commands."""
    from ..training.commands import FINETUNE_RENAMES
    from ..training.config import FINE_TUNE_SETTINGS, TrainConfig
    from ..training.learning_curve import CURVE_SETTINGS, LearningCurveConfig
    from ..training.ray_extract import ExecutorConfig

    p = sub.add_parser("train", help="train a classifier on a folder or zip of class folders")
    p.add_argument("data", help="folder of class folders, folder with train/ val/ [test/], or a .zip of either")
    p.add_argument("--out", required=True, help="run directory to write")
    add_settings(p, TrainConfig, [f.name for f in fields(TrainConfig)])
    add_settings(p, ExecutorConfig, [f.name for f in fields(ExecutorConfig)])  # where embeddings are computed
    tracking_option(p)
    resume_option(p)
    job_options(p)

    p = sub.add_parser("finetune", help="fine-tune a trained run: unfreeze the backbone's top layers")
    p.add_argument("run_dir")
    p.add_argument("--out", help="run directory to write (default: replace RUN_DIR)")
    add_settings(p, TrainConfig, FINE_TUNE_SETTINGS, renames=FINETUNE_RENAMES, suggested=["fine_tune_layers"])
    tracking_option(p)
    resume_option(p)
    job_options(p)

    p = sub.add_parser("learning-curve", help="will more photos help? validation accuracy of heads trained on "
                                              "growing shares of the training photos, fitted and extrapolated")
    p.add_argument("data", help="folder of class folders, folder with train/ val/ [test/], or a .zip of either")
    add_settings(p, LearningCurveConfig, CURVE_SETTINGS)
    job_options(p)


def _train(args):
    from ..lab.mlflow_tracking import log_training
    from ..training.config import TrainConfig
    from ..training.pipeline import train
    from ..training.ray_extract import ExecutorConfig, ray_address, spare_rule

    config = config_from_args(TrainConfig, args, [f.name for f in fields(TrainConfig)])
    uri = tracking_of(args)
    executor = config_from_args(ExecutorConfig, args, [f.name for f in fields(ExecutorConfig)])
    cluster = ray_address(executor)  # --ray, else $TLCORE_RAY_ADDRESS
    events, on_extract, on_epoch, should_stop = callbacks(args)
    on_phase = phase_callback(args, events)
    start = {"command": "train", "epochs": config.epochs,
             "fine_tune_epochs": config.fine_tune_epochs if config.fine_tune_layers else 0}
    resume_event(events, args, args.out, lambda found: len(found.history))
    return run_with_events(args, events, start, lambda: log_training(uri, "train", train(
        args.data, config, out=args.out, on_epoch=on_epoch, on_extract=on_extract, should_stop=should_stop,
        resume=args.resume, on_phase=on_phase, ray_address=cluster, ray_spare=spare_rule(executor)),
        on_phase=on_phase))


def _finetune(args):
    from ..lab.mlflow_tracking import log_training, run_digest_or_none
    from ..training.config import FINE_TUNE_SETTINGS, TrainConfig
    from ..training.pipeline import fine_tune

    config = config_from_args(TrainConfig, args, FINE_TUNE_SETTINGS)
    uri = tracking_of(args)
    events, _, on_epoch, should_stop = callbacks(args)
    on_phase = phase_callback(args, events)
    start = {"command": "finetune", "epochs": 0, "fine_tune_epochs": config.fine_tune_epochs}
    # Fine-tuning checkpoints count only fine-tuning epochs, which is all this command runs.
    resume_event(events, args, args.out or args.run_dir, lambda found: found.epochs_done)

    def work():
        # The parent's MLflow run is found by its folder's digest, taken before fine-tuning may replace the folder.
        parent = run_digest_or_none(args.run_dir) if uri else None
        result = fine_tune(args.run_dir, config, out=args.out, on_epoch=on_epoch, should_stop=should_stop,
                           resume=args.resume, on_phase=on_phase)
        return log_training(uri, "finetune", result, parent_digest=parent, on_phase=on_phase)

    return run_with_events(args, events, start, work)


def _print_curve(r) -> None:
    """A learning curve for a person: one line per share, the fit's promise, the class that gains most."""
    for s in r["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    print(f"validation accuracy on {r['n_val']} photos, {r['repeats']} head(s) per share ({r['backbone']}):")
    print(f"{'share':>6} {'photos/class':>12} {'accuracy':>9} {'std':>6}")
    for p in r["points"]:
        print(f"{p['fraction']:>6.0%} {p['photos_per_class']:>12g} {p['val_accuracy']:>9.1%} {p['std']:>6.1%}")
    x = r["extrapolation"]
    print(f"with twice the photos ({x['more_photos_per_class']:g} per class), expect about "
          f"{x['expected_accuracy']:.1%} (now {x['accuracy']:.1%}; fit: {x['method'].replace('_', ' ')})")
    if x["class_gaining_most"] is not None:
        print(f"the class that would gain most from more photos: {x['class_gaining_most']} "
              f"(+{x['class_gain'] * 100:.1f} points)")
    else:
        print("no class is expected to gain half a point or more from more photos")
    print(f"{r['seconds']['total']:.1f} s ({r['cache_hits']} embeddings from the cache, {r['computed']} computed)")


def _learning_curve(args):
    from ..training.learning_curve import CURVE_SETTINGS, LearningCurveConfig, learning_curve

    config = config_from_args(LearningCurveConfig, args, CURVE_SETTINGS)
    events, on_extract, _, should_stop = callbacks(args)
    return run_with_events(args, events, {"command": "learning-curve", "repeats": config.repeats,
                                          "fractions": list(config.fractions)}, lambda: learning_curve(
        args.data, config, on_extract=on_extract, on_phase=phase_callback(args, events), should_stop=should_stop),
        _print_curve)


COMMANDS = {"train": _train, "finetune": _finetune, "learning-curve": _learning_curve}
