"""``evaluate``, ``predict``, ``suggest`` and ``export``: what a trained model does, and the files it leaves as."""
from __future__ import annotations

import sys
from dataclasses import fields

from ..io.errors import TLError
from .options import add_settings, config_from_args, job_options, names, threshold, tracking_of, tracking_option
from .progress import callbacks, phase_callback, progress_line, report_tracking, run_with_events

__all__ = ["add_parsers", "COMMANDS"]

_MODEL_HELP = ("run directory, .keras file, or .tflite (or .onnx exported here) file with labels.txt beside it "
               "(pickles and full-model .h5 files are refused: they can run code)")


def _formats(text: str) -> list[str]:
    import argparse

    from ..export.formats import FORMATS

    chosen = [name.lower() for name in names(text)]
    bad = [n for n in chosen if n not in FORMATS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {bad[0] if bad else text!r}; choose from {', '.join(FORMATS)}")
    return chosen


def add_parsers(sub) -> None:
    """The ``evaluate``, ``predict``, ``suggest``, ``export`` and ``check-model`` commands."""
    from ..export.formats import FORMATS, ExportConfig
    from ..models.model_check import DEFAULT_MB, DEFAULT_SECONDS
    from ..models.suggest import SuggestConfig

    p = sub.add_parser("evaluate", help="evaluate a run (or an exported .keras, .tflite or .onnx) on labelled data; "
                                        "on a run's own test photos, the look is counted (see the test-set ledger)")
    p.add_argument("run_dir", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("data")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="classify images with a run or an exported .keras, .tflite or .onnx")
    p.add_argument("run_dir", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--threshold", type=threshold, metavar="P",
                   help="answer 'unknown' when the top probability is below P (0 to 1; the Predict page suggests "
                        "one from the run's validation photos)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("suggest", help="suggest a class for each unlabelled photo, least confident first (the ones "
                                       "worth labelling by hand)")
    p.add_argument("run_dir", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("photos", metavar="PHOTOS", help="a folder of photos (searched recursively), a .zip of photos "
                                                    "(extracted safely) or one photo")
    add_settings(p, SuggestConfig, [f.name for f in fields(SuggestConfig)])
    p.add_argument("--json", action="store_true", help="print [{path, suggested, confidence}], least confident first")

    p = sub.add_parser("export", help="export a run to TFLite, ONNX, a web page, .keras or SavedModel, checked "
                                      "against Keras")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, type=_formats,
                   help=f"{'|'.join(FORMATS)}; several separated by commas write into the folder --out")
    p.add_argument("--out", required=True, help="file to write (a folder for saved-model, web or several formats)")
    p.add_argument("--calibration", metavar="DATA", help="INT8 calibration images (default: the run's training split)")
    add_settings(p, ExportConfig, [f.name for f in fields(ExportConfig)])
    # Verification on the held-out photos is the default; the option of earlier versions still reads.
    p.add_argument("--verify-held-out", dest="verify", action="store_true", help="the default; kept for old scripts")
    p.add_argument("--verify", dest="verify_data", metavar="DATA",
                   help="labelled data to compare the TFLite and ONNX files with Keras on")
    p.add_argument("--bundle", metavar="ZIP", help="also write a ZIP with the TFLite and ONNX files, labels, model card "
                                                   "and example scripts")
    tracking_option(p)
    job_options(p)

    p = sub.add_parser("check-model", help="open a model file from elsewhere as the dashboard does before trusting it: "
                                           "in this process, limited in memory and time, with one prediction (the "
                                           "dashboard runs this in a process of its own)")
    p.add_argument("run_dir", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--max-mb", type=float, default=DEFAULT_MB, help="memory limit in MB (default %(default)g)")
    p.add_argument("--max-seconds", type=float, default=DEFAULT_SECONDS,
                   help="time limit in seconds (default %(default)g)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON, a refusal included")


def _labelled_probs(run, data):
    """(labels, probabilities, skipped files, every labelled file found) of ``data`` under ``run``."""
    from ..export.formats import labelled_files

    paths, labels, skipped = labelled_files(run.classes, data)
    probs, kept, unreadable = run.predict_files(paths)
    return [labels[i] for i in kept], probs, skipped + unreadable, paths


def _evaluate(args):
    from ..analysis.evaluate import classification_metrics
    from ..models.model_files import load_model_file
    from ..models.run_files import is_run
    from ..training.alarms import reused_test_set_alarms
    from ..training.ledger import score_if_test_set

    run = load_model_file(args.run_dir)
    y, probs, skipped, paths = _labelled_probs(run, args.data)
    if not y:
        raise TLError(f"no readable images in {args.data!r}")
    metrics = classification_metrics(y, probs, run.classes)
    # On a run's own test photos this is a look at its test score, counted like one on the Evaluate page.
    times = score_if_test_set(args.run_dir, paths) if is_run(args.run_dir) else None
    # The headline calibration figure also at the top level, beside accuracy; the bins stay under "calibration".
    result = {"classes": run.classes, **metrics, "ece": metrics["calibration"]["ece"], "skipped": skipped,
              "test_set_scored": times, "warnings": reused_test_set_alarms(times or 0)}
    if not args.json:
        if times:
            print(f"this is the run's own test split: {times} run(s) scored on it so far")
        for w in result["warnings"]:
            print(f"warning: {w['message']}", file=sys.stderr)
        print(f"accuracy {result['accuracy']:.3f} on {result['n']} images")
        for name, m in result["per_class"].items():
            print(f"  {name:<20} precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  n {m['support']}")
        c = metrics["calibration"]
        print(f"expected calibration error {c['ece']:.3f} (mean confidence {c['mean_confidence']:.3f} "
              f"against accuracy {c['accuracy']:.3f})")
    return result


def _predict(args):
    import numpy as np

    from ..analysis.calibration import apply_threshold
    from ..models.model_files import load_model_file

    if args.top_k < 1:
        raise TLError(f"--top-k must be at least 1, got {args.top_k}")
    run = load_model_file(args.run_dir)
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


def _suggest(args):
    from ..models.suggest import SuggestConfig, suggest

    config = config_from_args(SuggestConfig, args, [f.name for f in fields(SuggestConfig)])

    def on_progress(done, total):
        if not args.json:  # a line redrawn on a terminal only: a script's stderr gets none
            progress_line(f"predicting {done}/{total}", last=done == total)

    result = suggest(args.run_dir, args.photos, config, on_progress)
    for s in result.skipped:  # listed in both modes: the JSON holds the suggestions only
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if not args.json:
        width = max(len(c) for c in result.classes)
        print(f"{'confidence':>10}  {'suggested':<{width}}  photo")
        for s in result.rows:
            print(f"{s.confidence:>10.1%}  {s.suggested:<{width}}  {s.path}")
        sure = len(result.sure(config.threshold))
        print(f"{sure} of {len(result.rows)} suggestions at or above {config.threshold:.0%} confidence (--threshold); "
              f"the first {len(result.rows) - sure} are the ones to label by hand")
    return [s.as_dict() for s in result.rows]


def _export(args):
    from ..export.formats import BUNDLED_FORMATS, ExportConfig, export_formats
    from ..lab.mlflow_tracking import log_export

    if args.bundle and not any(f in BUNDLED_FORMATS for f in args.format):
        raise TLError(f"--bundle needs at least one TFLite or ONNX format ({', '.join(BUNDLED_FORMATS)})")
    config = config_from_args(ExportConfig, args, [f.name for f in fields(ExportConfig)])
    uri = tracking_of(args)
    events, _, _, should_stop = callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "export", "step": step, **logs})
        # On a terminal the phase lines say what each stage does (with its counts); elsewhere, one line a stage.
        if not args.json and (logs["stage"] == "exported" or not sys.stderr.isatty()):
            print(f"{logs['stage']:<11} {logs['format']}", file=sys.stderr, flush=True)

    on_phase = phase_callback(args, events)

    def work():
        result = export_formats(args.run_dir, args.format, args.out, config, calibration=args.calibration,
                                verify=args.verify_data, on_progress=on_progress, should_stop=should_stop,
                                on_phase=on_phase)
        if args.bundle:
            from ..export.bundle import write_bundle
            from ..jobs.events import SAVING

            on_phase(SAVING)  # the bundle: a ZIP of the TFLite and ONNX files, their labels, model card and examples

            result["bundle"] = str(write_bundle(result, args.run_dir, args.bundle))
        return log_export(uri, result, args.run_dir, config, on_phase=on_phase)

    result = run_with_events(args, events, {"command": "export", "formats": args.format}, work, _report_exports)
    if len(args.format) == 1 and result["exports"]:
        # One format: the export itself, with its verification figures at the top level.
        entry = result["exports"][0]
        v = entry.get("verification") or {}
        flat = {k: v.get(k) for k in ("keras_accuracy", "exported_accuracy", "tflite_accuracy", "agreement",
                                      "latency_ms") if k in v}
        return {**entry, **flat, **{k: v for k, v in result.items() if k != "run_dir"}}
    return result


def _report_exports(result) -> None:
    for e in result["exports"]:
        v = e.get("verification")
        check = ""
        if v:
            runtime = "ONNX Runtime" if e["format"] == "onnx" else "TFLite"
            check = (f"; Keras {v['keras_accuracy']:.1%}, {runtime} {v['exported_accuracy']:.1%}, "
                     f"agreement {v['agreement']:.1%}, {v['latency_ms']:.1f} ms per image")
        print(f"{e['format']}: {e['path']} ({e['size_bytes'] / 1e6:.2f} MB){check}")
    for w in result["warnings"]:
        print(f"warning: {w['message']}", file=sys.stderr)
    if result.get("stopped"):
        print("stopped before all formats were exported", file=sys.stderr)
    if result.get("bundle"):
        print(f"bundle: {result['bundle']}")
    report_tracking(result)


def _check_model(args):
    from ..models.model_check import check_here, refusal_of

    verdict = check_here(args.run_dir, args.max_mb, args.max_seconds)
    if args.json:
        return verdict  # the dashboard reads it, a refusal included
    if not verdict.get("ok"):
        raise TLError(refusal_of(args.run_dir, verdict, args.max_mb))
    print(f"{args.run_dir} opens and predicts: {verdict['classes']} classes at {verdict['input_size']} px")
    return verdict


COMMANDS = {"evaluate": _evaluate, "predict": _predict, "suggest": _suggest, "export": _export,
            "check-model": _check_model}
