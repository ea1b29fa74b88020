"""How a command reports while it works: the terminal's progress line and phase lines, the events a following
page reads (``--progress``, their vocabulary in :mod:`tlcore.jobs.events`), the stop file, and the job slot a
worker waits for before it imports TensorFlow."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..io.errors import TLError
from ..jobs import events as ev
from .options import one_line

__all__ = ["progress_line", "clear_progress_line", "callbacks", "phase_callback", "report_run", "report_tracking",
           "wait_for_slot", "release_slot", "run_with_events", "resume_event", "PHASE_LINES"]

# The terminal's words for each phase (the dashboard has its own, translated); no line for ``starting``, and
# ``embedding`` has the redrawn features line.
PHASE_LINES = {
    ev.LOADING: "loading the model",
    ev.PREPARING: "preparing the backbone for this machine (once; later runs reuse it)",
    ev.AUGMENTING: "embedding augmented copy {copy} of {copies}",
    ev.TRAINING: "training the head",
    ev.FINE_TUNING: "fine-tuning (batches of this epoch)",
    ev.EVALUATING: "scoring the held-out photos",
    ev.LOGGING: "writing the TensorBoard logs: photos",
    ev.SAVING: "saving",
    ev.CALIBRATING: "calibrating {format}",
    ev.CONVERTING: "converting to {format}",
    ev.VERIFYING: "verifying {format}",
    ev.MEASURING: "measuring robustness",
    ev.HARDENING: "adversarial training (photos attacked this epoch)",
    ev.SCORING: "scoring {name}",
    ev.LEARNING_CURVE: "training the learning curve's heads",
    ev.TRACKING: "logging the run to MLflow",
}

_open_line = [False]  # a \r progress line is on the terminal, without its newline


def progress_line(text: str, last: bool = False) -> None:
    """Redraw ``text`` on the terminal's current line (stderr); ``last`` ends the line. Nothing off a terminal."""
    if sys.stderr.isatty():
        print(f"\r{text}", end="\n" if last else "", file=sys.stderr, flush=True)
        _open_line[0] = not last


def clear_progress_line() -> None:
    """Erase an unfinished progress line, so that what follows is not glued to it."""
    if _open_line[0]:
        print("\r\033[K", end="", file=sys.stderr)
        _open_line[0] = False


def callbacks(args):
    """Progress for the terminal (unless --json) and for --progress; the stop test for --stop-file:
    ``(events, on_extract, on_epoch, should_stop)``."""
    from ..jobs.runner import EventWriter

    events = EventWriter(args.progress) if args.progress else None
    quiet = args.json

    def on_extract(done, total):
        if events:
            events({"type": ev.EXTRACT, "done": done, "total": total})
        if quiet:
            return
        # A line redrawn only on a terminal; elsewhere one line at the end. Either way an error that
        # interrupts extraction is not glued to an unfinished progress line.
        if sys.stderr.isatty():
            progress_line(f"features {done}/{total}", last=done == total)
        elif done == total:
            print(f"features {done}/{total}", file=sys.stderr, flush=True)

    def on_epoch(epoch, logs):
        if events:
            events({"type": ev.EPOCH, **logs})
        if not quiet:
            extra = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in ("epoch", "phase"))
            print(f"{logs['phase']:<9} epoch {epoch:>3}  {extra}", file=sys.stderr, flush=True)

    should_stop = (lambda: Path(args.stop_file).exists()) if args.stop_file else None
    return events, on_extract, on_epoch, should_stop


def phase_callback(args, events, clock=time.monotonic):
    """``on_phase(phase, done=None, total=None, **labels)`` for a command's work: a ``phase`` event for a follower
    (counts of one phase at most every :data:`~tlcore.jobs.events.REPORT_EVERY` seconds, and the last one) and,
    unless ``--json``, on a terminal, one line per phase (its count redrawn on it)."""
    last = {"key": None, "counts": None, "at": 0.0, "line": None}

    def on_phase(phase, done=None, total=None, **labels):
        key, counts = (phase, tuple(sorted(labels.items()))), (done, total)
        now = clock()
        counting = done is not None and total is not None
        if key == last["key"] and (counts == last["counts"] or  # nothing new
                                   counting and done < total and now - last["at"] < ev.REPORT_EVERY):
            return  # or a count moving faster than a follower reads it
        last["key"], last["counts"], last["at"] = key, counts, now
        if events:
            events(ev.phase_event(phase, done, total, **labels))
        if args.json or not sys.stderr.isatty() or phase not in PHASE_LINES:
            return
        line = PHASE_LINES[phase].format_map(labels)
        if counting:
            if line != last["line"]:
                clear_progress_line()
            progress_line(f"{line} {done}/{total}", last=done >= total)
        elif line != last["line"]:
            clear_progress_line()
            print(line, file=sys.stderr, flush=True)
        last["line"] = line

    return on_phase


def report_run(result, out) -> None:
    """A training run's summary for a person: warnings, skipped files, the scores and where it was saved."""
    for w in result["warnings"]:
        print(f"warning: {w['message']}", file=sys.stderr)
    for s in result["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    test = "n/a" if result["test_accuracy"] is None else f"{result['test_accuracy']:.3f}"
    val = "n/a" if result["val_accuracy"] is None else f"{result['val_accuracy']:.3f}"
    print(f"classes {', '.join(result['classes'])}; train {result['n_train']}, val {result['n_val']}, "
          f"test {result['n_test']}; val accuracy {val}, test accuracy {test}; "
          f"{result['seconds']['total']:.1f} s; saved to {out}")
    ran = result.get("executor") or {}
    if ran.get("engine") == "ray":  # issue 20: the embeddings were computed on a cluster
        print(f"embeddings computed on the Ray cluster at {ran['address']} ({ran['nodes']} node(s), "
              f"{ran['workers']} worker(s))")
    report_tracking(result)


def report_tracking(result) -> None:
    """Where the run was logged in MLflow, when it was (:mod:`tlcore.lab.mlflow_tracking`)."""
    logged = result.get("mlflow")
    if logged:
        print(f"logged to MLflow at {logged['uri']}: experiment {logged['experiment_id']}, run {logged['run_id']}")


_HELD: list = []  # the job slot this worker process took before parsing (see wait_for_slot)


def release_slot() -> None:
    """Give back the job slot this process holds, if any."""
    while _HELD:
        _HELD.pop().release()


def wait_for_slot(argv) -> int | None:
    """As a job (``--progress``), say it has started, then wait for a running slot before anything imports
    TensorFlow, then say it is loading.

    Runs before the full parser, whose options' defaults come from modules that import TensorFlow:
    a waiting worker is a small Python process. Its first event, the ``starting`` phase, is written at
    once, so a page following the job hears from it within moments of its start. A worker started by
    :func:`tlcore.jobs.runner.start_job` inherits the places it was admitted with
    (:func:`tlcore.jobs.slots.wait_turn`); one started by hand queues for a server slot only. While waiting
    it writes ``waiting`` events; a stop while waiting ends the command without work. Holding its slot, it
    writes the ``loading`` phase (TensorFlow's import takes seconds), also as a line on a terminal unless
    ``--json``. Returns the exit status when the command ends here, else None.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--progress")
    pre.add_argument("--stop-file")
    pre.add_argument("--json", action="store_true")
    known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not known.progress:
        _loading(None, known.json)
        return None
    from ..jobs import slots
    from ..jobs.runner import EventWriter

    events = EventWriter(known.progress)
    events(ev.phase_event(ev.STARTING))

    def on_wait(position, n):
        events({"type": ev.WAITING, "position": position, "slots": n})

    stop = (lambda: Path(known.stop_file).exists()) if known.stop_file else None
    try:
        admission = slots.Admission.from_environment()
        if admission is not None:
            held = slots.wait_turn(admission, on_wait=on_wait, should_stop=stop)
        else:
            held = slots.acquire(on_wait=on_wait, should_stop=stop)
    except TLError as exc:  # a bad TLCORE_MAX_JOBS: the page shows why the job failed
        events({"type": ev.ERROR, "message": one_line(exc)})
        raise
    if held is None:
        # Nothing ran, so no result to report; the job reads as stopped (its STOP file exists).
        events({"type": ev.DONE, "result": {}, "started": False})
        if known.json:
            print(json.dumps({}))
        else:
            print("stopped while waiting for a free job slot; nothing was run", file=sys.stderr)
        return 0
    _HELD.append(held)
    _loading(events, known.json)
    return None


def _loading(events, quiet: bool) -> None:
    """The ``loading`` phase, announced before the parser imports TensorFlow (a terminal sees it only when the
    import is still to come: an in-process caller has paid for it already)."""
    if events:
        events(ev.phase_event(ev.LOADING))
    if not quiet and sys.stderr.isatty() and "tensorflow" not in sys.modules:
        print("loading TensorFlow", file=sys.stderr, flush=True)


def run_with_events(args, events, start: dict, work, report=None):
    """Run ``work()`` bracketed by start and done/error events (what a following page reads).

    Unless ``--json``, ``report(result)`` prints the human summary (default: a training run's).
    As a job, the worker already holds its slot (:func:`wait_for_slot`); it gives it back as soon as
    the work ends, so the next job in line may start while this one reports.
    """
    if events:
        events({"type": ev.START, **start})
    try:
        result = work()
    except Exception as exc:
        if events:
            events({"type": ev.ERROR, "message": one_line(exc) if isinstance(exc, TLError) else "internal error"})
        raise
    finally:
        release_slot()
    if events:
        events({"type": ev.DONE, "result": result})
    if not args.json:
        (report or (lambda r: report_run(r, r.get("run_dir"))))(result)
    return result


def resume_event(events, args, out, kept) -> None:
    """Tell a following page which epochs the resumed run keeps (its curves restart from them).

    ``kept(checkpoint)`` is how many of them this command itself had completed.
    """
    if events and args.resume and out:
        from ..training.checkpoint import checkpoint_dir, load_checkpoint

        found = load_checkpoint(checkpoint_dir(out))
        if found is not None:
            events({"type": ev.RESUME, "history": found.history, "done": kept(found)})
