"""``backbones``, ``check``, ``leaderboard``, ``bench``, ``prepare``, ``project`` and ``gc``: the workbench around
training."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..io.errors import TLError
from .options import add_settings, job_options, names
from .progress import callbacks, clear_progress_line, phase_callback, progress_line, run_with_events

__all__ = ["add_parsers", "COMMANDS"]

_DATA_HELP = "folder of class folders, folder with train/ val/ [test/], or a .zip of either"


def add_parsers(sub) -> None:
    """The ``backbones``, ``check``, ``leaderboard``, ``bench``, ``prepare``, ``project`` and ``gc`` commands."""
    from ..training.config import TrainConfig

    p = sub.add_parser("backbones", help="list the available backbones")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="measure extraction speed, head training, TFLite latency and memory on DATA")
    p.add_argument("data", help="folder (or .zip) of class folders, as for train")
    add_settings(p, TrainConfig, ("input_size",))  # what a smaller (or larger) input costs and gains
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("prepare", help="convert a backbone for this machine's fast engine now, once (the dashboard "
                                       "does it for the default backbone when it starts, before any job needs it)")
    add_settings(p, TrainConfig, ("backbone", "weights", "input_size"))
    p.add_argument("--int8-check", metavar="REQUEST",
                   help="instead: finish the INT8 check a first training run asked for (REQUEST, in the cache's "
                        "engines folder; see tlcore.training.int8_choice)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("check", help="check a dataset's health: counts, duplicates, leaks across splits, imbalance, bias")
    p.add_argument("data", help=_DATA_HELP)
    add_settings(p, TrainConfig, ("split", "seed"))  # the split training would make
    p.add_argument("--labels", action="store_true",
                   help="also rank the photos whose label is probably wrong (embeds every photo, cached)")
    p.add_argument("--map", action="store_true", help="with --labels: also a 2-D map of the photos' embeddings")
    add_settings(p, TrainConfig, ("backbone", "weights", "input_size"))  # the embeddings training would use
    job_options(p)  # the Data page runs the label check as a job

    p = sub.add_parser("leaderboard", help="score every backbone available here on DATA: accuracy, size and speed")
    p.add_argument("data", help="folder (or .zip) of class folders, as for train")
    p.add_argument("--backbones", type=names, help="backbones to compare, separated by commas (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of the heads")
    job_options(p)

    p = sub.add_parser("project", help="save a workspace as a project, open a project into one, or list its runs")
    p.add_argument("action", choices=("save", "open", "runs"))
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="save WORKSPACE DEST | open PROJECT WORKSPACE (a folder or .zip) | runs WORKSPACE")
    p.add_argument("--name", help="project name (save; default: the folder's name)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("gc", help="free disk: remove idle sessions and trim the shared caches to their limit")
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    p.add_argument("--json", action="store_true")


def _backbones(args):
    from dataclasses import asdict

    from ..backbones.registry import get_spec, list_backbones

    rows = [asdict(get_spec(name)) for name in list_backbones()]
    if not args.json:
        print(f"{'name':<20} {'input':>5} {'features':>8} {'params':>12} {'top-1':>6}  weights")
        for r in rows:
            print(f"{r['name']:<20} {r['input_size']:>5} {r['feature_dim']:>8} {r['params']:>12,} "
                  f"{r['imagenet_top1']:>6.1%}  {'offline' if r['offline'] else 'download'}")
    return rows


def _bench(args):
    from ..lab.bench import run_bench

    def on_progress(stage, logs):
        if not args.json:
            print(f"bench: {stage} {json.dumps(logs)}", file=sys.stderr, flush=True)

    result = run_bench(args.data, on_progress, input_size=args.input_size)
    if not args.json:
        for key, value in result.items():
            print(f"{key:<40} {value}")
    return result


def _prepare(args):
    import time

    from ..training.frozen import prepare_engine

    if args.int8_check:
        from ..training.int8_choice import run_check

        report = run_check(args.int8_check)
        if not args.json:
            print(f"extraction: {report.get('engine')} ({report.get('reason', 'checked')})")
        return report
    start = time.perf_counter()
    path = prepare_engine(args.backbone, args.weights, args.input_size)
    result = {"backbone": args.backbone, "engine": str(path) if path else None,
              "seconds": round(time.perf_counter() - start, 2)}
    if not args.json:
        print(f"engine: {result['engine'] or 'none (this backbone runs with Keras)'} ({result['seconds']} s)")
    return result


def _check(args):
    from ..data.health import check_dataset

    events, on_extract, _, _ = callbacks(args)

    def on_progress(done, logs):
        if not args.json:
            progress_line(f"reading {done}/{logs['total']}")

    def work():
        report = check_dataset(args.data, split=args.split, seed=args.seed, on_progress=on_progress)
        clear_progress_line()
        if args.labels or args.map:
            from ..lab.label_check import check_labels

            found = check_labels(args.data, backbone=args.backbone, weights=args.weights, input_size=args.input_size,
                                 seed=args.seed, with_map=args.map, on_extract=on_extract,
                                 on_phase=phase_callback(args, events))
            report["label_issues"] = found["label_issues"]
            if args.map:
                report["embedding_map"] = found["embedding_map"]
        return report

    return run_with_events(args, events, {"command": "check"}, work, _print_check)


def _print_check(report) -> None:
    from ..data.advice import TIER_WORDS

    rec = report["recommended"]
    tiers = rec["tiers"]
    print(f"{'class':<24} {'train':>7} {'val':>7} {'test':>7} {'total':>7}   tiers per class: "
          f"{tiers['start']:,} to start, {tiers['good']:,} good, {tiers['great']:,} great")
    for name, row in report["counts"].items():
        print(f"{name:<24} {row['train']:>7} {row['val']:>7} {row['test']:>7} {row['total']:>7}")
    if rec["tier"]:
        more = f"; {rec['missing']:,} more reach {TIER_WORDS[rec['next']]}" if rec["next"] else ""
        print(f"data tier: {TIER_WORDS[rec['tier']]} (smallest class {rec['class']}, {rec['photos']:,} photos{more})")
    for warning in report["warnings"]:
        print(f"{warning['level']}: {warning['message']}")
    if not report["warnings"]:
        print("no problems found")
    if "label_issues" in report:
        issues = report["label_issues"]
        print(f"{len(issues)} photo(s) whose label is probably wrong" + (", most suspicious first:" if issues else ""))
        for issue in issues:
            print(f"{issue['path']}: labelled {issue['given']}, looks like {issue['suggested']} "
                  f"({issue['confidence']:.0%})")


def _leaderboard(args):
    from ..lab.leaderboard import leaderboard

    events, _, _, should_stop = callbacks(args)

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

    return run_with_events(args, events, {"command": "leaderboard"}, lambda: leaderboard(
        args.data, args.backbones, on_progress=on_progress, should_stop=should_stop, seed=args.seed,
        on_phase=phase_callback(args, events)), report)


def _existing_workspace(path: str):
    from ..lab.workspace import Workspace

    if not (Path(path) / "jobs").is_dir() and not (Path(path) / "data").is_dir():
        raise TLError(f"{path!r} is not a workspace (it has no data/ or jobs/ folder)")
    return Workspace(path)


def _project(args):
    from ..io.quota import MB
    from ..lab.project import open_project, run_history, save_check, save_project

    wanted = 1 if args.action == "runs" else 2
    if len(args.paths) != wanted:
        usage = {"save": "WORKSPACE DEST", "open": "PROJECT WORKSPACE", "runs": "WORKSPACE"}[args.action]
        raise TLError(f"project {args.action} takes {usage}, got {len(args.paths)} path(s)")
    if args.action == "save":
        workspace = _existing_workspace(args.paths[0])
        # Measured as the Runs page does: a project no session could open is refused (by save_project), a ZIP
        # the dashboard would not upload is a warning.
        check = save_check(workspace, args.paths[1], name=args.name)
        dest = save_project(workspace, args.paths[1], name=args.name)
        result = {"project": str(dest), "runs": len(run_history(Path(args.paths[0]) / "jobs")),
                  "bytes": check["bytes"], "zip_bytes": check["zip_bytes"], "warnings": check["warnings"]}
        message = (f"saved {result['runs']} run(s) to {dest}: {check['bytes'] / MB:.1f} MB, "
                   f"at most {check['zip_bytes'] / MB:.1f} MB as a ZIP")
        for warning in check["warnings"]:
            print(f"warning: {warning['message']}", file=sys.stderr)
    elif args.action == "open":
        from ..lab.workspace import Workspace

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


def _gc(args):
    from ..lab.gc import collect, summary

    result = collect(dry_run=args.dry_run)
    if not args.json:
        print(summary(result))
    return result


COMMANDS = {"backbones": _backbones, "bench": _bench, "prepare": _prepare, "check": _check, "leaderboard": _leaderboard,
            "project": _project, "gc": _gc}
