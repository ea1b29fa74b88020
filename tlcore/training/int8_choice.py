"""INT8 extraction where the CPU has int8 dot products, chosen only when it keeps the head's accuracy.

On CPUs with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX; ARM ``asimddp``) an INT8 copy of the
backbone embeds photos about twice as fast as float32 (EfficientNet-Lite0, 224 px, one thread: 180 against 93
images/s on a loaded 2-core AVX-512/AMX Xeon); without them it is no faster (AVX2: 1.16x slower), so it is never
used there. Its features differ from float32's (by about 13% of their scale on average), so it is used only when
:func:`keeps_accuracy` holds, measured on the user's own validation split:

1. The first run of a backbone (at an input size, on this machine's cache) extracts float32 features as always,
   then makes the INT8 engine, calibrated on up to :data:`CALIBRATION_PHOTOS` of the run's own training photos
   (a seeded draw, decoded as extraction decodes them). Why those: they are the only photos certainly at hand on
   a first run, they are what the engine will embed, and the float32 features are already cached, so nothing is
   lost if INT8 does not pass.
2. It embeds the same photos with INT8 and trains a head on each set of features (the run's head settings, no
   augmentation or resampling). INT8 passes when its head's validation accuracy, on INT8 features and on
   float32 features (what the saved model, whose backbone is the float32 Keras one, will see), is at most
   :data:`TOLERANCE_POINTS` below the float32 head's.
3. The verdict is stored beside the INT8 engine file (with that file's hash). Later runs of the backbone read
   the verdict: INT8 extracts at once when it passed, float32 when it did not; the report names the run that
   checked (``checked``: ``"an earlier run"``). Deleting the engine cache (``python -m tlcore gc``) or a new
   engine version checks again.

Steps 1-2 take about half a minute (the conversion with its calibration), so a training run does not wait for
them: the first run finishes with its float32 features and hands the check to a process of its own
(:func:`check_later`, then :func:`run_check` in ``python -m tlcore prepare --int8-check REQUEST``), which reads
the same photos' float32 features back from the cache. The first user's first click stays as fast as on a CPU
without int8 instructions; runs after the check extract with INT8 if it passed.

Any failure (conversion, loading, a photo decoded differently) falls back to float32, logged: a faster path must
never fail a user's run. ``TrainConfig.int8_extraction`` (``--no-int8-extraction``) turns it off.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np

from ..data.images import load_image
from ..io.atomic import write_bytes_atomic
from ..io.confine import confine
from ..io.errors import TLError
from ..io.paths import default_cache_dir, start_tlcore
from ..io.settings import check_settings
from ..io.cpus import cpu_flags, int8_dot_product
from ..jobs.events import PhaseCallback
from ..models.classifier import build_head
from .config import TrainConfig
from .features import FeatureCache, extract_features
from .head_fit import HeadTrainer

__all__ = ["TOLERANCE_POINTS", "CALIBRATION_PHOTOS", "Int8Plan", "keeps_accuracy", "plan_extraction", "check_int8",
           "head_val_accuracy", "calibration_images", "verdict_path", "check_later", "run_check", "request_path"]

log = logging.getLogger("tlcore")

# The most validation accuracy INT8 may cost, in points (the rule).
TOLERANCE_POINTS = 0.5
# Calibration photos of the INT8 engine (post-training quantisation wants about 100-500).
CALIBRATION_PHOTOS = 200

Encoder = Callable[[np.ndarray], np.ndarray]


def keeps_accuracy(float32: float, int8: float, int8_head_on_float32: float | None = None,
                   tolerance_points: float = TOLERANCE_POINTS) -> bool:
    """Whether INT8 keeps validation accuracy (fractions 0..1) within ``tolerance_points`` of float32's: the
    INT8 head on INT8 features (``int8``) and, when given, on float32 features (``int8_head_on_float32``)."""
    floor = float32 - tolerance_points / 100 - 1e-9  # 1e-9: accuracies are ratios of counts, not exact decimals
    return int8 >= floor and (int8_head_on_float32 is None or int8_head_on_float32 >= floor)


@dataclass
class Int8Plan:
    """How this run extracts: ``engine`` is what extracts now; ``check`` says the INT8 engine is to be checked
    after the float32 extraction; ``report`` goes into the train result's ``extraction``."""

    engine: str = "float32"
    check: bool = False
    feature_key: str | None = None
    encoder: Encoder | None = None
    report: dict = field(default_factory=dict)


def verdict_path(engine_file):
    """Where the check's verdict on an INT8 engine file is kept: beside it (``<hash>.int8.json``)."""
    return engine_file.with_suffix(".json")


def _read_verdict(engine_file, engine_sha: str) -> dict | None:
    try:
        verdict = json.loads(verdict_path(engine_file).read_text())
    except (OSError, ValueError):
        return None
    # A verdict on another file (the engine was made again from other photos) says nothing about this one.
    return verdict if isinstance(verdict, dict) and verdict.get("engine_sha") == engine_sha else None


def _file_sha(path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def plan_extraction(config: TrainConfig, backbone_key: str | None, input_size: int,
                    flags: frozenset[str] | None = None) -> Int8Plan:
    """What this run extracts with (see the module's docstring); ``flags`` are the CPU's (read when None)."""
    from .engine import int8_encoder, int8_engine_path

    flags = cpu_flags() if flags is None else flags
    dot = int8_dot_product(flags)

    def float32(reason: str, **extra) -> Int8Plan:
        return Int8Plan(report={"engine": "float32", "cpu_int8_dot_product": dot, "reason": reason, **extra})

    if not config.int8_extraction:
        return float32("INT8 extraction is turned off")
    if not dot:
        return float32("this CPU has no int8 dot-product instructions (VNNI, AMX): INT8 would not be faster")
    if not backbone_key:
        return float32("random weights are not cached, so there is no engine to check")
    if config.fine_tune_layers > 0:
        return float32("fine-tuning trains the float32 backbone")
    path = int8_engine_path(backbone_key, input_size)
    sha = _file_sha(path) if path.is_file() else None
    verdict = _read_verdict(path, sha) if sha else None
    if verdict is None:
        return Int8Plan(check=True, report={"engine": "float32", "cpu_int8_dot_product": dot})
    checked = {k: verdict[k] for k in ("val_accuracy_float32", "val_accuracy_int8", "val_accuracy_int8_head_on_float32",
                                       "n_val") if k in verdict}
    if not verdict.get("passed"):
        return float32("INT8 lost more than 0.5 points of validation accuracy when checked", checked="an earlier run",
                       **checked)
    try:
        made = int8_encoder(lambda: None, backbone_key, input_size, lambda: None)  # cached: never converts
    except Exception:  # noqa: BLE001 - a faster path must never fail a run
        log.warning("INT8 engine of %s unusable; extracting with float32", backbone_key, exc_info=True)
        made = None
    if made is None or made[1] != sha:
        return float32("the INT8 engine could not be loaded (see the log)")
    encoder, sha = made
    return Int8Plan(engine="int8", feature_key=f"{backbone_key}|int8:{sha}", encoder=encoder,
                    report={"engine": "int8", "cpu_int8_dot_product": dot, "checked": "an earlier run", **checked})


def calibration_images(paths: list[str], input_size: int, seed: int, n: int = CALIBRATION_PHOTOS) -> np.ndarray:
    """Up to ``n`` of ``paths`` (a seeded draw), decoded as extraction decodes them; unreadable ones left out."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(paths), min(n, len(paths)), replace=False)) if paths else []
    images = []
    for i in chosen:
        try:
            images.append(load_image(paths[i], input_size))
        except Exception:  # noqa: BLE001 - a photo that vanished only makes the sample smaller
            continue
    if not images:
        raise ValueError("no calibration photo could be decoded")
    return np.stack(images)


def head_val_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: list[np.ndarray], y_val: np.ndarray,
                      n_classes: int, config: TrainConfig) -> list[float]:
    """Train a head as phase 1 does (``config``'s epochs, batch, learning rate, dropout, seed; no augmentation or
    resampling) on ``x_train`` and return its accuracy on each feature matrix of ``x_val``."""
    keras.utils.set_random_seed(config.seed)
    head = build_head(x_train.shape[1], n_classes, config.dropout)
    HeadTrainer(head, config.lr, seed=config.seed).fit(x_train, y_train, epochs=config.epochs,
                                                       batch_size=config.batch_size)
    return [float(np.mean(np.argmax(head.predict(x, verbose=0), axis=1) == y_val)) for x in x_val]


def check_int8(plan: Int8Plan, get_backbone: Callable[[], object], backbone_key: str, input_size: int,
               paths: list[str], x: np.ndarray, y: np.ndarray, idx: dict, n_classes: int, config: TrainConfig,
               cache: FeatureCache | None, on_phase: PhaseCallback | None = None) -> tuple[Int8Plan, np.ndarray]:
    """Step 1-3 of the module's docstring for a plan with ``check``: ``paths`` are the photos whose float32
    features are ``x`` (rows), ``y`` their labels, ``idx`` the split's row indices. Returns the plan this run
    goes on with (its report filled in) and the features to train on (``x`` itself unless INT8 passed)."""
    from .engine import int8_encoder, int8_engine_path

    report = dict(plan.report)

    def float32(reason: str) -> tuple[Int8Plan, np.ndarray]:
        return Int8Plan(report={**report, "engine": "float32", "reason": reason}), x

    if len(idx["val"]) == 0:
        return float32("no validation photos to check INT8 on")
    try:
        train_paths = [paths[i] for i in idx["train"]]
        made = int8_encoder(get_backbone, backbone_key, input_size,
                            lambda: calibration_images(train_paths, input_size, config.seed), on_phase=on_phase)
        if made is None:
            return float32("the INT8 engine could not be made (see the log)")
        encoder, sha = made
        key = f"{backbone_key}|int8:{sha}"
        x8 = extract_features(paths, key, lambda: encoder, input_size, cache)
        if x8.kept != list(range(len(paths))):
            return float32("some photos could not be embedded again with INT8")
        tr, va = idx["train"], idx["val"]
        acc32, = head_val_accuracy(x[tr], y[tr], [x[va]], y[va], n_classes, config)
        acc8, acc8_on32 = head_val_accuracy(x8.features[tr], y[tr], [x8.features[va], x[va]], y[va], n_classes, config)
    except Exception:  # noqa: BLE001 - a faster path must never fail a run
        log.warning("checking the INT8 engine of %s failed; extracting with float32", backbone_key, exc_info=True)
        return float32("checking the INT8 engine failed (see the log)")
    passed = keeps_accuracy(acc32, acc8, acc8_on32)
    checked = {"val_accuracy_float32": round(acc32, 4), "val_accuracy_int8": round(acc8, 4),
               "val_accuracy_int8_head_on_float32": round(acc8_on32, 4), "n_val": int(len(idx["val"]))}
    try:
        write_bytes_atomic(verdict_path(int8_engine_path(backbone_key, input_size)),
                           json.dumps({"engine_sha": sha, "passed": passed, **checked}).encode())
    except OSError:  # the next run checks again
        log.warning("could not store the INT8 verdict of %s", backbone_key, exc_info=True)
    report = {**report, "checked": "this run", **checked}
    if not passed:
        return float32("INT8 lost more than 0.5 points of validation accuracy")
    return Int8Plan(engine="int8", feature_key=key, encoder=encoder, report={**report, "engine": "int8"}), x8.features


# The settings a check needs (the head's, and what names the backbone): the rest of a run's do not matter to it.
_CHECK_SETTINGS = ("backbone", "input_size", "seed", "epochs", "batch_size", "lr", "dropout")


def request_path(engine_file):
    """Where a first run leaves its request for the INT8 check of ``engine_file`` (``<hash>.int8.check.json``)."""
    return engine_file.with_suffix(".check.json")


def check_later(plan: Int8Plan, config: TrainConfig, backbone_key: str, input_size: int, paths: list[str],
                y: np.ndarray, idx: dict, n_classes: int) -> tuple[dict, Callable[[], None] | None]:
    """A first run's INT8 check (a plan with ``check``), handed to a process of its own: ``(report, start)``,
    this run's ``extraction`` report and the function that starts the check (the run calls it once it is saved,
    so the check does not slow it down; None when there is nothing to start). Only ImageNet weights are
    checked (the request names no weights file). A failure to start is logged: the next run asks again."""
    from .engine import int8_engine_path

    def float32(reason: str) -> tuple[dict, None]:
        return {**plan.report, "engine": "float32", "reason": reason}, None

    if config.weights != "imagenet":
        return float32("INT8 is checked for ImageNet weights only")
    if len(idx["val"]) == 0:
        return float32("no validation photos to check INT8 on")
    request = request_path(int8_engine_path(backbone_key, input_size))
    body = {"settings": {name: getattr(config, name) for name in _CHECK_SETTINGS}, "paths": [str(p) for p in paths],
            "labels": [int(v) for v in y], "train": [int(i) for i in idx["train"]], "val": [int(i) for i in idx["val"]],
            "classes": int(n_classes)}
    try:
        write_bytes_atomic(request, json.dumps(body).encode())
    except OSError:
        log.warning("could not ask for the INT8 check of %s; the next run asks again", backbone_key, exc_info=True)
        return float32("the INT8 check could not be asked for (see the log)")

    def start() -> None:
        start_tlcore(["prepare", "--int8-check", str(request), "--json"], request.with_suffix(".log"),
                     f"the INT8 check of {backbone_key}")

    return {**plan.report, "engine": "float32", "reason": "INT8 is being checked in the background on this run's "
            "photos; later runs use it if it keeps validation accuracy"}, start


def _read_request(path) -> tuple[TrainConfig, list[str], np.ndarray, dict, int]:
    """A check request, refused in one sentence unless every part has the shape :func:`check_later` writes."""
    try:
        body = json.loads(open(path, encoding="utf-8").read())
        settings = {k: body["settings"][k] for k in _CHECK_SETTINGS}
        paths, labels, n = body["paths"], body["labels"], body["classes"]
        idx = {"train": body["train"], "val": body["val"]}
        ok = (all(isinstance(p, str) for p in paths) and isinstance(n, int) and n >= 2
              and len(labels) == len(paths) and all(isinstance(v, int) and 0 <= v < n for v in labels)
              and all(isinstance(i, int) and 0 <= i < len(paths) for ids in idx.values() for i in ids))
        config = TrainConfig(**settings) if ok else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TLError(f"INT8 check request {str(path)!r} cannot be read ({type(exc).__name__})") from None
    if config is None:
        raise TLError(f"INT8 check request {str(path)!r} is not one a training run wrote")
    check_settings(config)
    return config, paths, np.asarray(labels, dtype=np.int64), idx, n


def run_check(request) -> dict:
    """The background half of a first run's INT8 check: read the request (only one inside this machine's engine
    cache), take the photos' float32 features from the cache and check INT8 on them (:func:`check_int8`), unless
    another process checks it already or a verdict exists. Returns the report; the verdict is on disk."""
    from .frozen import FrozenBackbone

    request = confine(default_cache_dir() / "engines", request, "INT8 check request")
    if not request.is_file():
        raise TLError(f"there is no INT8 check request at {str(request)!r}; a first training run writes it")
    lock = os.open(request.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return {"engine": "float32", "reason": "another process is checking INT8 already"}
        config, paths, y, idx, n = _read_request(request)
        frozen = FrozenBackbone(config.backbone, "imagenet", config.input_size, config.seed)
        plan = plan_extraction(config, frozen.key, frozen.size)
        if not plan.check:
            report = plan.report
        else:
            cache = FeatureCache()
            feats = extract_features(paths, frozen.key, frozen.encoder, frozen.size, cache)
            if feats.kept != list(range(len(paths))):
                report = {**plan.report, "engine": "float32",
                          "reason": "some of the run's photos are gone; the next run checks again"}
            else:
                report = check_int8(plan, frozen.model, frozen.key, frozen.size, paths, feats.features, y, idx, n,
                                    config, cache)[0].report
        request.unlink(missing_ok=True)
        return report
    finally:
        os.close(lock)
