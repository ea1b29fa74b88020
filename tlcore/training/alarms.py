"""Anti-pattern alarms on training settings, usable before training (pages) and in it (summaries).

Each alarm is a ``{"code", "message", "values"}`` dict (made by :func:`alarm`): the code is
stable (the dashboard explains it and gives the fix), the message is one English sentence with
the numbers and what to do (what the command line prints), and ``values`` names those numbers
(JSON-safe), so the dashboard says them in its own words beside its explanation and fix
instead of repeating the advice. Settings that trigger an alarm are allowed; the alarm only
says they stray from the usual practice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ..data.advice import TIERS, tier_sentence  # the data tiers: one home for the Data page, the report and here
from ..data.health import IMBALANCE_RATIO  # one threshold for the health report and the training alarms

if TYPE_CHECKING:  # only for annotations: the config imports the registry, which imports Keras
    from .config import TrainConfig

__all__ = ["alarm", "config_alarms", "imbalance_alarms", "few_images_alarms", "reused_test_set_alarms",
           "STRONG_AUGMENTATION", "LONG_FINE_TUNE_EPOCHS"]

STRONG_AUGMENTATION = 0.3  # brightness/contrast/saturation range; about 0.2 is the usual advice
LONG_FINE_TUNE_EPOCHS = 10  # more fine-tuning epochs than this need early stopping
HIGH_LR = 1e-2
HIGH_FINE_TUNE_LR = 1e-4


def alarm(code: str, message: str, **values) -> dict:
    """One alarm: its stable ``code``, its English ``message`` and, when the message has numbers or names,
    the ``values`` behind them (the dashboard's ``alarm.<code>.details`` sentence takes them)."""
    return {"code": code, "message": message, **({"values": values} if values else {})}


def imbalance_alarms(config: "TrainConfig", class_counts: Mapping[str, int]) -> list[dict]:
    """``imbalance_uncompensated`` when the classes of ``class_counts`` (name -> images) are imbalanced
    and neither class weights nor resampling compensate; otherwise no alarm."""
    present = {c: int(n) for c, n in class_counts.items() if n}
    if len(present) < 2:
        return []
    largest, smallest = max(present, key=present.get), min(present, key=present.get)
    ratio = present[largest] / present[smallest]
    if ratio <= IMBALANCE_RATIO or config.class_weights != "none" or config.resample != "none":
        return []
    return [alarm("imbalance_uncompensated",
                  f"training classes are imbalanced ({largest!r} has {present[largest]}, {smallest!r} has "
                  f"{present[smallest]} images, {ratio:.1f} to 1) and neither class weights nor resampling compensate",
                  largest=largest, n_largest=present[largest], smallest=smallest, n_smallest=present[smallest],
                  ratio=round(ratio, 2))]


def few_images_alarms(class_counts: Mapping[str, int], training: Mapping[str, int] | None = None) -> list[dict]:
    """``few_images`` when the smallest class of ``class_counts`` (name -> photos, every split) has fewer
    than the first data tier (:data:`tlcore.data.advice.TIERS`, enough to start); ``training`` (name ->
    training photos), when known, is quoted too. Classes without photos are left to the other checks."""
    present = {c: int(n) for c, n in class_counts.items() if n}
    if not present:
        return []
    smallest = min(present, key=lambda c: (present[c], c))
    if present[smallest] >= TIERS["start"]:
        return []
    learn = f" ({int(training[smallest])} to train on)" if training and smallest in training else ""
    return [alarm("few_images", f"class {smallest!r} has only {present[smallest]} images{learn}; {tier_sentence()}",
                  name=smallest, n=present[smallest])]


def config_alarms(config: "TrainConfig", class_counts: Mapping[str, int] | None = None) -> list[dict]:
    """The alarms ``config`` raises before any training, in a fixed order.

    ``class_counts`` (class name -> photos, every split), when known, adds the
    imbalance and the few-images checks; the pages pass the workspace's counts.
    Training makes both checks itself, the imbalance on its training split.
    """
    out = []
    if config.lr > HIGH_LR:
        out.append(alarm("high_lr", f"head learning rate {config.lr:g} is high; about 1e-3 is usual", lr=config.lr))
    if config.fine_tune_layers and config.fine_tune_lr > HIGH_FINE_TUNE_LR:
        out.append(alarm("high_fine_tune_lr", f"fine-tuning learning rate {config.fine_tune_lr:g} may wreck the "
                         "pretrained features; about 1e-5 is usual", lr=config.fine_tune_lr))
    if config.weights is None:
        out.append(alarm("random_weights", "the backbone starts from random weights, so this is not transfer "
                         "learning; expect much lower accuracy"))
    if config.fine_tune_layers and not config.early_stopping and config.fine_tune_epochs > LONG_FINE_TUNE_EPOCHS:
        out.append(alarm("long_fine_tune_without_early_stopping",
                         f"fine-tuning runs {config.fine_tune_epochs} epochs without early stopping; above "
                         f"{LONG_FINE_TUNE_EPOCHS} it tends to overfit, so turn early stopping on",
                         epochs=config.fine_tune_epochs))
    if config.augment and config.augment_strength > STRONG_AUGMENTATION:
        out.append(alarm("strong_augmentation", f"augmentation strength {config.augment_strength:g} is strong "
                         f"(above {STRONG_AUGMENTATION:g}); about 0.2 is usual", strength=config.augment_strength))
    if config.input_size is not None and config.weights is not None:
        from ..backbones.registry import get_spec  # only when a size is chosen: the registry loads the backbone modules

        native = get_spec(config.backbone).input_size
        if config.input_size < native:
            out.append(alarm("small_input", f"input size {config.input_size} px is smaller than the {native} px "
                             f"{config.backbone} was pretrained on: faster, but usually less accurate",
                             size=config.input_size, native=native, backbone=config.backbone))
    if class_counts is not None:
        out += imbalance_alarms(config, class_counts)
        out += few_images_alarms(class_counts)
    return out


def reused_test_set_alarms(times_scored: int) -> list[dict]:
    """``test_set_reuse`` when a test set has been scored for ``times_scored`` runs, two or more (the count of
    :mod:`tlcore.training.ledger`, raised where a person looks at test scores, never by training)."""
    if times_scored < 2:
        return []
    return [alarm("test_set_reuse", f"this test set has now been scored for {times_scored} runs; choose between "
                  "runs by validation accuracy and look at the test score once, for the run you keep", n=times_scored)]
