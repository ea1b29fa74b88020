"""Robustness of a run against adversarial images, and adversarial training of its head as a defence."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from ..models.classifier import logits_function
from .attacks import fgsm, robustness_curve
from .corruptions import random_corruption
from ..io.errors import TLError
from ..io.settings import as_positional, check_settings, setting, to_options
from ..jobs.events import AUGMENTING, EMBEDDING, EVALUATING, HARDENING, LOADING, MEASURING, SAVING, PhaseCallback, no_phase
from ..data.images import ImageDecodeError, load_image
from ..training.head_fit import HeadTrainer
from ..models.run import RunModel, load_run, save_run
from ..models.run_files import read_run_json
from ..training.pipeline import held_out_results

__all__ = ["DEFAULT_EPSILONS", "HardenConfig", "HARDEN_SETTINGS", "CURVE_SETTINGS", "CURVE_RENAMES", "robustness_args",
           "harden_args", "split_images", "run_robustness", "harden"]

DEFAULT_EPSILONS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03)

EpochCallback = Callable[[int, dict], None]


@dataclass(frozen=True)
class HardenConfig:
    """Adversarial training of the head: FGSM images at ``epsilon`` mixed with the clean ones."""

    epsilon: float = setting(0.01, "FGSM epsilon of the training images, as a fraction of 0..255", above=0,
                             maximum=1, offered=(0.002, 0.005, 0.01, 0.02, 0.03), label="training epsilon")
    epochs: int = setting(5, "epochs of adversarial training", minimum=1)
    lr: float = setting(1e-3, "learning rate of the head", above=0, label="learning rate")
    batch_size: int = setting(32, "images per training step", minimum=1, label="batch size")
    curve_images: int = setting(64, "held-out images the robustness curves are measured on (PGD is slow)",
                                minimum=1, label="curve images")
    curve_steps: int = setting(5, "PGD steps of the robustness curves", minimum=1, label="curve steps")
    seed: int = setting(0, "seed of the choice of curve images and of the head's training")
    corruption_augment: bool = setting(False, "also mix in one copy of each training photo under an everyday "
                                       "corruption (blur, noise, brightness, ...; one drawn with the seed)",
                                       label="corruption augmentation")


# The settings ``harden`` takes, and those ``robustness`` takes under shorter names (what they mean there).
HARDEN_SETTINGS = ("epsilon", "epochs", "lr", "curve_images", "curve_steps", "corruption_augment")
CURVE_SETTINGS = ("curve_steps", "curve_images")
CURVE_RENAMES = {"curve_steps": ("--steps",), "curve_images": ("--limit",)}


def robustness_args(run_dir, config: HardenConfig = HardenConfig()) -> list[str]:
    """``tlcore robustness`` arguments: the run's curves, measured as ``config`` says."""
    check_settings(config)
    return ["robustness", as_positional(run_dir), *to_options(config, CURVE_SETTINGS, CURVE_RENAMES)]


def harden_args(config: HardenConfig, run_dir, out) -> list[str]:
    """``tlcore harden`` arguments that harden ``run_dir`` into ``out`` with ``config``."""
    check_settings(config)
    return ["harden", as_positional(run_dir), f"--out={out}", *to_options(config, HARDEN_SETTINGS)]


def split_images(run: RunModel, run_dir, split: str, limit: int | None = None, seed: int = 0):
    """Decoded images (uint8) and class indices of one split of the run (``held-out``: test, else val)."""
    samples = read_run_json(run_dir, "samples.json")
    if split == "held-out":
        split = "test" if any(s.get("split") == "test" for s in samples) else "val"
    chosen = [s for s in samples if s.get("split") == split]
    if limit is not None and len(chosen) > limit:
        rng = np.random.default_rng(seed)
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), limit, replace=False))]
    images, labels = [], []
    for s in chosen:
        try:
            images.append(load_image(s["path"], run.input_size))
            labels.append(run.classes.index(s["label"]))
        except (ImageDecodeError, ValueError):
            continue
    if not images:
        raise TLError(f"the run has no readable {split} images to measure robustness on")
    return np.stack(images), np.asarray(labels), split


def _measuring(on_phase: PhaseCallback):
    return lambda done, total: on_phase(MEASURING, done=done, total=total)


def run_robustness(run_dir, epsilons: Sequence[float] = DEFAULT_EPSILONS, methods=("fgsm", "pgd"),
                   steps: int = HardenConfig.curve_steps, limit: int | None = HardenConfig.curve_images,
                   on_progress: EpochCallback | None = None, on_phase: PhaseCallback | None = None) -> dict:
    """Accuracy against epsilon on the run's held-out images (at most ``limit`` of them); ``on_progress`` hears
    each point, ``on_phase`` the ``loading`` and ``measuring`` phases (images attacked over every point)."""
    on_phase = on_phase or no_phase
    bad = [e for e in epsilons if not 0 <= e <= 1]
    if bad:
        raise TLError(f"epsilon {bad[0]} is outside 0..1 (a fraction of the pixel range)")
    on_phase(LOADING)
    run = load_run(run_dir)
    images, labels, split = split_images(run, run_dir, "held-out", limit)
    t0 = time.perf_counter()
    curve = robustness_curve(logits_function(run.model), images, labels, list(epsilons), methods, steps,
                             on_progress=on_progress, on_count=_measuring(on_phase))
    return {**curve, "split": split, "n": len(labels), "steps": steps, "seconds": round(time.perf_counter() - t0, 3)}


def _embed(backbone, images: np.ndarray, batch_size: int, on_count: Callable[[int, int], None]) -> np.ndarray:
    """The backbone's features of ``images``, predicted in the batches ``predict(batch_size=...)`` would make,
    counting the images done after each."""
    parts = []
    on_count(0, len(images))
    for i in range(0, len(images), batch_size):
        parts.append(backbone.predict(images[i:i + batch_size], batch_size=batch_size, verbose=0))
        on_count(min(i + batch_size, len(images)), len(images))
    return np.concatenate(parts)


def harden(run_dir, config: HardenConfig = HardenConfig(), out=None, epsilons: Sequence[float] = DEFAULT_EPSILONS,
           on_epoch: EpochCallback | None = None, should_stop: Callable[[], bool] | None = None,
           on_phase: PhaseCallback | None = None) -> dict:
    """Adversarial training of the run's head: each epoch, FGSM images of the training split at
    ``config.epsilon`` (made against the current model) are added to the clean ones.

    The backbone stays frozen, so only what the head can change is hardened.
    Robustness curves (FGSM and PGD) on held-out images are measured before
    and after; the hardened run is saved to ``out`` (default: a sibling
    ``<run>-hardened`` folder) and the summary returned. ``on_phase`` hears
    each phase before it starts, with its counts: ``loading``, ``measuring``
    (before, then after), ``embedding`` the clean training photos,
    ``hardening`` (photos attacked in each epoch), ``evaluating``, ``saving``. With
    ``config.corruption_augment``, one corrupted copy of each training photo (a corruption and severity drawn with
    the seed, :func:`~tlcore.adversarial.corruptions.random_corruption`) is embedded once (``augmenting``) and
    trained on in every epoch beside the clean and adversarial ones.
    """
    check_settings(config)
    on_phase = on_phase or no_phase
    t_start = time.perf_counter()
    on_phase(LOADING)
    run = load_run(run_dir)
    logits_fn = logits_function(run.model)
    train_x, train_y, _ = split_images(run, run_dir, "train")
    curve_x, curve_y, split = split_images(run, run_dir, "held-out", config.curve_images, config.seed)
    before = robustness_curve(logits_fn, curve_x, curve_y, list(epsilons), steps=config.curve_steps,
                              on_count=_measuring(on_phase))

    backbone = run.model.get_layer(run.spec.name)
    head = run.model.get_layer("head")
    keras.utils.set_random_seed(config.seed)
    trainer = HeadTrainer(head, config.lr, seed=config.seed)
    clean = _embed(backbone, train_x.astype(np.float32), config.batch_size,
                   lambda done, total: on_phase(EMBEDDING, done=done, total=total))
    extra_x, extra_y = clean[:0], train_y[:0]
    if config.corruption_augment:
        # One fixed corrupted copy per photo: the backbone is frozen, so its features are computed once, like the
        # clean ones; the adversarial copies change each epoch because the head they fool does.
        rng = np.random.default_rng(config.seed)
        corrupted = np.stack([random_corruption(image, rng) for image in train_x]).astype(np.float32)
        extra_x = _embed(backbone, corrupted, config.batch_size,
                         lambda done, total: on_phase(AUGMENTING, done=done, total=total, copy=1, copies=1))
        extra_y = train_y
    history = []
    for epoch in range(1, config.epochs + 1):
        attacked = []
        for i in range(0, len(train_x), config.batch_size):
            on_phase(HARDENING, done=i, total=len(train_x), epoch=epoch, epochs=config.epochs)
            attacked.append(fgsm(logits_fn, train_x[i:i + config.batch_size], train_y[i:i + config.batch_size],
                                 config.epsilon))
        on_phase(HARDENING, done=len(train_x), total=len(train_x), epoch=epoch, epochs=config.epochs)
        adversarial = np.concatenate(attacked)
        features = backbone.predict(adversarial, batch_size=config.batch_size, verbose=0)
        seen = []
        trainer.fit(np.concatenate([clean, features, extra_x]), np.concatenate([train_y, train_y, extra_y]),
                    epochs=epoch, initial_epoch=epoch - 1, batch_size=config.batch_size,
                    callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda _, fit_logs: seen.append(fit_logs))])
        logs = {"epoch": epoch, "phase": "adversarial", "loss": float(seen[-1]["loss"]),
                "accuracy": float(seen[-1]["accuracy"])}
        history.append(logs)
        if on_epoch:
            on_epoch(epoch, logs)
        if should_stop and should_stop():
            break
    after = robustness_curve(logits_fn, curve_x, curve_y, list(epsilons), steps=config.curve_steps,
                             on_count=_measuring(on_phase))

    out = Path(out) if out is not None else Path(run_dir).with_name(Path(run_dir).name + "-hardened")
    samples = read_run_json(run_dir, "samples.json")
    # Held-out scores and galleries of the hardened model (the Evaluate page reads them).
    paths = [s["path"] for s in samples]
    labels = [s["label"] for s in samples]
    y = np.array([run.classes.index(label) for label in labels])
    idx = {sp: np.array([i for i, s in enumerate(samples) if s["split"] == sp], dtype=int) for sp in ("train", "val", "test")}
    scored, n_held = [0], int(len(idx["val"]) + len(idx["test"]))
    on_phase(EVALUATING, done=0, total=n_held)

    def predict(ids):
        probs = run.predict_batch(np.stack([load_image(paths[i], run.input_size) for i in ids]))
        scored[0] += len(ids)
        on_phase(EVALUATING, done=scored[0], total=n_held)
        return probs

    scores, predictions = held_out_results(predict, paths, labels, y, idx, run.classes)
    summary = {**read_run_json(run_dir, "metrics.json"),
               "val_accuracy": scores["val"]["accuracy"], "test_accuracy": scores["test"]["accuracy"],
               "val": scores["val"], "test": scores["test"],
               "adversarial_training": {**asdict(config), "history": history, "split": split,
                                        "n": int(len(curve_y)), "before": before, "after": after}}
    run_config = {k: v for k, v in run.config.items() if k not in ("classes", "tlcore_version")}
    run_config["adversarial_training"] = asdict(config)
    on_phase(SAVING)
    save_run(out, run.model, run.classes, run_config, summary,
             extra={"samples.json": samples, "predictions.json": predictions})
    return {"run_dir": str(out), "classes": run.classes, "backbone": run.spec.name, "history": history, "split": split, "n": int(len(curve_y)),
            "val_accuracy": summary["val_accuracy"], "test_accuracy": summary["test_accuracy"],
            "curve_steps": config.curve_steps, "before": before, "after": after,
            "seconds": round(time.perf_counter() - t_start, 3)}
