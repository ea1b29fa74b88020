"""Command line: ``python -m tlcore backbones|train|finetune|evaluate|predict|export|attack``.

With ``--json`` the last line of stdout is one JSON object (or list). Errors
a user can cause exit with status 2 and one line on stderr; anything else
exits with status 1, one line on stderr, and the traceback in the log file.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .io.errors import TLError
from .io.paths import default_cache_dir

__all__ = ["main", "route_native_stderr", "log_path"]

log = logging.getLogger("tlcore")


_PROG = "python -m tlcore"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        command = self.prog[len(_PROG):].strip() if self.prog.startswith(_PROG) else ""
        raise TLError(f"{message} (see {_PROG} {command} --help)".replace("  ", " "))


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (Keras and OS messages can span several)."""
    return " ".join(str(exc).split())


def _split(text: str):
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"split {text!r} must be three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"split {text!r} must be three numbers like 0.8,0.1,0.1")
    return parts


def _weights(text: str):
    return None if text.lower() in ("none", "random", "scratch") else text


def _strategy_option(p) -> None:
    from .training.distribute import STRATEGIES

    p.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="where fine-tuning runs: this device, mirrored (every GPU of this machine) or multi-worker "
                        "(the machines in TF_CONFIG); --batch-size is then split across the replicas")


def _alarm_options(p, d) -> None:
    # Values are checked by TrainConfig's validation, so the error repeats the bad value in one sentence.
    p.add_argument("--augment-strength", type=float, default=d.augment_strength,
                   help=f"brightness/contrast/saturation range of --augment (default {d.augment_strength:g})")
    p.add_argument("--resample", default=d.resample,
                   help="rebalance the training images: none, oversample or undersample")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="fine-tune for all epochs, without stopping when validation loss stops improving")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=_PROG, description="Transfer Lab: transfer learning for image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("backbones", help="list the available backbones")
    p.add_argument("--json", action="store_true")

    from .backbones.registry import DEFAULT_BACKBONE
    from .training.config import LOOPS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a classifier on a folder or zip of class folders")
    p.add_argument("data", help="folder of class folders, folder with train/ val/ [test/], or a .zip of either")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--weights", type=_weights, default="imagenet", help="imagenet, none (random) or a weights file")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--split", type=_split, default=d.split, help="train,val,test fractions when the data has no splits")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--class-weights", choices=("auto", "balanced", "none"), default=d.class_weights)
    p.add_argument("--fine-tune-layers", type=int, default=d.fine_tune_layers)
    p.add_argument("--fine-tune-epochs", type=int, default=d.fine_tune_epochs)
    p.add_argument("--fine-tune-lr", type=float, default=d.fine_tune_lr)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--augment", action="store_true", help="flip and brightness/contrast/saturation ±strength")
    p.add_argument("--augment-copies", type=int, default=d.augment_copies)
    p.add_argument("--input-size", type=int, default=d.input_size, metavar="PX",
                   help="side of the square input in pixels (default: the backbone's own, 224 for Lite0); "
                        "smaller is faster and less accurate")
    _alarm_options(p, d)
    p.add_argument("--loop", choices=LOOPS, default=d.loop,
                   help="how the head is trained: fit (fast, vectorised) or tape (a tf.GradientTape step loop "
                        "that can clip gradients)")
    p.add_argument("--clip-norm", type=float, default=d.clip_norm, metavar="X",
                   help="with --loop tape: scale each step's gradients down to a global norm of at most X")
    _strategy_option(p)
    _resume_option(p)
    _job_options(p)

    p = sub.add_parser("finetune", help="fine-tune a trained run: unfreeze the backbone's top layers")
    p.add_argument("run_dir")
    p.add_argument("--out", help="run directory to write (default: replace RUN_DIR)")
    p.add_argument("--layers", type=int, default=20, help="how many top backbone layers to unfreeze")
    p.add_argument("--lr", "--fine-tune-lr", dest="lr", type=float, default=d.fine_tune_lr)
    p.add_argument("--epochs", type=int, default=d.fine_tune_epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--augment", action="store_true")
    _alarm_options(p, d)
    _strategy_option(p)
    _resume_option(p)
    _job_options(p)

    p = sub.add_parser("evaluate", help="evaluate a run (or an exported .keras or .tflite) on labelled data")
    p.add_argument("run_dir", metavar="MODEL",
                   help="run directory, .keras file, or .tflite file with labels.txt beside it "
                        "(pickles and full-model .h5 files are refused: they can run code)")
    p.add_argument("data")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="classify images with a run or an exported .keras or .tflite")
    p.add_argument("run_dir", metavar="MODEL",
                   help="run directory, .keras file, or .tflite file with labels.txt beside it "
                        "(pickles and full-model .h5 files are refused: they can run code)")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--threshold", type=_threshold, metavar="P",
                   help="answer 'unknown' when the top probability is below P (0 to 1; the Predict page suggests "
                        "one from the run's validation photos)")
    p.add_argument("--json", action="store_true")

    from .export.formats import FORMATS, ExportConfig

    e = ExportConfig()
    p = sub.add_parser("export", help="export a run to TFLite, .keras or SavedModel, checked against Keras")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, type=_formats,
                   help=f"{'|'.join(FORMATS)}; several separated by commas write into the folder --out")
    p.add_argument("--out", required=True, help="file to write (a folder for saved-model or several formats)")
    p.add_argument("--calibration", metavar="DATA", help="INT8 calibration images (default: the run's training split)")
    p.add_argument("--calibration-samples", type=int, default=e.calibration_samples, metavar="N",
                   help="how many calibration images (100-500 recommended)")
    p.add_argument("--int8-io", action="store_true", help="INT8 model with uint8 input and output")
    p.add_argument("--verify", metavar="DATA", help="labelled data to compare the TFLite model with Keras on")
    p.add_argument("--verify-held-out", action="store_true",
                   help="compare on the run's own test split (validation split if it has no test split)")
    p.add_argument("--bundle", metavar="ZIP", help="also write a ZIP with the TFLite files, labels, model card and example")
    p.add_argument("--seed", type=int, default=e.seed)
    _job_options(p)

    from .adversarial.attacks import METHODS, AttackConfig

    a = AttackConfig()
    p = sub.add_parser("attack", help="attack a run's model with adversarial perturbations (FGSM or PGD)")
    p.add_argument("run_dir")
    p.add_argument("data", help="folder (or .zip) of class folders")
    p.add_argument("--method", choices=METHODS, default=a.method)
    p.add_argument("--epsilon", type=float, default=a.epsilon, help="largest change per pixel, as a fraction of 0..255")
    p.add_argument("--steps", type=int, default=a.steps, help="PGD steps")
    p.add_argument("--step-size", type=float, default=None, help="PGD step, fraction of 0..255 (default 2.5*eps/steps)")
    p.add_argument("--target", metavar="CLASS", help="targeted attack: push every image towards CLASS")
    p.add_argument("--no-random-start", action="store_true", help="PGD starts from the image itself")
    p.add_argument("--seed", type=int, default=a.seed)
    p.add_argument("--out", metavar="DIR", help="save the adversarial images (PNG, per true class)")
    _job_options(p)

    from .adversarial.defence import DEFAULT_EPSILONS, HardenConfig

    h = HardenConfig()
    epsilons = ",".join(f"{e:g}" for e in DEFAULT_EPSILONS)
    p = sub.add_parser("robustness", help="accuracy against epsilon (FGSM and PGD) on a run's held-out images")
    p.add_argument("run_dir")
    p.add_argument("--epsilons", type=_floats, default=list(DEFAULT_EPSILONS), help=f"default {epsilons}")
    p.add_argument("--steps", type=int, default=h.curve_steps, help="PGD steps")
    p.add_argument("--limit", type=int, default=h.curve_images, help="at most this many held-out images")
    _job_options(p)

    p = sub.add_parser("harden", help="adversarial training of a run's head (FGSM images mixed in), curves before/after")
    p.add_argument("run_dir")
    p.add_argument("--out", help="run directory to write (default: RUN_DIR-hardened)")
    p.add_argument("--epsilon", type=float, default=h.epsilon)
    p.add_argument("--epochs", type=int, default=h.epochs)
    p.add_argument("--lr", type=float, default=h.lr)
    p.add_argument("--epsilons", type=_floats, default=list(DEFAULT_EPSILONS), help=f"curve points, default {epsilons}")
    p.add_argument("--curve-images", type=int, default=h.curve_images)
    p.add_argument("--curve-steps", type=int, default=h.curve_steps)
    _job_options(p)

    p = sub.add_parser("ideal", help="grow the image a run's model finds most typical of a class")
    p.add_argument("run_dir")
    p.add_argument("--class", dest="class_name", required=True, metavar="CLASS")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--tv-weight", type=float, default=1000.0, help="total-variation penalty (smoothness)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the snapshots (PNG) and the final image")
    _job_options(p)

    p = sub.add_parser("bench", help="measure extraction speed, head training, TFLite latency and memory on DATA")
    p.add_argument("data", help="folder (or .zip) of class folders, as for train")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("check", help="check a dataset's health: counts, duplicates, leaks across splits, imbalance, bias")
    p.add_argument("data", help="folder of class folders, folder with train/ val/ [test/], or a .zip of either")
    p.add_argument("--split", type=_split, default=d.split, help="train,val,test fractions, as given to train")
    p.add_argument("--seed", type=int, default=d.seed, help="split seed, as given to train")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("leaderboard", help="score every backbone available here on DATA: accuracy, size and speed")
    p.add_argument("data", help="folder (or .zip) of class folders, as for train")
    p.add_argument("--backbones", type=_names, help="backbones to compare, separated by commas (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of the heads")
    _job_options(p)
    p = sub.add_parser("project", help="save a workspace as a project, open a project into one, or list its runs")
    p.add_argument("action", choices=("save", "open", "runs"))
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="save WORKSPACE DEST | open PROJECT WORKSPACE (a folder or .zip) | runs WORKSPACE")
    p.add_argument("--name", help="project name (save; default: the folder's name)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("gc", help="free disk: remove idle sessions and trim the shared caches to their limit")
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    p.add_argument("--json", action="store_true")
    return parser


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be numbers separated by commas, like 0,0.01,0.03") from None


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold {text!r} must be a number between 0 and 1, like 0.7")
    return value


def _formats(text: str) -> list[str]:
    from .export.formats import FORMATS

    names = [name.lower() for name in _names(text)]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown format {bad[0] if bad else text!r}; choose from {', '.join(FORMATS)}")
    return names


def _resume_option(p) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last completed epoch (same command and settings)")


def _resume_event(events, args, out, kept) -> None:
    """Tell a following page which epochs the resumed run keeps (its curves restart from them).

    ``kept(checkpoint)`` is how many of them this command itself had completed.
    """
    if events and args.resume and out:
        from .training.checkpoint import checkpoint_dir, load_checkpoint

        found = load_checkpoint(checkpoint_dir(out))
        if found is not None:
            events({"type": "resume", "history": found.history, "done": kept(found)})


def _job_options(p) -> None:
    p.add_argument("--progress", metavar="FILE", help="append progress events (JSON lines) to FILE")
    p.add_argument("--stop-file", metavar="FILE", help="stop after the current epoch once FILE exists")
    p.add_argument("--json", action="store_true")


def _cmd_backbones(args):
    from dataclasses import asdict

    from .backbones.registry import get_spec, list_backbones

    rows = [asdict(get_spec(name)) for name in list_backbones()]
    if not args.json:
        print(f"{'name':<20} {'input':>5} {'features':>8} {'params':>12} {'top-1':>6}  weights")
        for r in rows:
            print(f"{r['name']:<20} {r['input_size']:>5} {r['feature_dim']:>8} {r['params']:>12,} "
                  f"{r['imagenet_top1']:>6.1%}  {'offline' if r['offline'] else 'download'}")
    return rows


_open_progress_line = [False]  # a \r progress line is on the terminal, without its newline


def _clear_progress_line() -> None:
    if _open_progress_line[0]:
        print("\r\033[K", end="", file=sys.stderr)
        _open_progress_line[0] = False


def _callbacks(args):
    """Progress for the terminal (unless --json) and for --progress; the stop test for --stop-file."""
    from .jobs.runner import EventWriter

    events = EventWriter(args.progress) if args.progress else None
    quiet = args.json

    def on_extract(done, total):
        if events:
            events({"type": "extract", "done": done, "total": total})
        if quiet:
            return
        # A line redrawn with \r only on a terminal; elsewhere one line at the end. Either way an
        # error that interrupts extraction is not glued to an unfinished progress line.
        if sys.stderr.isatty():
            print(f"\rfeatures {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
            _open_progress_line[0] = done != total
        elif done == total:
            print(f"features {done}/{total}", file=sys.stderr, flush=True)

    def on_epoch(epoch, logs):
        if events:
            events({"type": "epoch", **logs})
        if not quiet:
            extra = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in ("epoch", "phase"))
            print(f"{logs['phase']:<9} epoch {epoch:>3}  {extra}", file=sys.stderr, flush=True)

    should_stop = (lambda: Path(args.stop_file).exists()) if args.stop_file else None
    return events, on_extract, on_epoch, should_stop


def _report_run(result, out) -> None:
    for w in result["warnings"]:
        print(f"warning: {w['message']}", file=sys.stderr)
    for s in result["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    test = "n/a" if result["test_accuracy"] is None else f"{result['test_accuracy']:.3f}"
    val = "n/a" if result["val_accuracy"] is None else f"{result['val_accuracy']:.3f}"
    print(f"classes {', '.join(result['classes'])}; train {result['n_train']}, val {result['n_val']}, "
          f"test {result['n_test']}; val accuracy {val}, test accuracy {test}; "
          f"{result['seconds']['total']:.1f} s; saved to {out}")


_HELD: list = []  # the job slot this worker process took before parsing (see _wait_for_slot)


def _release_slot() -> None:
    while _HELD:
        _HELD.pop().release()


def _wait_for_slot(argv) -> int | None:
    """As a job (``--progress``), wait for a running slot before anything imports TensorFlow.

    Runs before the full parser, whose options' defaults come from modules that import TensorFlow:
    a waiting worker is a small Python process. A worker started by :func:`tlcore.jobs.runner.start_job`
    inherits the places it was admitted with (:func:`tlcore.jobs.slots.wait_turn`); one started by hand
    queues for a server slot only. While waiting it writes ``waiting`` events; a stop while waiting
    ends the command without work. Returns the exit status when the command ends here, else None.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--progress")
    pre.add_argument("--stop-file")
    pre.add_argument("--json", action="store_true")
    known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not known.progress:
        return None
    from .jobs import slots
    from .jobs.runner import EventWriter

    events = EventWriter(known.progress)

    def on_wait(position, n):
        events({"type": "waiting", "position": position, "slots": n})

    stop = (lambda: Path(known.stop_file).exists()) if known.stop_file else None
    try:
        admission = slots.Admission.from_environment()
        if admission is not None:
            held = slots.wait_turn(admission, on_wait=on_wait, should_stop=stop)
        else:
            held = slots.acquire(on_wait=on_wait, should_stop=stop)
    except TLError as exc:  # a bad TLCORE_MAX_JOBS: the page shows why the job failed
        events({"type": "error", "message": _one_line(exc)})
        raise
    if held is None:
        # Nothing ran, so no result to report; the job reads as stopped (its STOP file exists).
        events({"type": "done", "result": {}, "started": False})
        if known.json:
            print(json.dumps({}))
        else:
            print("stopped while waiting for a free job slot; nothing was run", file=sys.stderr)
        return 0
    _HELD.append(held)
    return None


def _run_with_events(args, events, start: dict, work, report=None):
    """Run ``work()`` bracketed by start and done/error events (what a following page reads).

    Unless ``--json``, ``report(result)`` prints the human summary (default: a training run's).
    As a job, the worker already holds its slot (:func:`_wait_for_slot`); it gives it back as soon as
    the work ends, so the next job in line may start while this one reports.
    """
    if events:
        events({"type": "start", **start})
    try:
        result = work()
    except Exception as exc:
        if events:
            events({"type": "error", "message": _one_line(exc) if isinstance(exc, TLError) else "internal error"})
        raise
    finally:
        _release_slot()
    if events:
        events({"type": "done", "result": result})
    if not args.json:
        (report or (lambda r: _report_run(r, r.get("run_dir"))))(result)
    return result


def _cmd_train(args):
    from dataclasses import fields

    from .training.config import TrainConfig
    from .training.pipeline import train

    # Every TrainConfig field is a train option of the same name (tlcore.training.commands.TRAIN_OPTIONS).
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    events, on_extract, on_epoch, should_stop = _callbacks(args)
    start = {"command": "train", "epochs": config.epochs,
             "fine_tune_epochs": config.fine_tune_epochs if config.fine_tune_layers else 0}
    _resume_event(events, args, args.out, lambda found: len(found.history))
    return _run_with_events(args, events, start, lambda: train(
        args.data, config, out=args.out, on_epoch=on_epoch, on_extract=on_extract, should_stop=should_stop,
        resume=args.resume))


def _cmd_finetune(args):
    from .training.config import TrainConfig
    from .training.pipeline import fine_tune

    config = TrainConfig(fine_tune_layers=args.layers, fine_tune_lr=args.lr, fine_tune_epochs=args.epochs,
                         patience=args.patience, batch_size=args.batch_size, augment=args.augment,
                         strategy=args.strategy, augment_strength=args.augment_strength, resample=args.resample,
                         early_stopping=args.early_stopping)
    events, _, on_epoch, should_stop = _callbacks(args)
    start = {"command": "finetune", "epochs": 0, "fine_tune_epochs": config.fine_tune_epochs}
    # Fine-tuning checkpoints count only fine-tuning epochs, which is all this command runs.
    _resume_event(events, args, args.out or args.run_dir, lambda found: found.epochs_done)
    return _run_with_events(args, events, start, lambda: fine_tune(
        args.run_dir, config, out=args.out, on_epoch=on_epoch, should_stop=should_stop, resume=args.resume))


def _load_model(path: str):
    """A run directory, ``.keras`` or ``.tflite`` model (same prediction API); files that can hold code are refused."""
    from .models.model_files import load_model_file

    return load_model_file(path)


def _labelled_probs(run, data):
    from .export.formats import labelled_files

    paths, labels, skipped = labelled_files(run.classes, data)
    probs, kept, unreadable = run.predict_files(paths)
    return [labels[i] for i in kept], probs, skipped + unreadable


def _cmd_evaluate(args):
    from .analysis.evaluate import classification_metrics

    run = _load_model(args.run_dir)
    y, probs, skipped = _labelled_probs(run, args.data)
    if not y:
        raise TLError(f"no readable images in {args.data!r}")
    metrics = classification_metrics(y, probs, run.classes)
    # The headline calibration figure also at the top level, beside accuracy; the bins stay under "calibration".
    result = {"classes": run.classes, **metrics, "ece": metrics["calibration"]["ece"], "skipped": skipped}
    if not args.json:
        print(f"accuracy {result['accuracy']:.3f} on {result['n']} images")
        for name, m in result["per_class"].items():
            print(f"  {name:<20} precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  n {m['support']}")
        c = metrics["calibration"]
        print(f"expected calibration error {c['ece']:.3f} (mean confidence {c['mean_confidence']:.3f} "
              f"against accuracy {c['accuracy']:.3f})")
    return result


def _cmd_predict(args):
    import numpy as np

    from .analysis.calibration import apply_threshold

    if args.top_k < 1:
        raise TLError(f"--top-k must be at least 1, got {args.top_k}")
    run = _load_model(args.run_dir)
    probs, kept, skipped = run.predict_files(args.images)
    predictions = []
    for row, i in zip(probs, kept):
        order = np.argsort(row)[::-1][: args.top_k]
        label = run.classes[int(order[0])]
        if args.threshold is not None:
            label = apply_threshold(row, run.classes, args.threshold)
        predictions.append({
            "path": args.images[i],
            "label": label,  # None: "unknown", the top probability is below --threshold
            "unknown": label is None,
            "confidence": float(row[order[0]]),
            "top_k": [{"label": run.classes[int(j)], "probability": float(row[j])} for j in order],
        })
    if not predictions and skipped:
        raise TLError(f"no readable image among the inputs ({skipped[0]['path']}: {skipped[0]['reason']})")
    if not args.json:
        for p in predictions:
            if p["unknown"]:
                print(f"{p['path']}: unknown (best guess {p['top_k'][0]['label']} at {p['confidence']:.1%}, "
                      f"below the threshold {args.threshold:.1%})")
            else:
                print(f"{p['path']}: {p['label']} ({p['confidence']:.1%})")
        for s in skipped:
            print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    return {"classes": run.classes, "threshold": args.threshold, "predictions": predictions, "skipped": skipped}


def _cmd_export(args):
    from .export.formats import TFLITE_FORMATS, ExportConfig, export_formats

    if args.bundle and not any(f in TFLITE_FORMATS for f in args.format):
        raise TLError(f"--bundle needs at least one TFLite format ({', '.join(TFLITE_FORMATS)})")

    config = ExportConfig(calibration_samples=args.calibration_samples, int8_io=args.int8_io, seed=args.seed,
                          verify=args.verify_held_out)
    events, _, _, should_stop = _callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "export", "step": step, **logs})
        if not args.json:
            print(f"{logs['stage']:<11} {logs['format']}", file=sys.stderr, flush=True)

    def work():
        result = export_formats(args.run_dir, args.format, args.out, config, calibration=args.calibration,
                                verify=args.verify, on_progress=on_progress, should_stop=should_stop)
        if args.bundle:
            from .export.bundle import write_bundle

            result["bundle"] = str(write_bundle(result, args.run_dir, args.bundle))
        return result

    result = _run_with_events(args, events, {"command": "export", "formats": args.format}, work, _report_exports)
    if len(args.format) == 1 and result["exports"]:
        # One format: the export itself, with its verification figures at the top level.
        entry = result["exports"][0]
        v = entry.get("verification") or {}
        flat = {k: v.get(k) for k in ("keras_accuracy", "tflite_accuracy", "agreement", "latency_ms") if k in v}
        return {**entry, **flat, **{k: v for k, v in result.items() if k != "run_dir"}}
    return result


def _report_exports(result) -> None:
    for e in result["exports"]:
        v = e.get("verification")
        check = ""
        if v:
            check = (f"; Keras {v['keras_accuracy']:.1%}, TFLite {v['tflite_accuracy']:.1%}, "
                     f"agreement {v['agreement']:.1%}, {v['latency_ms']:.1f} ms per image")
        print(f"{e['format']}: {e['path']} ({e['size_bytes'] / 1e6:.2f} MB){check}")
    for w in result["warnings"]:
        print(f"warning: {w['message']}", file=sys.stderr)
    if result.get("stopped"):
        print("stopped before all formats were exported", file=sys.stderr)
    if result.get("bundle"):
        print(f"bundle: {result['bundle']}")


def _cmd_attack(args):
    from .adversarial.attacks import AttackConfig, attack_data

    target = None
    if args.target is not None:
        classes = _run_classes(args.run_dir)
        if args.target not in classes:
            raise TLError(f"target class {args.target!r} is not one of the model's classes ({', '.join(classes)})")
        target = classes.index(args.target)
    config = AttackConfig(method=args.method, epsilon=args.epsilon, steps=args.steps, step_size=args.step_size,
                          target=target, random_start=not args.no_random_start, seed=args.seed)
    events, _, _, _ = _callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "attack", **logs})

    def report(r):
        what = f"{r['method']} eps {r['epsilon']:g}" + (f" towards {r['target']!r}" if r["target"] else "")
        print(f"{what}: accuracy {r['clean_accuracy']:.3f} -> {r['adversarial_accuracy']:.3f} on {r['n']} images; "
              f"success rate {r['success_rate']:.3f}; mean L-inf {r['mean_linf']:.4f}; {r['ms_per_image']:.0f} ms/image"
              + (f"; images in {r['out']}" if r["out"] else ""))
        for s in r["skipped"]:
            print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)

    return _run_with_events(args, events, {"command": "attack"}, lambda: attack_data(
        args.run_dir, args.data, config, out=args.out, on_progress=on_progress), report)


def _run_classes(run_dir: str) -> list[str]:
    from .models.run import read_run_json

    if not (Path(run_dir) / "config.json").is_file():  # as load_run says it (not "train it again")
        raise TLError(f"{run_dir!r} is not a run directory (no config.json)")
    try:
        return list(read_run_json(run_dir, "config.json")["classes"])
    except (KeyError, TypeError):
        raise TLError(f"{run_dir!r} is not a run directory (its config.json names no classes)") from None


def _print_curve(curve: dict) -> None:
    print("epsilon  " + "  ".join(f"{e:>6g}" for e in curve["epsilons"]))
    for method in ("fgsm", "pgd"):
        if method in curve:
            print(f"{method:<8} " + "  ".join(f"{a:>6.3f}" for a in curve[method]))


def _cmd_robustness(args):
    from .adversarial.defence import run_robustness

    events, _, _, _ = _callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "robustness", "step": step, "total": 2 * len(args.epsilons), **logs})

    def report(r):
        print(f"accuracy on {r['n']} {r['split']} images (PGD {r['steps']} steps):")
        _print_curve(r)

    return _run_with_events(args, events, {"command": "robustness"}, lambda: run_robustness(
        args.run_dir, args.epsilons, steps=args.steps, limit=args.limit, on_progress=on_progress), report)


def _cmd_harden(args):
    from .adversarial.defence import HardenConfig, harden

    config = HardenConfig(epsilon=args.epsilon, epochs=args.epochs, lr=args.lr, curve_images=args.curve_images,
                          curve_steps=args.curve_steps)
    events, _, on_epoch, should_stop = _callbacks(args)

    def report(r):
        for name in ("before", "after"):
            print(f"{name}:")
            _print_curve(r[name])
        print(f"saved to {r['run_dir']}")

    start = {"command": "harden", "epochs": config.epochs, "fine_tune_epochs": 0}
    return _run_with_events(args, events, start, lambda: harden(
        args.run_dir, config, out=args.out, epsilons=args.epsilons, on_epoch=on_epoch, should_stop=should_stop), report)


def _cmd_ideal(args):
    from PIL import Image

    from .analysis.explain import ideal_class_image
    from .models.run import load_run

    classes = _run_classes(args.run_dir)
    if args.class_name not in classes:
        raise TLError(f"class {args.class_name!r} is not one of the model's classes ({', '.join(classes)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events, _, _, should_stop = _callbacks(args)
    snapshots = []

    def on_step(step, logs):
        image = logs.get("image")
        if image is not None:  # a snapshot: save it first, then say where it is
            path = out / f"step_{step:04d}.png"
            Image.fromarray(image).save(path)
            snapshots.append(str(path))
        if events and (image is not None or step % 5 == 0):
            events({"type": "ideal", "step": step, "total": args.steps,
                    **{k: float(v) for k, v in logs.items() if k != "image"},
                    **({"image": snapshots[-1]} if image is not None else {})})

    def work():
        result = ideal_class_image(load_run(args.run_dir), classes.index(args.class_name), steps=args.steps,
                                   tv_weight=args.tv_weight, seed=args.seed, on_step=on_step,
                                   should_stop=should_stop)
        final = out / "ideal.png"
        Image.fromarray(result["image"]).save(final)
        last = result["history"][-1] if result["history"] else {}
        return {"class": args.class_name, "image": str(final), "snapshots": snapshots, "steps": len(result["history"]) - 1,
                "class_score": last.get("class_score"), "probability": last.get("probability")}

    def report(r):
        print(f"{r['class']}: probability {r['probability']:.3f} after {r['steps']} steps; image {r['image']}")

    return _run_with_events(args, events, {"command": "ideal"}, work, report)


def _cmd_bench(args):
    from .lab.bench import run_bench

    def on_progress(stage, logs):
        if not args.json:
            print(f"bench: {stage} {json.dumps(logs)}", file=sys.stderr, flush=True)

    result = run_bench(args.data, on_progress)
    if not args.json:
        for key, value in result.items():
            print(f"{key:<40} {value}")
    return result


def _cmd_check(args):
    from .data.health import check_dataset

    def on_progress(done, logs):
        if not args.json and sys.stderr.isatty():
            print(f"\rreading {done}/{logs['total']}", end="", file=sys.stderr, flush=True)
            _open_progress_line[0] = True

    report = check_dataset(args.data, split=args.split, seed=args.seed, on_progress=on_progress)
    _clear_progress_line()
    if not args.json:
        rec = report["recommended"]
        print(f"{'class':<24} {'train':>7} {'val':>7} {'test':>7} {'total':>7}   recommended: "
              f"{rec['minimum']:,}-{rec['good']:,} per class")
        for name, row in report["counts"].items():
            print(f"{name:<24} {row['train']:>7} {row['val']:>7} {row['test']:>7} {row['total']:>7}")
        for warning in report["warnings"]:
            print(f"{warning['level']}: {warning['message']}")
        if not report["warnings"]:
            print("no problems found")
    return report


def _cmd_leaderboard(args):
    from .lab.leaderboard import leaderboard

    events, _, _, should_stop = _callbacks(args)

    def on_progress(logs):
        if events:
            events({"type": "leaderboard", **logs})
        if not args.json and logs["stage"] == "scored":  # skipped ones are listed with the result
            print(f"{logs['backbone']}: accuracy {logs['row']['accuracy']:.3f}", file=sys.stderr, flush=True)

    def report(r):
        print(f"accuracy on {r['n_val']} held-out images ({r['n_train']} to train each head):")
        print(f"{'backbone':<20} {'accuracy':>8} {'MB':>6} {'params':>12} {'images/s':>9}")
        for row in r["rows"]:
            speed = "-" if row["images_per_s"] is None else f"{row['images_per_s']:.1f}"
            print(f"{row['name']:<20} {row['accuracy']:>8.3f} {row['size_mb']:>6g} {row['params']:>12,} {speed:>9}")
        for s in r["skipped"]:
            print(f"skipped {s['name']}: {s['reason']}", file=sys.stderr)
        if r["stopped"]:
            print("stopped before every backbone was scored", file=sys.stderr)

    return _run_with_events(args, events, {"command": "leaderboard"}, lambda: leaderboard(
        args.data, args.backbones, on_progress=on_progress, should_stop=should_stop, seed=args.seed), report)


def _existing_workspace(path: str):
    from .lab.workspace import Workspace

    if not (Path(path) / "jobs").is_dir() and not (Path(path) / "data").is_dir():
        raise TLError(f"{path!r} is not a workspace (it has no data/ or jobs/ folder)")
    return Workspace(path)


def _cmd_project(args):
    from .lab.project import open_project, run_history, save_project

    wanted = 1 if args.action == "runs" else 2
    if len(args.paths) != wanted:
        usage = {"save": "WORKSPACE DEST", "open": "PROJECT WORKSPACE", "runs": "WORKSPACE"}[args.action]
        raise TLError(f"project {args.action} takes {usage}, got {len(args.paths)} path(s)")
    if args.action == "save":
        dest = save_project(_existing_workspace(args.paths[0]), args.paths[1], name=args.name)
        result = {"project": str(dest), "runs": len(run_history(Path(args.paths[0]) / "jobs"))}
        message = f"saved {result['runs']} run(s) to {dest}"
    elif args.action == "open":
        from .lab.workspace import Workspace

        result = open_project(args.paths[0], Workspace(args.paths[1]))
        message = f"opened {result['name']!r}: {result['photos']} photos, {result['runs']} run(s)"
    else:
        result = {"runs": run_history(_existing_workspace(args.paths[0]).jobs_dir)}
        message = "\n".join(f"{r['name']}  {r['backbone']}  weights={r['weights']}  epochs={r['epochs']}  "
                            f"lr={r['lr']}  seed={r['seed']}  val={r['val_accuracy']}  test={r['test_accuracy']}"
                            for r in result["runs"]) or "no finished runs"
    if not args.json:
        print(message)
    return result


def _cmd_gc(args):
    from .lab.gc import collect, summary

    result = collect(dry_run=args.dry_run)
    if not args.json:
        print(summary(result))
    return result


_COMMANDS = {"backbones": _cmd_backbones, "train": _cmd_train, "finetune": _cmd_finetune,
             "evaluate": _cmd_evaluate, "predict": _cmd_predict, "export": _cmd_export, "attack": _cmd_attack,
             "robustness": _cmd_robustness, "harden": _cmd_harden, "ideal": _cmd_ideal,
             "leaderboard": _cmd_leaderboard, "bench": _cmd_bench, "check": _cmd_check,
             "project": _cmd_project, "gc": _cmd_gc}


def log_path() -> Path:
    """The CLI's log file: tracebacks and TensorFlow's native messages go there."""
    return default_cache_dir() / "logs" / "tlcore.log"


def route_native_stderr() -> None:
    """Send file descriptor 2 (TensorFlow's C++ start-up noise) to the log file.

    Python's ``sys.stderr`` keeps writing to the terminal, so users see only
    this CLI's own lines. Called by ``python -m tlcore`` only, never by tests
    that run :func:`main` in-process.
    """
    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        terminal = os.dup(2)
        log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="replace")


def _setup_log() -> tuple[Path, logging.Handler]:
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return path, handler


def main(argv=None) -> int:
    """Run the CLI; returns the exit status."""
    log_path, handler = _setup_log()
    try:
        return _main(argv, log_path)
    finally:
        # Each call adds its own handler; remove it so repeated in-process calls neither
        # duplicate log lines nor leak open files.
        log.removeHandler(handler)
        handler.close()


def _main(argv, log_path: Path) -> int:
    try:
        ended = _wait_for_slot(argv)
        if ended is not None:
            return ended
        args = _build_parser().parse_args(argv)
        log.info("command %s", sys.argv[1:] if argv is None else argv)
        result = _COMMANDS[args.command](args)
        if args.json:
            print(json.dumps(result))
        return 0
    except TLError as exc:
        log.info("user error: %s", exc)
        _clear_progress_line()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _clear_progress_line()
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        log.exception("internal error")
        _clear_progress_line()
        print(f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); details in {log_path}", file=sys.stderr)
        return 1
    finally:
        _release_slot()  # a command that failed before its work (bad arguments) frees its slot too
