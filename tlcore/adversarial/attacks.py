"""Adversarial attacks on a whole classifier (normalisation included), in pixel space.

Images are float RGB pixels 0..255, as the models take them. ``epsilon`` is
a fraction of the pixel range (0.03 means 0.03 * 255, about 7.65 levels):
every adversarial image stays a valid image (clipped to 0..255) and within
``epsilon`` of the original in the L-infinity norm. Gradients are taken on
the logits (the softmax's input), which do not saturate the way a
cross-entropy on a softmax output near 1.0 does.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..io.errors import TLError
from ..io.settings import check_settings, setting

__all__ = ["AttackConfig", "METHODS", "fgsm", "pgd", "attack", "attack_data", "attack_image", "robustness_curve",
           "to_uint8_within"]

METHODS = ("fgsm", "pgd")
PIXEL_RANGE = 255.0


@dataclass(frozen=True)
class AttackConfig:
    """One attack's settings; validated by :func:`attack`."""

    method: str = setting("pgd", "fgsm (one step) or pgd (several smaller steps, stronger)", choices=METHODS)
    epsilon: float = setting(0.03, "largest change per pixel, as a fraction of 0..255", minimum=0, maximum=1,
                             offered=(0.0, 0.1))
    steps: int = setting(10, "PGD steps (FGSM takes one)", offered=(1, 50))
    step_size: float | None = setting(None, "PGD step, as a fraction of 0..255 (default 2.5 * epsilon / steps)",
                                      above=0, maximum=1, label="step size")
    target: int | None = None  # class index for a targeted attack (the command line names the class)
    random_start: bool = setting(True, "PGD starts from a random point within epsilon of the image",
                                 option="--no-random-start", flag_help="PGD starts from the image itself")
    seed: int = setting(0, "seed of PGD's random start")


def _validate(config: AttackConfig, n_classes: int) -> None:
    check_settings(config)
    if config.method == "pgd" and config.steps < 1:
        raise TLError(f"PGD needs at least one step, got {config.steps}")
    if config.target is not None and not 0 <= config.target < n_classes:
        raise TLError(f"target class {config.target} is not one of the model's {n_classes} classes")


def _gradient_sign(logits_fn, x, labels, targeted: bool):
    """Sign of the input gradient of the cross-entropy (compiled once per logits function)."""
    import tensorflow as tf

    step = getattr(logits_fn, "_tl_gradient_sign", None)
    if step is None:
        @tf.function(reduce_retracing=True)
        def sign_of_gradient(x, labels, targeted):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits_fn(x)))
            sign = tf.sign(tape.gradient(loss, x))
            # Untargeted: climb the loss of the true class. Targeted: descend the loss of the target.
            return tf.where(targeted, -sign, sign)

        step = sign_of_gradient
        try:
            logits_fn._tl_gradient_sign = step  # compiled once, kept with the function it differentiates
        except AttributeError:  # e.g. a bound method: compile again next time
            pass
    return step(x, labels, tf.constant(bool(targeted)))


def _project(x, original, eps_px):
    import tensorflow as tf

    # A thousandth of a level inside the ball: float32 rounding of original +/- eps can otherwise
    # land a hair outside it, and "within epsilon" is a promise.
    eps_px = max(eps_px - 1e-3, 0.0)
    return tf.clip_by_value(tf.clip_by_value(x, original - eps_px, original + eps_px), 0.0, PIXEL_RANGE)


def fgsm(logits_fn, images: np.ndarray, labels: Sequence[int], epsilon: float, target: int | None = None) -> np.ndarray:
    """Fast gradient sign method: one step of size ``epsilon`` (fraction of 0..255)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    y = tf.constant(np.full(len(x), target) if target is not None else np.asarray(labels), tf.int32)
    eps_px = float(epsilon) * PIXEL_RANGE
    adv = x + eps_px * _gradient_sign(logits_fn, x, y, target is not None)
    return _project(adv, x, eps_px).numpy()


def pgd(logits_fn, images: np.ndarray, labels: Sequence[int], epsilon: float, steps: int = 10,
        step_size: float | None = None, target: int | None = None, random_start: bool = True,
        seed: int = 0) -> np.ndarray:
    """Projected gradient descent in the L-infinity ball of radius ``epsilon`` (fraction of 0..255).

    ``steps`` sign-gradient steps of ``step_size`` (default ``2.5 * epsilon /
    steps``), each followed by projection back into the ball and the pixel
    range; optionally from a uniform random start inside the ball.
    """
    import tensorflow as tf

    original = tf.convert_to_tensor(np.asarray(images, np.float32))
    y = tf.constant(np.full(len(original), target) if target is not None else np.asarray(labels), tf.int32)
    eps_px = float(epsilon) * PIXEL_RANGE
    alpha = (step_size if step_size is not None else 2.5 * epsilon / max(steps, 1)) * PIXEL_RANGE
    x = original
    if random_start and eps_px > 0:
        noise = np.random.default_rng(seed).uniform(-eps_px, eps_px, original.shape).astype(np.float32)
        x = _project(original + noise, original, eps_px)
    for _ in range(steps):
        x = _project(x + alpha * _gradient_sign(logits_fn, x, y, target is not None), original, eps_px)
    return x.numpy()


def attack(logits_fn, images: np.ndarray, labels: Sequence[int], config: AttackConfig, n_classes: int) -> np.ndarray:
    """Run the attack ``config`` describes on a batch; returns the adversarial images (float 0..255)."""
    _validate(config, n_classes)
    if config.method == "fgsm":
        return fgsm(logits_fn, images, labels, config.epsilon, config.target)
    return pgd(logits_fn, images, labels, config.epsilon, config.steps, config.step_size, config.target,
               config.random_start, config.seed)


def to_uint8_within(adversarial: np.ndarray, original: np.ndarray, epsilon: float) -> np.ndarray:
    """Round adversarial pixels to 8 bits without leaving the epsilon ball around the original.

    Each pixel goes to the nearest 8-bit level inside the ball (for an 8-bit
    original: within ``floor(epsilon * 255)`` levels of it). A float original
    works too, as long as the ball holds a level (``epsilon`` of half a
    level or more always does).
    """
    eps_px = float(epsilon) * PIXEL_RANGE + 1e-6  # 3/255 * 255 may come out as 2.9999...
    original = np.asarray(original, np.float64)
    # The lowest and highest levels inside the ball (a float original's bounds are not levels).
    lowest, highest = np.ceil(original - eps_px), np.floor(original + eps_px)
    rounded = np.clip(np.rint(adversarial), lowest, highest)
    return np.clip(rounded, 0, 255).astype(np.uint8)


def robustness_curve(logits_fn, images: np.ndarray, labels: Sequence[int], epsilons: Sequence[float],
                     methods: Sequence[str] = METHODS, steps: int = 10, batch_size: int = 16,
                     on_progress: Callable[[int, dict], None] | None = None,
                     on_count: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy against epsilon for each method, on labelled images.

    Returns ``{"epsilons": [...], "fgsm": [accuracy, ...], "pgd": [...]}``;
    ``on_progress(step, logs)`` hears about each (method, epsilon) point, and
    ``on_count(done, total)`` about each batch, counting the images attacked
    over every point (a PGD point on a real backbone takes many seconds).
    """
    import tensorflow as tf

    labels = np.asarray(labels)
    images = np.asarray(images, np.float32)
    curve = {"epsilons": [float(e) for e in epsilons]}
    step = 0
    count, total = 0, len(methods) * len(epsilons) * len(images)
    if on_count:
        on_count(0, total)
    for method in methods:
        if method not in METHODS:
            raise TLError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)}")
        accuracies = []
        for eps in epsilons:
            correct = 0
            for start in range(0, len(images), batch_size):
                x, y = images[start:start + batch_size], labels[start:start + batch_size]
                config = AttackConfig(method=method, epsilon=float(eps), steps=steps)
                adv = x if eps == 0 else attack(logits_fn, x, y, config, n_classes=int(1e9))
                pred = tf.argmax(logits_fn(tf.convert_to_tensor(adv)), axis=1).numpy()
                correct += int((pred == y).sum())
                count += len(y)
                if on_count:
                    on_count(count, total)
            accuracies.append(correct / max(len(images), 1))
            if on_progress:
                on_progress(step, {"method": method, "epsilon": float(eps), "accuracy": accuracies[-1]})
            step += 1
        curve[method] = accuracies
    return curve


def attack_data(run_dir, data, config: AttackConfig, out=None, batch_size: int = 16,
                on_progress: Callable[[int, dict], None] | None = None) -> dict:
    """Attack every image of labelled ``data`` (class folders) with the run's model.

    With a target class, images already of that class are left out. With
    ``out``, each adversarial image is saved as an 8-bit PNG under
    ``out/<true class>/<name>.png`` (rounded without leaving the epsilon ball;
    a name already written gets ``-2``, ``-3``... rather than overwriting it).
    Returns ``n``, ``clean_accuracy``, ``adversarial_accuracy``,
    ``mean_linf`` and ``max_linf`` (fractions of the pixel range),
    ``success_rate`` (untargeted: share of the correctly classified images
    that the attack made wrong; targeted: share now classified as the
    target), ``ms_per_image`` and ``skipped``.
    """
    import time
    from pathlib import Path

    from PIL import Image

    from ..export.formats import labelled_files
    from ..data.images import ImageDecodeError, load_image
    from ..models.run import load_run

    run = load_run(run_dir)
    _validate(config, len(run.classes))
    paths, labels, skipped = labelled_files(run.classes, data)
    if config.target is not None:
        kept = [(p, y) for p, y in zip(paths, labels) if y != config.target]
        paths, labels = [p for p, _ in kept], [y for _, y in kept]
    from ..models.classifier import logits_function  # Keras, only once a model is attacked

    logits_fn = logits_function(run.model)
    clean_ok = adv_ok = hits = attacked_correct = flipped = n = 0
    linf: list[float] = []
    seconds = 0.0
    saved: set = set()  # PNGs written by this call
    for start in range(0, len(paths), batch_size):
        batch, ys, names = [], [], []
        for path, y in zip(paths[start:start + batch_size], labels[start:start + batch_size]):
            try:
                batch.append(load_image(path, run.input_size))
                ys.append(y)
                names.append(path)
            except ImageDecodeError as exc:
                skipped.append({"path": str(path), "reason": str(exc)})
        if not batch:
            continue
        x, y = np.stack(batch).astype(np.float32), np.asarray(ys)
        t0 = time.perf_counter()
        adv = attack(logits_fn, x, y, config, len(run.classes))
        seconds += time.perf_counter() - t0
        clean = np.asarray(logits_fn(x)).argmax(axis=1)
        pred = np.asarray(logits_fn(adv)).argmax(axis=1)
        n += len(y)
        clean_ok += int((clean == y).sum())
        adv_ok += int((pred == y).sum())
        if config.target is not None:
            hits += int((pred == config.target).sum())
        else:
            attacked_correct += int((clean == y).sum())
            flipped += int(((clean == y) & (pred != y)).sum())
        linf += list(np.abs(adv - x).reshape(len(y), -1).max(axis=1) / PIXEL_RANGE)
        if out is not None:
            for image, original, path, label in zip(adv, batch, names, y):
                folder = Path(out) / run.classes[int(label)]
                folder.mkdir(parents=True, exist_ok=True)
                # Names repeat across nested folders (and a.jpg / a.png): number the later ones, never overwrite.
                name, i = f"{Path(path).stem}.png", 1
                while folder / name in saved:
                    i += 1
                    name = f"{Path(path).stem}-{i}.png"
                saved.add(folder / name)
                Image.fromarray(to_uint8_within(image, original, config.epsilon)).save(folder / name)
        if on_progress:
            on_progress(start // batch_size, {"done": n, "total": len(paths)})
    if n == 0:
        raise TLError(f"no readable images to attack in {str(data)!r}")
    success = hits / n if config.target is not None else (flipped / attacked_correct if attacked_correct else 0.0)
    return {
        "method": config.method, "epsilon": config.epsilon, "steps": config.steps if config.method == "pgd" else 1,
        "target": run.classes[config.target] if config.target is not None else None,
        "n": n, "clean_accuracy": clean_ok / n, "adversarial_accuracy": adv_ok / n,
        "success_rate": success, "mean_linf": float(np.mean(linf)), "max_linf": float(np.max(linf)),
        "ms_per_image": seconds / n * 1000.0, "skipped": skipped, "out": str(out) if out is not None else None,
    }


_logits_of: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def attack_image(model, image: np.ndarray, config: AttackConfig, label: int | None = None) -> dict:
    """Attack one image (uint8 or float RGB 0..255 at the model's size) with a run's classifier.

    ``label`` is the class to move away from (default: the model's own
    prediction). Returns ``{"adversarial": uint8 image within epsilon,
    "perturbation": float (adversarial - original), "before": probabilities,
    "after": probabilities of the saved 8-bit image, "linf": fraction of the pixel range}``.
    """
    import tensorflow as tf

    logits_fn = _logits_of.get(model)
    if logits_fn is None:  # one per model, so its gradient step is compiled once, not per click
        from ..models.classifier import logits_function

        logits_fn = _logits_of[model] = logits_function(model)
    x = np.asarray(image, np.float32)[None]
    before = tf.nn.softmax(logits_fn(tf.convert_to_tensor(x))).numpy()[0]
    n_classes = len(before)
    label = int(before.argmax()) if label is None else int(label)
    adv = attack(logits_fn, x, [label], config, n_classes)
    adv8 = to_uint8_within(adv[0], x[0], config.epsilon)  # within epsilon of the image itself, even a float one
    after = tf.nn.softmax(logits_fn(tf.convert_to_tensor(adv8[None].astype(np.float32)))).numpy()[0]
    perturbation = adv8.astype(np.float32) - x[0]
    return {"adversarial": adv8, "perturbation": perturbation, "before": before, "after": after,
            "linf": float(np.abs(perturbation).max() / PIXEL_RANGE)}
