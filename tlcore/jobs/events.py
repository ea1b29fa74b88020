"""The vocabulary of a job's progress file, and the phase a follower shows from it.

A worker appends one JSON object per line to its ``events.jsonl``
(:class:`tlcore.jobs.runner.EventWriter` adds ``time``); each has a ``type``:

- ``phase`` ``{phase, done?, total?, format?, name?, epoch?, epochs?, copy?, copies?}``: the job entered
  one of :data:`PHASES`, or counted more of its units (``done`` of ``total``). A worker writes ``starting``
  first thing, before it imports anything heavy, and announces each phase that takes work before it
  starts it, so a follower never looks at a silent job for long.
- ``waiting`` ``{position, slots}``: in line for a free slot (:mod:`tlcore.jobs.slots`).
- ``start`` ``{command, ...}``: the command's work begins (training: ``epochs``, ``fine_tune_epochs``;
  export: ``formats``).
- ``extract`` ``{done, total}``: photos embedded by the frozen backbone; the ``embedding`` phase's count.
- ``epoch`` (a training epoch's logs; its ``phase`` is ``head``, ``fine_tune`` or ``adversarial``),
  ``resume``, ``export``, ``attack``, ``robustness``, ``corruption``, ``ideal``, ``leaderboard``: each command's own
  steps.
- ``done`` ``{result}`` or ``error`` ``{message}``: the end.

:func:`current_phase` folds the events into the phase a page shows; pages read the events through
:func:`tlcore.jobs.runner.read_events` and the words for a phase from their own texts (one per phase).
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

__all__ = ["PHASE", "WAITING", "START", "EXTRACT", "EPOCH", "RESUME", "DONE", "ERROR",
           "STARTING", "LOADING", "PREPARING", "EMBEDDING", "AUGMENTING", "TRAINING", "FINE_TUNING", "EVALUATING",
           "LOGGING", "SAVING", "CALIBRATING", "CONVERTING", "VERIFYING", "MEASURING", "HARDENING", "SCORING",
           "LEARNING_CURVE", "TRACKING", "PHASES",
           "LABELS", "PhaseCallback", "no_phase", "phase_event", "current_phase", "Ticker", "REPORT_EVERY"]

# Event types.
PHASE, WAITING, START, EXTRACT, EPOCH, RESUME = "phase", "waiting", "start", "extract", "epoch", "resume"
DONE, ERROR = "done", "error"

# Phases, roughly in the order a job goes through them.
STARTING = "starting"        # the worker process began (written before TensorFlow is imported)
LOADING = "loading"          # importing TensorFlow, reading a run's model or building a backbone
PREPARING = "preparing"      # converting the frozen backbone for this machine (once: the engine is cached)
EMBEDDING = "embedding"      # photos through the frozen backbone (done/total photos; ``extract`` events count it)
AUGMENTING = "augmenting"    # augmented copies of the training photos embedded (copy of copies, done/total)
TRAINING = "training"        # the head's epochs (epochs)
FINE_TUNING = "fine_tuning"  # the unfrozen backbone's epochs (epoch of epochs, done/total batches)
EVALUATING = "evaluating"    # held-out photos scored by the Keras model (done/total)
LOGGING = "logging"          # writing the run's TensorBoard logs (done/total photos of the embedding projector)
SAVING = "saving"            # writing the run folder
CALIBRATING = "calibrating"  # INT8 calibration photos read, then run by the converter (format, done/total)
CONVERTING = "converting"    # writing one export format (format)
VERIFYING = "verifying"      # an exported file checked against Keras (format, done/total photos)
MEASURING = "measuring"      # robustness: photos attacked over every (method, epsilon) point, or scored clean and
#                              under every (corruption, severity) point (done/total)
HARDENING = "hardening"      # adversarial training (epoch of epochs, done/total photos attacked this epoch)
SCORING = "scoring"          # the leaderboard's quick head for one backbone (name)
LEARNING_CURVE = "learning_curve"  # a learning curve's heads, one per share of the photos and repeat (done/total)
TRACKING = "tracking"        # a finished run logged to MLflow (only with a tracking URI: tlcore.lab.mlflow_tracking)
PHASES = (STARTING, LOADING, PREPARING, EMBEDDING, AUGMENTING, TRAINING, FINE_TUNING, EVALUATING, LOGGING, SAVING,
          CALIBRATING, CONVERTING, VERIFYING, MEASURING, HARDENING, SCORING, LEARNING_CURVE, TRACKING)

# What a phase event may say besides its counts; a page's text for a phase may use any of them.
LABELS = ("format", "name", "epoch", "epochs", "copy", "copies")

# A count is reported at least this often (seconds) while it moves, and not much more often.
REPORT_EVERY = 0.25

PhaseCallback = Callable[..., None]  # on_phase(phase, done=None, total=None, **labels)


def no_phase(phase: str, done: int | None = None, total: int | None = None, **labels) -> None:
    """The ``on_phase`` of work nobody follows."""


def phase_event(phase: str, done: int | None = None, total: int | None = None, **labels) -> dict:
    """The ``phase`` event for ``phase`` (one of :data:`PHASES`), with its counts and :data:`LABELS`."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown phase label {unknown[0]!r}; one of {', '.join(LABELS)}")
    counts = {k: int(v) for k, v in (("done", done), ("total", total)) if v is not None}
    return {"type": PHASE, "phase": phase, **counts, **{k: v for k, v in labels.items() if v is not None}}


def current_phase(events: Iterable[dict]) -> dict | None:
    """The phase a job is in after ``events`` (in file order), or None before its first phase event.

    ``{"phase", "since" (time the phase began), "time" (its latest event), "done"?, "total"?, labels...}``.
    An ``extract`` event counts as the ``embedding`` phase. A phase event with the same phase and labels as
    the current one only updates its counts (the phase keeps its ``since``); ``waiting`` leaves no phase.
    """
    state: dict | None = None
    for e in events:
        kind = e.get("type")
        if kind == WAITING:
            state = None
            continue
        if kind == PHASE:
            phase, labels = e.get("phase"), {k: e[k] for k in LABELS if k in e}
        elif kind == EXTRACT:
            phase, labels = EMBEDDING, {}
        else:
            continue
        counts = {k: e[k] for k in ("done", "total") if k in e}
        when = e.get("time")
        if state is not None and state["phase"] == phase and {k: state[k] for k in LABELS if k in state} == labels:
            state.update(counts, time=when)
        else:
            state = {"phase": phase, "since": when, "time": when, **counts, **labels}
    return state


class Ticker:
    """Report a count that advances, ``report(done, total)``: at once for the first call, then whenever
    ``every`` seconds of ``clock`` have passed since the last report, and always for the last unit.

    So a follower sees the count move at least every ``every`` seconds plus the time one call takes,
    without one line per unit when units are quick. The clock is injectable so tests need not sleep.
    """

    def __init__(self, report: Callable[[int, int], None] | None, total: int, every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.report, self.total, self.every, self.clock = report, int(total), every, clock
        self.last: float | None = None
        self.reported: int | None = None

    def __call__(self, done: int) -> None:
        if self.report is None:
            return
        now = self.clock()
        due = self.last is None or now - self.last >= self.every or (done >= self.total and done != self.reported)
        if due:
            self.report(int(done), self.total)
            self.last, self.reported = now, int(done)
