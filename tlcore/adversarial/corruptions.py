"""Everyday corruptions: how accuracy holds when photos are blurred, noisy, dark, flat, over-compressed, tilted or
framed off-centre, at three severities each.

Adversarial images are the worst case within an invisible budget; these are the ordinary cases a phone camera
produces. Each corruption works on one RGB ``uint8`` image at the model's input size (what the model sees) and
returns an image of the same shape and dtype, still 0..255. What each severity means is data, in
:data:`SEVERITIES` (one place: the pages, the CLI, the model card and the benchmark quote it); only the noise is
random, drawn from a seed, so every measurement is repeatable.

Measured on a run's held-out photos (its test split, else its validation split) or on a labelled folder; the
result is ``{clean_accuracy, results: [{corruption, severity, accuracy}], mean_accuracy, ...}`` and is saved in
the run folder as ``corruptions.json`` (the model card summarises it).
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance

from ..io.errors import TLError
from ..io.settings import as_positional, check_settings, setting, to_options
from ..jobs.events import LOADING, MEASURING, PhaseCallback, no_phase

__all__ = ["CORRUPTIONS", "SEVERITIES", "SEVERITY_UNITS", "LEVELS", "CorruptionConfig", "CORRUPTION_SETTINGS",
           "corrupt", "random_corruption", "corruption_accuracy", "corruptions_args",
           "run_corruptions"]

# What each severity (1, 2, 3) means, per corruption: severity 1 is a photo most people would keep, 3 one they
# would take again. The one home of these numbers.
SEVERITIES: dict[str, tuple[float, float, float]] = {
    "blur": (0.005, 0.01, 0.02),       # Gaussian blur's sigma, a fraction of the image side (1.1, 2.2, 4.5 px at 224)
    "noise": (0.04, 0.08, 0.16),       # Gaussian noise's standard deviation, a fraction of 0..255 (sensor noise)
    "brightness": (0.7, 0.5, 0.3),     # every pixel multiplied by this (an underexposed photo)
    "contrast": (0.6, 0.4, 0.2),       # the distance to the mean grey multiplied by this (haze, a flat scan)
    "jpeg": (30, 15, 5),               # JPEG quality (a photo sent through a messenger, then again)
    "rotation": (5, 10, 20),           # degrees anticlockwise (a tilted phone)
    "crop_shift": (0.1, 0.2, 0.3),     # the framing moved this fraction of the side towards the bottom right
}
CORRUPTIONS = tuple(SEVERITIES)
LEVELS = (1, 2, 3)
# The unit of each severity's number, for the CLI's table and the benchmark.
SEVERITY_UNITS = {"blur": "sigma (fraction of side)", "noise": "std (fraction of 255)", "brightness": "factor",
                  "contrast": "factor", "jpeg": "quality", "rotation": "degrees", "crop_shift": "fraction of side"}



@dataclass(frozen=True)
class CorruptionConfig:
    """How a corruption measurement is made: on how many held-out photos, with which seed."""

    limit: int = setting(200, "photos measured at most (chosen with the seed when there are more)", minimum=1,
                         label="photos")
    seed: int = setting(0, "seed of the choice of photos and of the noise")
    batch_size: int = setting(32, "photos per prediction", minimum=1, label="batch size")


CORRUPTION_SETTINGS = ("limit", "seed", "batch_size")


def corruptions_args(run_dir, config: CorruptionConfig = CorruptionConfig(), data=None) -> list[str]:
    """``tlcore corruptions`` arguments: the run's accuracy under every corruption, measured as ``config`` says
    (on ``data``, a labelled folder, or without it on the run's held-out photos)."""
    check_settings(config)
    where = [as_positional(data)] if data is not None else []
    return ["corruptions", as_positional(run_dir), *where, *to_options(config, CORRUPTION_SETTINGS)]


def _check(corruption: str, severity: int) -> float:
    if corruption not in SEVERITIES:
        raise TLError(f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}")
    if severity not in LEVELS:
        raise TLError(f"severity {severity!r} must be 1, 2 or 3")
    return SEVERITIES[corruption][severity - 1]


def _gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """A true Gaussian blur (separable, edges mirrored). Pillow's GaussianBlur approximates it with box blurs that
    leave the image unchanged below a radius of about one pixel: severity 1 at a small input size."""
    reach = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = pixels.astype(np.float32)
    for axis in (0, 1):
        padded = np.pad(out, [(reach, reach) if a == axis else (0, 0) for a in range(3)], mode="reflect")
        length = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(k, k + length), axis=axis) for k, w in enumerate(kernel))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def corrupt(image: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """A corrupted copy of an RGB ``uint8`` image (same shape and dtype); ``seed`` draws the noise (the others
    are deterministic)."""
    value = _check(corruption, severity)
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise TLError(f"a corruption takes an RGB uint8 image, got {pixels.dtype} of shape {pixels.shape}")
    height, width = pixels.shape[:2]
    if corruption == "noise":
        noise = np.random.default_rng(seed).normal(0.0, value * 255.0, pixels.shape)
        return np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8)
    if corruption == "blur":
        return _gaussian_blur(pixels, value * max(height, width))
    img = Image.fromarray(pixels)
    if corruption == "brightness":
        img = ImageEnhance.Brightness(img).enhance(value)
    elif corruption == "contrast":
        img = ImageEnhance.Contrast(img).enhance(value)
    elif corruption == "jpeg":
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=int(value))
        img = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    elif corruption == "rotation":
        # The corners a rotation uncovers take the photo's mean colour: black corners would be a second
        # corruption (and a cue the model could learn from hardening).
        fill = tuple(int(c) for c in pixels.reshape(-1, 3).mean(axis=0).round())
        img = img.rotate(value, resample=Image.BILINEAR, fillcolor=fill)
    elif corruption == "crop_shift":
        # The photo framed off-centre: a window (1 - value) of the side, moved to the bottom right, scaled back
        # to the input size, as a crop of the original photo at another place would be.
        left, top = round(value * width), round(value * height)
        img = img.crop((left, top, width, height)).resize((width, height), Image.BILINEAR)
    return np.asarray(img, np.uint8).copy()


def random_corruption(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` under one corruption and severity drawn from ``rng`` (hardening's augmentation)."""
    name = CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]
    return corrupt(image, name, int(rng.integers(1, len(LEVELS) + 1)), seed=int(rng.integers(2**31)))


def corruption_accuracy(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: Sequence[int],
                        corruptions: Sequence[str] = CORRUPTIONS, seed: int = 0, batch_size: int = 32,
                        on_progress: Callable[[int, dict], None] | None = None,
                        on_count: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy of ``predict`` (float32 batch -> scores per class) on ``images`` (uint8) clean and under each
    corruption at each severity.

    Image ``i`` gets the noise of seed ``seed + i``, the same at every severity, so a stronger severity differs
    only in strength. ``on_progress(step, {corruption, severity, accuracy})`` hears each point; ``on_count(done,
    total)`` the photos scored over the clean pass and every point. Returns ``clean_accuracy``, ``results``
    (``[{corruption, severity, accuracy}]``), ``mean_accuracy`` (over every corruption and severity), ``n``.
    """
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels)
    for name in corruptions:
        _check(name, 1)
    if len(images) == 0:
        raise TLError("no photos to measure the corruptions on")
    total = (1 + len(corruptions) * len(LEVELS)) * len(images)
    done = [0]
    if on_count:
        on_count(0, total)

    def accuracy(transform) -> float:
        correct = 0
        for start in range(0, len(images), batch_size):
            batch = [transform(image, start + i) for i, image in enumerate(images[start:start + batch_size])]
            scores = np.asarray(predict(np.stack(batch).astype(np.float32)))
            correct += int((scores.argmax(axis=1) == labels[start:start + batch_size]).sum())
            done[0] += len(batch)
            if on_count:
                on_count(done[0], total)
        return correct / len(images)

    clean = accuracy(lambda image, i: image)
    results = []
    for name in corruptions:
        for severity in LEVELS:
            value = accuracy(lambda image, i: corrupt(image, name, severity, seed + i))
            results.append({"corruption": name, "severity": severity, "accuracy": value})
            if on_progress:
                on_progress(len(results) - 1, dict(results[-1]))
    mean = float(np.mean([r["accuracy"] for r in results])) if results else clean
    return {"clean_accuracy": clean, "results": results, "mean_accuracy": mean, "n": int(len(images))}


def _held_out(run_dir) -> tuple[list[str], list[str], str]:
    """Paths and labels of the run's held-out photos, and which split they are."""
    from ..models.run_files import held_out_samples

    split, samples = held_out_samples(run_dir)
    if not samples:
        raise TLError(f"the run {str(run_dir)!r} kept no held-out photos (no test or validation split); "
                      f"give a labelled folder to measure on")
    return [s.get("path") for s in samples], [s.get("label") for s in samples], split


def _labelled(classes: Sequence[str], data) -> tuple[list[str], list[str], list[dict]]:
    from ..export.formats import labelled_files

    paths, indices, skipped = labelled_files(classes, data)
    return paths, [classes[i] for i in indices], list(skipped)


def _chosen(n: int, limit: int, seed: int) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, limit, replace=False))


def run_corruptions(run_dir, data=None, config: CorruptionConfig = CorruptionConfig(),
                    on_progress: Callable[[int, dict], None] | None = None, on_phase: PhaseCallback | None = None,
                    save: bool = True) -> dict:
    """The run's accuracy under every corruption at every severity, on ``data`` (a labelled folder or .zip) or,
    without it, on the run's held-out photos; saved to the run's ``corruptions.json`` unless ``save`` is False.

    ``on_phase`` hears ``loading`` (the model, the photos) and ``measuring`` (photos scored over every point).
    Photos that do not decode are left out and listed in ``skipped``; none readable is a :class:`TLError`.
    """
    check_settings(config)
    on_phase = on_phase or no_phase
    on_phase(LOADING)
    from ..data.images import ImageDecodeError, load_image
    from ..models.run import load_run, save_run_json
    from ..models.run_files import CORRUPTIONS_FILE

    run = load_run(run_dir)
    if data is None:
        paths, names, source = _held_out(run_dir)
        skipped: list[dict] = []
    else:
        paths, names, skipped = _labelled(run.classes, data)
        source = "folder"
        if not paths:
            raise TLError(f"no photos of the model's classes in {str(data)!r}")
    images, labels = [], []
    for i in _chosen(len(paths), config.limit, config.seed):
        path, name = paths[i], names[i]
        try:
            if name not in run.classes:
                raise ImageDecodeError(f"class {name!r} is not one of the model's")
            images.append(load_image(path, run.input_size))
            labels.append(run.classes.index(name))
        except (ImageDecodeError, TypeError) as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
    if not images:
        where = f"in {str(data)!r}" if data is not None else f"among the run's {source} photos"
        raise TLError(f"no readable photos {where}" + (f" (first: {skipped[0]['path']}: {skipped[0]['reason']})"
                                                        if skipped else ""))
    t0 = time.perf_counter()
    measured = corruption_accuracy(run.predict_batch, np.stack(images), labels, seed=config.seed,
                                   batch_size=config.batch_size, on_progress=on_progress,
                                   on_count=lambda done, total: on_phase(MEASURING, done=done, total=total))
    result = {**measured, "source": source, "severities": {k: list(v) for k, v in SEVERITIES.items()},
              "settings": asdict(config), "seconds": round(time.perf_counter() - t0, 3), "skipped": skipped}
    if save:
        save_run_json(run_dir, CORRUPTIONS_FILE, {k: v for k, v in result.items() if k != "skipped"})
    return result
