"""Will more photos help? Heads trained on growing shares of the training photos, scored on validation.

The expensive part of phase 1, the backbone's embeddings, is cached on disk
(:mod:`tlcore.training.features`): once a dataset has been trained on, a
learning curve costs a few dozen heads on cached vectors, seconds in all.
For each share of :attr:`LearningCurveConfig.fractions` and each repeat, a
stratified subset of the training split (the same split training makes)
trains the Train page's head, and the whole validation split scores it,
overall and class by class. :mod:`tlcore.analysis.learning_curve` fits
``accuracy = a - b * n**-c`` to the means and extrapolates to twice the photos
per class; the class whose own curve rises most by then is the one more photos
would help most.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np

from ..analysis.learning_curve import CurveFit, fit_learning_curve
from ..backbones.registry import DEFAULT_BACKBONE, get_spec
from ..data.datasets import Dataset, assign_splits, check_classes, load_dataset, stratified_split
from ..io.errors import TLError
from ..io.settings import check_settings, setting
from ..jobs.events import LEARNING_CURVE, PhaseCallback, no_phase
from ..models.classifier import build_head
from .config import MAX_INPUT_SIZE, MIN_INPUT_SIZE, TrainConfig
from .features import FeatureCache, extract_features
from .head_fit import HeadTrainer
from .frozen import FrozenBackbone

__all__ = ["LearningCurveConfig", "CURVE_SETTINGS", "learning_curve", "curve_from_features", "stratified_subsets",
           "check_curve_config", "learning_curve_args", "GROWTH", "MIN_GAIN"]

# The extrapolation's question: "with twice the photos per class".
GROWTH = 2.0
# The smallest expected gain (half a point of accuracy) for which a class is named as the one gaining most.
MIN_GAIN = 0.005


@dataclass(frozen=True)
class LearningCurveConfig:
    """What a learning curve measures and with which head; the head's own settings are the Train page's
    defaults (:class:`~tlcore.training.config.TrainConfig`), so the curve speaks of the head a user trains."""

    backbone: str = setting(DEFAULT_BACKBONE, "the pretrained network whose embeddings the heads learn from")
    weights: str | None = setting("imagenet", "imagenet, none (random) or a weights file")
    fractions: tuple[float, ...] = setting((0.1, 0.25, 0.5, 0.75, 1.0), "shares of the training photos each head "
                                           "learns from, separated by commas, each above 0 and at most 1",
                                           metavar="F,F,...")
    repeats: int = setting(3, "heads per share, each on another random subset and seed (their spread is the "
                              "error bar)", minimum=1, maximum=20, offered=(1, 10))
    epochs: int = setting(20, "epochs of the full training split; a smaller share gets as many steps, not epochs, "
                              "so every head trains as long", minimum=1, offered=(1, 100))
    split: tuple[float, float, float] = setting((0.8, 0.1, 0.1), "train,val,test fractions when the data has no "
                                                "splits (the split training makes)")
    seed: int = setting(0, "seed of the split, the subsets and the heads")
    input_size: int | None = setting(None, "side of the square input in pixels (default: the backbone's own)",
                                     minimum=MIN_INPUT_SIZE, maximum=MAX_INPUT_SIZE, unit="pixels", metavar="PX",
                                     label="input size")


# Every field is a command-line option of ``learning-curve``.
CURVE_SETTINGS = ("backbone", "weights", "fractions", "repeats", "epochs", "split", "seed", "input_size")


def check_curve_config(config: LearningCurveConfig) -> LearningCurveConfig:
    """``config`` if a curve can be measured with it, else :class:`TLError` naming the bad value."""
    check_settings(config)
    get_spec(config.backbone)
    shares = config.fractions
    if len(shares) < 2:
        raise TLError(f"a learning curve needs at least two fractions, got {','.join(f'{f:g}' for f in shares)}")
    bad = [f for f in shares if not (isinstance(f, (int, float)) and 0 < f <= 1)]
    if bad:
        raise TLError(f"fraction {bad[0]!r} must be above 0 and at most 1")
    if len(set(shares)) != len(shares):
        raise TLError(f"fractions {','.join(f'{f:g}' for f in shares)} repeat a value; give each share once")
    stratified_split([], config.split, config.seed)  # the split's own sentence for a bad split
    return config


def learning_curve_args(config: LearningCurveConfig, data) -> list[str]:
    """``tlcore learning-curve`` arguments that measure ``config``'s curve on ``data`` (for a job)."""
    from ..io.settings import as_positional, to_options

    check_curve_config(config)
    return ["learning-curve", as_positional(data), *to_options(config, CURVE_SETTINGS)]


def stratified_subsets(y: np.ndarray, n_classes: int, fractions, rng: np.random.Generator) -> list[np.ndarray]:
    """Nested stratified subsets of the examples ``y`` (class indices): for each fraction, ``round(f * n_c)`` of
    each class's ``n_c`` examples, the first ones of one random order per class, so a larger share holds the
    smaller ones (the curve then measures more photos, not other photos)."""
    orders = [rng.permutation(np.flatnonzero(y == k)) for k in range(n_classes)]
    return [np.sort(np.concatenate([order[:max(1, int(round(f * len(order))))] for order in orders]))
            for f in fractions]


def _head_accuracy(x_train, y_train, x_val, y_val, n_classes: int, steps: int, seed: int, standardize: bool,
                   head_config: TrainConfig) -> np.ndarray:
    """Per validation example, whether a head trained for about ``steps`` steps on the given examples is right."""
    batch = head_config.batch_size
    epochs = max(1, math.ceil(steps / math.ceil(len(y_train) / batch)))
    keras.utils.set_random_seed(seed)
    head = build_head(x_train.shape[1], n_classes, head_config.dropout, standardize=standardize)
    if standardize:  # random weights: the pipeline standardises with the training examples' statistics
        head.get_layer("head_standardize").set_statistics(x_train)
    trainer = HeadTrainer(head, head_config.lr, seed=seed)
    trainer.fit(x_train, y_train, epochs=epochs, batch_size=batch)
    # The trainer writes its weights back into the Keras head after every epoch: the head in inference mode
    # (no dropout) is the model a run would save.
    probs = np.asarray(head(np.asarray(x_val, np.float32), training=False))
    return probs.argmax(axis=1) == y_val


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std())


def _extrapolated(fit: CurveFit, now: float, photos: float) -> dict:
    # The fit's rise from today's photos to GROWTH times as many, added to today's measured accuracy: the fit says
    # how much the curve still climbs, the measurement where it stands (a fit passing under or over its last point
    # would otherwise read as a loss or a gain of its own). Never a loss: more photos are not expected to hurt.
    gain = max(0.0, float(fit.predict(photos * GROWTH)) - float(fit.predict(photos)))
    expected = min(1.0, now + gain)
    return {"photos_per_class": round(photos, 1), "accuracy": round(now, 4),
            "more_photos_per_class": round(photos * GROWTH, 1), "expected_accuracy": round(expected, 4),
            "gain": round(expected - now, 4)}


def _check_curve_data(y: np.ndarray, train_ids, val_ids, classes: Sequence[str], config: LearningCurveConfig) -> None:
    """Raise :class:`TLError` when no curve can be measured on these labels and splits (one class, no validation
    photo, a class too small for the smallest share to hold one of its photos)."""
    n_classes = len(classes)
    if n_classes < 2:
        raise TLError(f"a learning curve needs at least two classes; found {', '.join(map(repr, classes)) or 'none'}")
    if len(val_ids) == 0:
        raise TLError("there are no validation photos to score the heads on; add photos or give the validation "
                      "split a share")
    y_train = y[train_ids]
    counts = np.bincount(y_train, minlength=n_classes)
    smallest = min(config.fractions)
    short = [k for k in range(n_classes) if smallest * counts[k] < 1]
    if short:
        k = short[0]
        need = math.ceil(1 / smallest)
        raise TLError(f"class {classes[k]!r} has {counts[k]} training photo(s), too few for the smallest share "
                      f"({smallest:.0%}) to hold one; add photos to reach {need} or raise the smallest fraction")


def curve_from_features(x: np.ndarray, y: np.ndarray, train_ids: np.ndarray, val_ids: np.ndarray,
                        classes: list[str], config: LearningCurveConfig = LearningCurveConfig(),
                        standardize: bool = False, on_phase: PhaseCallback | None = None,
                        should_stop: Callable[[], bool] | None = None) -> dict:
    """The learning curve of embeddings ``x`` with labels ``y`` (indices into ``classes``), heads trained on
    subsets of ``train_ids`` and scored on ``val_ids``.

    ``on_phase(LEARNING_CURVE, done=, total=)`` hears each head before it is
    trained; ``should_stop()``, polled between heads, ends the curve at the
    shares finished so far (``stopped`` true). Returns ``points`` (one per
    share: ``fraction``, ``photos_per_class`` (mean over classes),
    ``val_accuracy`` (mean of the repeats), ``std``, ``runs``), ``per_class``
    (per class: its ``points`` with its own ``photos`` and recall, its ``fit``
    and ``extrapolation``), ``fit`` and ``extrapolation`` (to
    :data:`GROWTH` times the photos per class, with ``class_gaining_most``).
    Raises :class:`TLError` for a curve that cannot be measured.
    """
    check_curve_config(config)
    phase = on_phase or no_phase
    _check_curve_data(y, train_ids, val_ids, classes, config)
    n_classes = len(classes)
    y_train, y_val = y[train_ids], y[val_ids]
    counts = np.bincount(y_train, minlength=n_classes)
    head_config = TrainConfig(epochs=config.epochs)
    steps = config.epochs * math.ceil(len(train_ids) / head_config.batch_size)
    fractions = sorted(config.fractions)
    total = len(fractions) * config.repeats
    right = {}  # (share index, repeat) -> per validation example, right or wrong
    sizes = {}  # (share index, repeat) -> training photos per class
    stopped = False
    for r in range(config.repeats):
        subsets = stratified_subsets(y_train, n_classes, fractions, np.random.default_rng([config.seed, r]))
        for i, subset in enumerate(subsets):
            if should_stop and should_stop():
                stopped = True
                break
            phase(LEARNING_CURVE, done=len(right), total=total)
            ids = train_ids[subset]
            right[i, r] = _head_accuracy(x[ids], y[ids], x[val_ids], y_val, n_classes, steps,
                                         seed=config.seed * 1000 + r, standardize=standardize, head_config=head_config)
            sizes[i, r] = np.bincount(y[ids], minlength=n_classes)
        if stopped:
            break
    phase(LEARNING_CURVE, done=len(right), total=total)
    done_shares = [i for i in range(len(fractions)) if all((i, r) in right for r in range(config.repeats))]
    if not done_shares:
        raise TLError("the learning curve was stopped before its first share was measured")

    points, per_class_points = [], {c: [] for c in classes}
    for i in done_shares:
        runs = [float(right[i, r].mean()) for r in range(config.repeats)]
        mean, std = _mean_std(runs)
        size = np.mean([sizes[i, r] for r in range(config.repeats)], axis=0)
        points.append({"fraction": fractions[i], "photos_per_class": round(float(size.mean()), 2),
                       "val_accuracy": round(mean, 4), "std": round(std, 4), "runs": [round(v, 4) for v in runs]})
        for k, c in enumerate(classes):
            mask = y_val == k
            if not mask.any():
                continue
            recalls = [float(right[i, r][mask].mean()) for r in range(config.repeats)]
            mean_k, std_k = _mean_std(recalls)
            per_class_points[c].append({"fraction": fractions[i], "photos": round(float(size[k]), 2),
                                        "val_accuracy": round(mean_k, 4), "std": round(std_k, 4)})

    fit = fit_learning_curve([p["photos_per_class"] for p in points], [p["val_accuracy"] for p in points])
    last = points[-1]
    extrapolation = _extrapolated(fit, last["val_accuracy"], last["photos_per_class"])
    extrapolation["method"] = fit.method
    per_class = {}
    for c, pts in per_class_points.items():
        entry = {"points": pts, "n_val": int(np.sum(y_val == classes.index(c)))}
        if pts:
            class_fit = fit_learning_curve([p["photos"] for p in pts], [p["val_accuracy"] for p in pts])
            entry["fit"] = class_fit.as_dict()
            entry["extrapolation"] = _extrapolated(class_fit, pts[-1]["val_accuracy"], pts[-1]["photos"])
        per_class[c] = entry
    gains = {c: e["extrapolation"]["gain"] for c, e in per_class.items() if "extrapolation" in e}
    # The class with the largest expected gain; on a tie, the one that is worse today (it has more room). None
    # when no class is expected to gain even MIN_GAIN: naming one would be noise.
    gains = {c: g for c, g in gains.items() if g >= MIN_GAIN}
    most = max(gains, key=lambda c: (gains[c], -per_class[c]["extrapolation"]["accuracy"])) if gains else None
    extrapolation["class_gaining_most"] = most
    extrapolation["class_gain"] = gains.get(most)
    return {
        "classes": list(classes), "points": points, "per_class": per_class, "fit": fit.as_dict(),
        "extrapolation": extrapolation, "n_train": int(len(train_ids)), "n_val": int(len(val_ids)),
        "train_counts": {c: int(n) for c, n in zip(classes, counts)}, "repeats": config.repeats,
        "epochs": config.epochs, "steps": steps, "stopped": stopped,
    }


def learning_curve(source, config: LearningCurveConfig = LearningCurveConfig(),
                   on_extract: Callable[[int, int], None] | None = None, on_phase: PhaseCallback | None = None,
                   should_stop: Callable[[], bool] | None = None, cache: FeatureCache | None = None) -> dict:
    """The learning curve of ``source`` (anything :func:`~tlcore.data.datasets.load_dataset` takes).

    The photos are embedded by ``config.backbone`` through the feature cache
    (the same embeddings training uses: a dataset trained on is not embedded
    again), split as training splits them, and handed to
    :func:`curve_from_features`. ``on_extract(done, total)`` follows the
    embedding (0 first, then at least every second), ``on_phase`` the
    building of the backbone, its engine and each head. Unreadable photos are
    left out and listed in ``skipped``. Returns :func:`curve_from_features`'s
    dict plus ``backbone``, ``skipped``, ``cache_hits``, ``computed`` and
    ``seconds`` (``embedding``, ``heads``, ``total``). Raises :class:`TLError`
    with one sentence for data a curve cannot be measured on (one class, no
    validation photos, too few photos for the smallest share).
    """
    t_start = time.perf_counter()
    check_curve_config(config)
    phase = on_phase or no_phase
    frozen = FrozenBackbone(config.backbone, config.weights, config.input_size, config.seed, phase)
    spec, size = frozen.spec, frozen.size
    dataset = source if isinstance(source, Dataset) else load_dataset(source)
    classes = dataset.classes
    check_classes(dataset.samples, classes, "a learning curve")

    # The checks on the photos as listed, before any is embedded: a folder no curve can be measured on is refused at
    # once, not after minutes of embedding. They run again on the photos that could be read.
    declared = assign_splits(dataset.samples, dataset.has_splits, config.split, config.seed)
    _check_curve_data(np.array([classes.index(s.label) for s in dataset.samples], dtype=int),
                      *(np.flatnonzero(np.array(declared) == sp) for sp in ("train", "val")), classes, config)
    paths = [s.path for s in dataset.samples]
    feats = extract_features(paths, frozen.key, frozen.encoder, size, cache or FeatureCache(), on_progress=on_extract)
    t_embed = time.perf_counter() - t_start
    samples = [dataset.samples[i] for i in feats.kept]
    check_classes(samples, classes, "a learning curve")
    splits = assign_splits(samples, dataset.has_splits, config.split, config.seed)
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[s.label] for s in samples], dtype=int)
    ids = {sp: np.array([i for i, s in enumerate(splits) if s == sp], dtype=int) for sp in ("train", "val")}
    t0 = time.perf_counter()
    result = curve_from_features(feats.features, y, ids["train"], ids["val"], classes, config,
                                 standardize=config.weights is None, on_phase=phase, should_stop=should_stop)
    t_heads = time.perf_counter() - t0
    return {**result, "backbone": spec.name, "input_size": size, "skipped": dataset.skipped + feats.skipped,
            "cache_hits": feats.cache_hits, "computed": feats.computed,
            "seconds": {"embedding": round(t_embed, 2), "heads": round(t_heads, 2),
                        "total": round(time.perf_counter() - t_start, 2)}}
