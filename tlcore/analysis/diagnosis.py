"""Read a training run's curves like a teacher would: good fit, overfitting, underfitting, forgetting.

:func:`diagnose` takes a run's ``history`` (one dict per epoch, as recorded by
:mod:`tlcore.training.pipeline`: ``epoch``, ``phase`` ("head" or "fine_tune"), ``loss``,
``accuracy`` and, with a validation split, ``val_loss`` and ``val_accuracy``)
and returns one verdict with the numbers behind it and concrete remedies. Given what
the run already did (:class:`Done`: fine-tuned, augmented, class weights or resampling),
the remedies skip what was tried and suggest the next thing instead.

It judges robust summaries, never a single epoch: the mean of the last few
epochs (validation sets are small, so one epoch's accuracy moves by whole
images), the best epoch against the last one, and the train/validation gap
at the start against the gap at the end.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

from ..data.advice import TIERS, tier_sentence
from ..io.errors import TLError

__all__ = ["CODES", "REMEDIES", "Done", "Thresholds", "diagnose"]

# Every verdict diagnose() can return; the dashboard translates by code.
CODES = ("good_fit", "overfitting", "underfitting", "forgetting", "diverged", "no_validation", "too_short")


@dataclass(frozen=True)
class Thresholds:
    """The limits :func:`diagnose` applies; accuracies are fractions (0.10 = 10 points)."""

    # Below 3 epochs there is no trend: one epoch is a point, two a line through any noise.
    min_epochs: int = 3
    # Epochs averaged at each end of a curve. Capped at a third of the run so the first and last
    # windows never overlap (they would hide a gap that grew).
    window: int = 3
    # A train/validation accuracy gap of 10 points is a few images on a typical small validation
    # split: less is noise (and dropout alone keeps train accuracy a little off).
    gap: float = 0.10
    # ...and it must have grown by 5 points since the first epochs: a constant gap is the task's
    # difficulty, a growing one is the model learning its training photos by heart.
    gap_growth: float = 0.05
    # Validation loss 20% (and 0.05) above its lowest while training loss still falls is the
    # textbook overfitting curve, even while validation accuracy looks flat (overconfidence).
    val_loss_rise: float = 0.20
    val_loss_rise_min: float = 0.05
    # A pretrained backbone usually lets the head fit its training photos to 90%+ within a few
    # epochs; below 80% on both training and validation it has not learned what the photos allow.
    underfit_accuracy: float = 0.80
    # Losing 10 validation points (or a 50% jump in validation loss, by at least 0.1) in the first
    # epochs after unfreezing is damage to the pretrained features, not noise.
    forgetting_drop: float = 0.10
    forgetting_loss_jump: float = 0.50
    forgetting_loss_jump_min: float = 0.10
    # Epochs after the boundary that count as "right after unfreezing".
    forgetting_epochs: int = 2
    # A curve whose last window is more than 1 point above the one before is still rising.
    rising: float = 0.01


def _check(thresholds: Thresholds) -> None:
    for f in fields(thresholds):
        value = getattr(thresholds, f.name)
        if isinstance(f.default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            need = "a whole number >= 1"
        else:
            ok = isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0
            need = "a number >= 0"
        if not ok:
            raise TLError(f"diagnosis threshold {f.name} must be {need}, got {value!r}")


@dataclass(frozen=True)
class Done:
    """What a run already did, so that :func:`diagnose` does not advise it again.

    Built from a run's settings (:func:`tlcore.models.run_files.training_done` reads them from a run folder;
    training builds it from its own). Every field defaults to "not done", which gives the remedies a run
    without that knowledge always had.
    """

    fine_tuned: bool = False  # top backbone layers were unfrozen and trained (also read from the history)
    augmented: bool = False  # the training photos were augmented
    class_weighted: bool = False  # the classes' losses were weighed (class weights applied)
    oversampled: bool = False  # photos of the small classes were repeated
    undersampled: bool = False  # photos of the big classes were left out


class _Remedy(NamedTuple):
    text: str
    applies: Callable[[Done], bool] = lambda done: True  # the runs it applies to: by default every run


# Each verdict's remedies, in order, each with the runs it applies to: a remedy already done gives way to the
# next thing to try. The one English text of each (the CLI and the dashboard both show these); the dashboard's other
# languages translate them line for line (diag.<code>.remedies in ui/locales/<lang>.json). The photo counts are
# the data tiers (tlcore.data.advice); tests/ui/test_tiers_view.py checks the French quote them.
_RULES = {
    "good_fit": [
        _Remedy("Look at the mistakes on the Evaluate page's validation split, and score the test split once, for "
                "the run you keep."),
        _Remedy("For a few more points, fine-tune the top backbone layers at a low learning rate (1e-5).",
                lambda done: not done.fine_tuned),
        _Remedy("For a few more points, train again with augmentation on (flips, brightness, contrast).",
                lambda done: done.fine_tuned and not done.augmented),
        _Remedy("For a few more points, add photos like the ones the model gets wrong.",
                lambda done: done.fine_tuned and done.augmented),
    ],
    "overfitting": [
        _Remedy(f"Add photos: {tier_sentence()}."),
        _Remedy("Turn on augmentation (flips, brightness, contrast).", lambda done: not done.augmented),
        _Remedy("Raise dropout (for example from 0.2 to 0.4)."),
        _Remedy("Train fewer epochs, or stop at the best validation epoch (early stopping)."),
        _Remedy("When fine-tuning, unfreeze fewer layers.", lambda done: done.fine_tuned),
        _Remedy("Add photos to the small classes: class weights or oversampling make each of their few photos "
                "count many times, and the model learns them by heart.",
                lambda done: done.class_weighted or done.oversampled),
    ],
    "underfitting": [
        _Remedy("Train for more epochs."),
        _Remedy("Raise the head learning rate (for example from 1e-3 to 3e-3)."),
        _Remedy("Choose a bigger backbone."),
        _Remedy("Fine-tune: unfreeze the backbone's top layers at a low learning rate (1e-5).",
                lambda done: not done.fine_tuned),
        _Remedy("Fine-tune more of the backbone's top layers, or for more epochs.", lambda done: done.fine_tuned),
        _Remedy("Lower the augmentation strength, or train without augmentation: distorted photos are harder to "
                "fit.", lambda done: done.augmented),
        _Remedy("Use class weights instead of undersampling, which leaves photos of the big classes out.",
                lambda done: done.undersampled),
    ],
    "forgetting": [
        _Remedy("Fine-tune with a lower learning rate (1e-5 or lower)."),
        _Remedy("Unfreeze fewer layers (for example half as many)."),
        _Remedy("Keep BatchNorm layers in inference mode (frozen) while fine-tuning."),
        _Remedy("Train the head until its curves are flat before unfreezing."),
    ],
    "diverged": [
        _Remedy("Train again with a lower learning rate (about 1e-3 for the head, 1e-5 for fine-tuning)."),
        _Remedy("Do not use this model: its weights are no longer numbers."),
    ],
    "no_validation": [
        _Remedy("Give the validation split at least 10% of the photos."),
        _Remedy(f"Add photos so that every class has some in each split ({TIERS['start']} per class are enough to "
                "start)."),
    ],
    "too_short": [
        _Remedy("Train for at least 3 epochs (5 to 20 is usual)."),
    ],
}

# Every remedy each verdict may give, in order (a run gets those that apply to it, see _RULES). The dashboard's
# other languages translate them line for line (diag.<code>.remedies in ui/locales/<lang>.json): a change here is
# a change to make there too; tests/ui/test_i18n.py catches a remedy added or removed, not one reworded.
REMEDIES = {code: [remedy.text for remedy in rules] for code, rules in _RULES.items()}


def _done(done) -> Done:
    if done is None:
        return Done()
    if isinstance(done, Done):
        return done
    if isinstance(done, Mapping):
        names = {f.name for f in fields(Done)}
        unknown = sorted(set(done) - names)
        if unknown:
            raise TLError(f"unknown fact {unknown[0]!r} of what a run did; choose from {', '.join(sorted(names))}")
        return Done(**{k: bool(v) for k, v in done.items()})
    raise TLError(f"what a run did must be a Done or a dict of its facts, got {type(done).__name__}")


def _number(value) -> float | None:
    """A finite float, or None for a missing, non-numeric, NaN or infinite value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value):
    return None if value is None else round(float(value), 4)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _points(value: float | None) -> str:
    """A difference of two accuracies, in percentage points."""
    return "–" if value is None else f"{value * 100:.0f} points"


class _Curves:
    """The history as aligned per-epoch series (None where a value is missing or not finite)."""

    def __init__(self, history: Sequence[dict]):
        self.n = len(history)
        self.epochs = [e if isinstance(e := h.get("epoch"), int) and not isinstance(e, bool) else i + 1
                       for i, h in enumerate(history)]
        self.phases = [h.get("phase") for h in history]
        # A loss that is a number but not finite means training broke down (unlike a missing one).
        self.broken = [isinstance(v := h.get("loss"), numbers.Real) and not isinstance(v, bool)
                       and not math.isfinite(float(v)) for h in history]
        self.series = {k: [_number(h.get(k)) for h in history]
                       for k in ("loss", "accuracy", "val_loss", "val_accuracy")}

    def finite(self, key: str) -> list[float]:
        return [v for v in self.series[key] if v is not None]

    def count(self, *keys: str) -> int:
        """Epochs with at least one of ``keys`` usable."""
        return sum(any(self.series[k][i] is not None for k in keys) for i in range(self.n))

    def tail(self, key: str, k: int, skip: int = 0) -> float | None:
        """Mean of the last ``k`` usable values, ``skip`` usable values before the end."""
        values = self.finite(key)
        values = values[:len(values) - skip] if skip else values
        return _mean(values[-k:]) if len(values) >= k else None

    def best(self, key: str, lowest: bool = False) -> tuple[float | None, int | None]:
        """(best raw value, its index), the earliest on ties."""
        points = [(v, i) for i, v in enumerate(self.series[key]) if v is not None]
        if not points:
            return None, None
        value, index = min(points, key=lambda p: (p[0] if lowest else -p[0], p[1]))
        return value, index

    def gaps(self) -> list[float]:
        """Train minus validation accuracy, on epochs that have both."""
        return [a - v for a, v in zip(self.series["accuracy"], self.series["val_accuracy"])
                if a is not None and v is not None]

    def boundary(self) -> int | None:
        """Index of the first fine-tuning epoch that follows a head epoch."""
        for i, phase in enumerate(self.phases):
            if phase == "fine_tune" and "head" in self.phases[:i]:
                return i
        return None


def _evidence(c: _Curves, th: Thresholds) -> dict:
    """Every summary the verdicts use (None where the history cannot give it)."""
    # At most a third of the run, so the start and end windows are disjoint.
    k = max(1, min(th.window, c.n // 3))
    ev: dict = {"epochs": c.n, "usable_epochs": c.count("loss", "accuracy"), "window": k}
    for key in ("accuracy", "val_accuracy", "loss", "val_loss"):
        ev[f"{'train_' if not key.startswith('val') else ''}{key}"] = c.tail(key, k)
    gaps = c.gaps()
    ev["gap"] = _mean(gaps[-k:]) if len(gaps) >= k else None
    ev["gap_start"] = _mean(gaps[:k]) if len(gaps) >= k else None
    ev["gap_growth"] = ev["gap"] - ev["gap_start"] if ev["gap"] is not None else None
    best, index = c.best("val_accuracy")
    ev["best_val_accuracy"], ev["best_val_epoch"] = best, None if index is None else c.epochs[index]
    low, low_index = c.best("val_loss", lowest=True)
    ev["min_val_loss"], ev["min_val_loss_epoch"] = low, None if low_index is None else c.epochs[low_index]
    last_val_loss = ev["val_loss"]
    ev["val_loss_rise"] = (last_val_loss - low) / low if low and last_val_loss is not None else None
    ev["epochs_since_min_val_loss"] = None if low_index is None else c.n - 1 - low_index
    # Train loss at the epoch validation loss was lowest: has training kept improving since?
    ev["train_loss_at_min_val_loss"] = None if low_index is None else c.series["loss"][low_index]
    before = c.tail("accuracy", k, skip=k)
    ev["train_trend"] = ev["train_accuracy"] - before if before is not None and ev["train_accuracy"] is not None else None
    ev.update(_forgetting_evidence(c, th))
    ev["diverged_epoch"] = next((c.epochs[i] for i in range(c.n) if c.broken[i]), None)
    return {key: value if isinstance(value, int) or value is None else _round(value) for key, value in ev.items()}


def _forgetting_evidence(c: _Curves, th: Thresholds) -> dict:
    j = c.boundary()
    ev = dict.fromkeys(("fine_tune_epoch", "val_accuracy_before", "val_accuracy_after", "val_accuracy_drop",
                        "val_loss_before", "val_loss_after", "val_loss_jump"))
    if j is None:
        return ev
    ev["fine_tune_epoch"] = c.epochs[j]
    right_after = range(j, min(j + th.forgetting_epochs, c.n))
    for key, worst in (("val_accuracy", min), ("val_loss", max)):
        # The weights fine-tuning starts from are the last head epoch's; its worst value just after.
        before = next((v for v in reversed(c.series[key][:j]) if v is not None), None)
        after = [c.series[key][i] for i in right_after if c.series[key][i] is not None]
        ev[f"{key}_before"], ev[f"{key}_after"] = before, worst(after) if after else None
    if ev["val_accuracy_before"] is not None and ev["val_accuracy_after"] is not None:
        ev["val_accuracy_drop"] = ev["val_accuracy_before"] - ev["val_accuracy_after"]
    if ev["val_loss_before"] and ev["val_loss_after"] is not None:
        ev["val_loss_jump"] = (ev["val_loss_after"] - ev["val_loss_before"]) / ev["val_loss_before"]
    return ev


def _verdict(c: _Curves, ev: dict, th: Thresholds) -> tuple[str, str]:
    """(code, English message) for the first verdict that holds, most specific first."""
    k, tr, va = ev["window"], ev["train_accuracy"], ev["val_accuracy"]
    if c.n < th.min_epochs:
        return "too_short", f"Only {c.n} epoch(s): at least {th.min_epochs} are needed to read a trend."
    # Once a loss is NaN the weights are too, and every later epoch is meaningless.
    if c.broken[-1]:
        return "diverged", (f"Training broke down at epoch {ev['diverged_epoch']}: the loss is no longer a number, "
                            "usually because the learning rate is too high.")
    usable = ev["usable_epochs"]
    if usable < th.min_epochs:
        return "too_short", (f"Only {usable} of {c.n} epochs have a training loss or accuracy: at least "
                             f"{th.min_epochs} are needed to read a trend.")
    if c.count("val_loss", "val_accuracy") < th.min_epochs:
        return "no_validation", "There is no validation score, so the curves cannot show whether the model generalises."

    drop, jump = ev["val_accuracy_drop"], ev["val_loss_jump"]
    loss_rise = (ev["val_loss_after"] or 0) - (ev["val_loss_before"] or 0)
    if drop is not None and drop >= th.forgetting_drop:
        return "forgetting", (f"Right after unfreezing at epoch {ev['fine_tune_epoch']}, validation accuracy fell from "
                              f"{_pct(ev['val_accuracy_before'])} to {_pct(ev['val_accuracy_after'])}: fine-tuning "
                              "damaged what the backbone had learned.")
    if jump is not None and jump >= th.forgetting_loss_jump and loss_rise >= th.forgetting_loss_jump_min:
        return "forgetting", (f"Right after unfreezing at epoch {ev['fine_tune_epoch']}, validation loss jumped from "
                              f"{ev['val_loss_before']:.2f} to {ev['val_loss_after']:.2f}: fine-tuning damaged what "
                              "the backbone had learned.")

    # Underfitting before overfitting: learning training photos by heart needs high training accuracy.
    if tr is not None and va is not None and tr < th.underfit_accuracy and va < th.underfit_accuracy:
        rising = ev["train_trend"] is not None and ev["train_trend"] > th.rising
        return "underfitting", (f"Training accuracy is only {_pct(tr)} and validation {_pct(va)} over the last {k} "
                                f"epoch(s), {'still rising' if rising else 'no longer rising'}: the model has not "
                                "learned what the photos allow.")

    gap_grew = (ev["gap"] is not None and ev["gap"] >= th.gap
                and ev["gap_growth"] is not None and ev["gap_growth"] >= th.gap_growth)
    low, low_epoch, last_loss = ev["min_val_loss"], ev["min_val_loss_epoch"], ev["val_loss"]
    train_then, train_now = ev["train_loss_at_min_val_loss"], ev["train_loss"]
    loss_turned = (low is not None and last_loss is not None
                   and ev["val_loss_rise"] is not None and ev["val_loss_rise"] >= th.val_loss_rise
                   and last_loss - low >= th.val_loss_rise_min
                   and ev["epochs_since_min_val_loss"] >= k  # its lowest is before the last window
                   and train_then is not None and train_now is not None and train_now < train_then)
    if gap_grew or loss_turned:
        if gap_grew:
            return "overfitting", (f"Training accuracy reached {_pct(tr)} but validation only {_pct(va)} (a gap of "
                                   f"{_points(ev['gap'])}, up {_points(ev['gap_growth'])} since the start; validation was "
                                   f"best at epoch {ev['best_val_epoch']}): the model learns its training photos by heart.")
        return "overfitting", (f"Validation loss was lowest at epoch {low_epoch} and has risen {_pct(ev['val_loss_rise'])} "
                               "since while training loss kept falling: the model learns its training photos by heart.")
    return "good_fit", (f"Training and validation agree (training {_pct(tr)}, validation {_pct(va)} over the last "
                        f"{k} epoch(s)): the model generalises to photos it has not seen.")


def diagnose(history: Sequence[dict], thresholds: Thresholds = Thresholds(),
             done: Done | Mapping | None = None) -> dict:
    """What a run's learning curves say, with the numbers behind it and what to try next.

    ``history`` is a run's per-epoch list (see the module docstring); missing
    keys and NaN or infinite values are treated as absent, except that a
    non-finite training loss at the last epoch means training diverged.
    ``done`` says what the run already did (a :class:`Done`, or a dict of its
    fields); a history with fine-tuning epochs counts as fine-tuned anyway.

    Returns ``{"code", "message", "remedies", "evidence"}``: ``code`` is one
    of :data:`CODES`, ``message`` one English sentence with the numbers,
    ``remedies`` concrete English suggestions (those of :data:`REMEDIES`
    that apply to what the run did, in order), and ``evidence`` the
    summaries (plain ints, floats rounded to 4 digits, or None; JSON-safe).

    Raises :class:`TLError` when ``history`` is not a list of dicts, a
    threshold is out of range or ``done`` names an unknown fact.
    """
    if isinstance(history, (str, bytes, dict)) or not isinstance(history, Sequence):
        raise TLError(f"history must be a list of per-epoch dicts, got {type(history).__name__}")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise TLError(f"history entry {i + 1} is {entry!r}, not a dict of per-epoch values")
    _check(thresholds)
    done = _done(done)
    curves = _Curves(history)
    if "fine_tune" in curves.phases and not done.fine_tuned:
        done = replace(done, fine_tuned=True)
    evidence = _evidence(curves, thresholds)
    code, message = _verdict(curves, evidence, thresholds)
    remedies = [remedy.text for remedy in _RULES[code] if remedy.applies(done)]
    return {"code": code, "message": message, "remedies": remedies, "evidence": evidence}
