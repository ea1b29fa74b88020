"""Transfer learning in two phases: a head on cached features, then optional fine-tuning."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from ..data.health import IMBALANCE_RATIO
from .alarms import alarm, config_alarms, few_images_alarms, imbalance_alarms
from ..data.augment import AugmentConfig, augment_image
from .config import FINE_TUNE_SETTINGS, LOOPS, TrainConfig
from ..io.settings import check_settings
from .checkpoint import (Checkpoint, CheckpointCallback, check_matches, checkpoint_dir, data_fingerprint,
                         load_checkpoint, restore_training)
from ..data.datasets import Dataset, assign_splits, check_classes, load_dataset, stratified_split
from ..analysis.diagnosis import Done, diagnose
from .distribute import build_for_fit, check_strategy, fine_tuning_classifier, make_strategy
from ..io.errors import TLError
from ..jobs.events import AUGMENTING, EVALUATING, FINE_TUNING, SAVING, TRAINING, PhaseCallback, no_phase
from ..analysis.evaluate import classification_metrics
from .features import FeatureCache, extract_features
from .frozen import FrozenBackbone
from .ray_extract import LOCAL_EXECUTOR, EncoderRecipe, RayExtraction, Spare, too_few_to_borrow
from .head_fit import HeadTrainer
from .int8_choice import Int8Plan, check_later, plan_extraction
from ..data.images import load_image
from .ledger import fingerprint_test_set
from ..models.classifier import build_classifier, build_head
from ..models.inference import traced_inference
from ..data.resample import check_resample, resample_indices
from ..models.run import load_run, save_run
from ..models.run_files import TENSORBOARD_DIR, read_run_json
from .tape_loop import TapeTrainer, check_clip_norm
from .tensorboard_log import RunLog, staged_logs, write_run_logs

__all__ = ["train", "fine_tune", "validate_config", "ImageBatches", "held_out_results"]

EpochCallback = Callable[[int, dict], None]


def validate_config(config: TrainConfig) -> None:
    """Raise :class:`TLError` for the first setting training cannot start with, repeating its value."""
    check_strategy(config.strategy)
    check_resample(config.resample)
    if config.loop not in LOOPS:
        raise TLError(f"unknown training loop {config.loop!r}; choose one of {', '.join(LOOPS)}")
    check_clip_norm(config.clip_norm)
    check_settings(config)  # each field's own limits (tlcore.training.config)
    if config.clip_norm is not None and config.loop != "tape":
        raise TLError(f"gradient clipping (clip norm {config.clip_norm!r}) needs the tape loop, not loop {config.loop!r}")
    # Fail before the expensive feature extraction, and also for data that brings its own splits.
    stratified_split([], config.split, config.seed)


def _checkpoint_settings(config: TrainConfig) -> dict:
    """The settings a resumed run must share: all but the strategy, so a run may resume on other hardware."""
    return {k: v for k, v in asdict(config).items() if k != "strategy"}


def _advice(config: TrainConfig) -> list[dict]:
    """Warnings when settings stray from the usual practice (they are allowed); the same as the pages show."""
    return config_alarms(config)


def _augment_config(config: TrainConfig) -> AugmentConfig:
    s = float(config.augment_strength)
    return AugmentConfig(brightness=s, contrast=s, saturation=s)


class _Progress(keras.callbacks.Callback):
    """Forwards each epoch's logs to a plain ``(epoch, logs)`` callable and records history."""

    def __init__(self, phase: str, history: list, on_epoch: EpochCallback | None, should_stop):
        super().__init__()
        self.phase, self.history, self.on_epoch, self.should_stop = phase, history, on_epoch, should_stop

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": len(self.history) + 1, "phase": self.phase,
                 **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}}
        self.history.append(entry)
        if self.on_epoch:
            self.on_epoch(entry["epoch"], dict(entry))
        if self.should_stop and self.should_stop():
            self.model.stop_training = True


class _BatchProgress(keras.callbacks.Callback):
    """Reports the batches of a long fit or predict as they end: ``report(batches_done, epoch)`` (epoch from 1;
    0 when predicting)."""

    def __init__(self, report: Callable[[int, int], None]):
        super().__init__()
        self.report, self.epoch = report, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self.report(0, self.epoch)  # a new epoch at batch 0, not the last one's end

    def on_train_batch_end(self, batch, logs=None):
        self.report(batch + 1, self.epoch)

    def on_predict_batch_end(self, batch, logs=None):
        self.report(batch + 1, 0)


class ImageBatches(keras.utils.PyDataset):
    """Decoded image batches from files (for fine-tuning, which needs pixels, not features)."""

    def __init__(self, paths, labels, size, batch_size, shuffle_seed=None, sample_weights=None, augment=False,
                 augment_config: AugmentConfig = AugmentConfig()):
        super().__init__()
        self.augment, self.augment_config = augment, augment_config
        self.paths, self.labels, self.size, self.batch_size = list(paths), np.asarray(labels), size, batch_size
        self.sample_weights = sample_weights
        self.order = np.arange(len(self.paths))
        self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        if self.rng is not None:
            self.rng.shuffle(self.order)

    def __len__(self):
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, index):
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images = [load_image(self.paths[i], self.size) for i in idx]
        if self.augment:
            images = [augment_image(img, self.rng or np.random.default_rng(), self.augment_config) for img in images]
        x = np.stack(images).astype(np.float32)
        if self.sample_weights is None:
            return x, self.labels[idx]
        return x, self.labels[idx], self.sample_weights[idx]

    def on_epoch_end(self):
        if self.rng is not None:
            self.rng.shuffle(self.order)


def _class_weights(y: np.ndarray, n_classes: int, mode: str, classes, warnings: list,
                   resample: str = "none") -> dict | None:
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    imbalanced = len(present) and present.max() / present.min() > IMBALANCE_RATIO
    if imbalanced:
        largest, smallest = classes[int(counts.argmax())], classes[int(np.where(counts > 0, counts, counts.max() + 1).argmin())]
        note = ("resampling balances them" if resample != "none" else
                "class weights balance them" if mode != "none" else "consider class weights")
        warnings.append(alarm("class_imbalance", f"training classes are imbalanced ({largest!r} has {counts.max()}, "
                              f"{smallest!r} has {present.min()} images); {note}", largest=largest,
                              n_largest=int(counts.max()), smallest=smallest, n_smallest=int(present.min())))
    if resample != "none":
        return None  # the resampled classes are balanced already; weights on top would over-correct
    if mode == "balanced" or (mode == "auto" and imbalanced):
        # The sklearn "balanced" formula: n / (k * count).
        return {i: float(len(y) / (len(present) * c)) for i, c in enumerate(counts) if c > 0}
    return None


def _augmenter(seed: int, copy: int, augment_config: AugmentConfig = AugmentConfig()):
    """A deterministic augmentation per (seed, copy, image content), so its features can be cached."""

    def transform(image: np.ndarray, sha: str) -> np.ndarray:
        return augment_image(image, np.random.default_rng([seed, copy, int(sha[:15], 16)]), augment_config)

    return transform


def _augment_key(config: TrainConfig, copy: int) -> str:
    a = _augment_config(config)
    return f"aug(flip={a.flip},b={a.brightness},c={a.contrast},s={a.saturation},seed={config.seed},copy={copy})"


@dataclass
class _Checkpoints:
    """Where this run checkpoints each epoch (``folder`` None: nowhere) and the checkpoint it resumes, if any."""

    folder: Path | None
    settings: dict
    data: str
    resume: Checkpoint | None = None

    def resumes(self, phase: str) -> bool:
        return self.resume is not None and self.resume.phase == phase

    def bind_data(self, items) -> None:
        """Record the (path, label, split) triples trained on; a resumed checkpoint must have the same."""
        self.data = data_fingerprint(items)
        if self.resume is not None:
            # Settings added since the checkpoint was written count as their defaults.
            check_matches(self.resume, self.settings, self.data, _checkpoint_settings(TrainConfig()))

    def callbacks(self, phase: str, history: list, early_stopping=None, optimizer_arrays=None) -> list:
        if self.folder is None:
            return []
        state = lambda: {"phase": phase, "history": history, "settings": self.settings, "data": self.data}  # noqa: E731
        return [CheckpointCallback(self.folder, state, early_stopping, optimizer_arrays)]

    def finish(self) -> None:
        """The run is saved: its checkpoints are no longer needed."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _start_checkpoints(out, resume: bool, settings: dict) -> _Checkpoints:
    """Checkpoints beside ``out``; with ``resume``, the one to continue from (an error when there is none)."""
    folder = checkpoint_dir(out) if out is not None else None
    found = None
    if resume:
        if folder is None:
            raise TLError("resuming needs the run folder (--out) the interrupted training was saving to")
        found = load_checkpoint(folder)
        if found is None:
            raise TLError(f"there is no checkpoint to resume in {str(folder)!r}; train again without --resume")
    # Through JSON, so tuples and lists compare equal to what the checkpoint stored.
    return _Checkpoints(folder, json.loads(json.dumps(settings)), "", found)


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping that can start from a checkpoint's counters and best weights."""

    def __init__(self, *args, resume_state: dict | None = None, best_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume_state, self.resume_best = resume_state, best_weights

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.resume_state:
            self.wait = self.resume_state["wait"]
            self.best = self.resume_state["best"] if self.resume_state["best"] is not None else self.best
            self.best_epoch = self.resume_state["best_epoch"]
            self.best_weights = self.resume_best


def _fine_tune_phase(backbone, head, paths, y, idx, size, config, class_weight, history, on_epoch, should_stop,
                     warnings, checkpoints: _Checkpoints, strategy=None, on_phase: PhaseCallback = no_phase):
    """Unfreeze the backbone's top layers and train the whole classifier at a low rate.

    ``strategy`` (default: made from ``config.strategy``) places the variables
    and splits each batch of ``config.batch_size`` images across its replicas.
    ``on_phase(FINE_TUNING, ...)`` hears of each batch (an epoch of photos through the backbone takes long).
    """
    # Resampling changes the image list itself (not the weights), on the training split only.
    train_ids = idx["train"][resample_indices(y[idx["train"]], config.resample, config.seed)]
    # Announced before the classifier is built (seconds), as the epoch it is about to train, batch 0.
    first = checkpoints.resume.epochs_done + 1 if checkpoints.resumes("fine_tune") else 1
    on_phase(FINE_TUNING, done=0, total=math.ceil(len(train_ids) / config.batch_size),
             epoch=min(first, config.fine_tune_epochs), epochs=config.fine_tune_epochs)
    strategy = strategy if strategy is not None else make_strategy(config.strategy)
    classifier, layers = fine_tuning_classifier(strategy, backbone, head, config.fine_tune_layers,
                                                config.fine_tune_lr)
    if not layers:
        warnings.append(alarm("nothing_unfrozen", f"the top {config.fine_tune_layers} backbone layers have no "
                              "trainable weights (pooling, activation or BatchNorm), so only the head is trained; "
                              "unfreeze more layers", layers=config.fine_tune_layers))
    if config.strategy != "default" and strategy.num_replicas_in_sync == 1:
        warnings.append(alarm("one_replica", f"strategy {config.strategy!r} found only one device, so fine-tuning "
                              "ran on one replica", strategy=config.strategy))
    initial_epoch, early_state, best_weights = 0, None, None
    if checkpoints.resumes("fine_tune"):
        with strategy.scope():  # the optimizer's restored variables must be placed like the model's
            best_weights = restore_training(checkpoints.resume, classifier)
        initial_epoch = checkpoints.resume.epochs_done
        early_state = checkpoints.resume.state.get("early_stopping")
    sw = None
    if class_weight:
        sw = np.array([class_weight[int(c)] for c in y[train_ids]], np.float32)
    train_batches = ImageBatches([paths[i] for i in train_ids], y[train_ids], size, config.batch_size,
                                 config.seed, sw, augment=config.augment, augment_config=_augment_config(config))
    build_for_fit(classifier, strategy, train_batches[0])
    val_batches, early = None, None
    if len(idx["val"]):
        val_batches = ImageBatches([paths[i] for i in idx["val"]], y[idx["val"]], size, config.batch_size)
    if len(idx["val"]) and config.early_stopping:
        early = _ResumableEarlyStopping("val_loss", patience=config.patience, restore_best_weights=True,
                                        resume_state=early_state, best_weights=best_weights)
    # Early stopping first (it may end training), then the history, then the checkpoint that stores both.
    callbacks = ([early] if early else []) + [_Progress("fine_tune", history, on_epoch, should_stop)]
    callbacks += checkpoints.callbacks("fine_tune", history, early)
    callbacks.append(_BatchProgress(lambda n, epoch: on_phase(FINE_TUNING, done=n, total=len(train_batches),
                                                               epoch=epoch, epochs=config.fine_tune_epochs)))
    if initial_epoch < config.fine_tune_epochs:
        # shuffle=False: ImageBatches shuffles with the run's seed; Keras would also reorder the batches from
        # Python's global random state, which differs between otherwise identical runs (and strategies).
        classifier.fit(train_batches, validation_data=val_batches, epochs=config.fine_tune_epochs, verbose=0,
                       callbacks=callbacks, initial_epoch=initial_epoch, shuffle=False)
    return classifier, layers


class _Scored:
    """The ``evaluating`` phase: held-out photos scored so far (validation, then test), by batch."""

    def __init__(self, on_phase: PhaseCallback, idx, batch_size: int):
        self.on_phase, self.batch_size = on_phase, batch_size
        self.total, self.done = int(len(idx["val"]) + len(idx["test"])), 0
        on_phase(EVALUATING, done=0, total=self.total)

    def batches(self, ids) -> keras.callbacks.Callback:
        """A callback for the predict of one split (``ids``), counting its batches on top of the splits before."""
        return _BatchProgress(lambda n, _epoch: self.on_phase(
            EVALUATING, done=self.done + min(n * self.batch_size, len(ids)), total=self.total))

    def after(self, ids, probs):
        self.done += len(ids)
        self.on_phase(EVALUATING, done=self.done, total=self.total)
        return probs


def held_out_results(predict, paths, labels, y, idx, classes) -> tuple[dict, list[dict]]:
    """Metrics per held-out split, and every held-out image's probabilities (for galleries)."""
    metrics, predictions = {}, []
    for split in ("val", "test"):
        ids = idx[split]
        probs = predict(ids) if len(ids) else np.zeros((0, len(classes)), np.float32)
        metrics[split] = classification_metrics(y[ids], probs, classes)
        predictions += [{"path": paths[i], "label": labels[i], "split": split,
                         "probs": [round(float(p), 6) for p in row]} for i, row in zip(ids, probs)]
    return metrics, predictions


def _embedder(classifier, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Pixels to features by the ``classifier``'s backbone layer ``name``, in inference mode, traced once on first
    use (a failure then is the projector's, which never fails a run): called eagerly, batch by batch, it embedded
    the projector's photos about three times slower (6.5 s against 2 s for 100 photos of Lite0 at 224 pixels)."""
    traced = []

    def embed(pixels):
        if not traced:
            traced.append(traced_inference(classifier.get_layer(name)))
        return traced[0](pixels)

    return embed


def _log_name(out) -> str:
    """The run's name in TensorBoard's HParams: its folder and the one above (a job's ``<job>/run``)."""
    path = Path(out).absolute()
    return f"{path.parent.name}/{path.name}"


def _done(config: TrainConfig, fine_tuned: bool, class_weight) -> Done:
    """What this training did, for the diagnosis's remedies (run_files.training_done reads it back)."""
    return Done(fine_tuned=fine_tuned, augmented=bool(config.augment), class_weighted=class_weight is not None,
                oversampled=config.resample == "oversample", undersampled=config.resample == "undersample")


def _summary(classes, spec_name, idx, y, metrics, history, done: Done, **extra) -> dict:
    counts = {sp: {c: int(np.sum(y[idx[sp]] == k)) for k, c in enumerate(classes)} for sp in ("train", "val", "test")}
    return {
        "classes": classes,
        "backbone": spec_name,
        "n_train": int(len(idx["train"])),
        "n_val": int(len(idx["val"])),
        "n_test": int(len(idx["test"])),
        "counts": counts,
        "val_accuracy": metrics["val"]["accuracy"],
        "test_accuracy": metrics["test"]["accuracy"],
        "val": metrics["val"],
        "test": metrics["test"],
        "history": history,
        # Whether class weights were applied ("auto" applies them only to imbalanced classes): not in config.json.
        "class_weighted": done.class_weighted,
        "diagnosis": diagnose(history, done=done),
        **extra,
    }


def train(
    source,
    config: TrainConfig = TrainConfig(),
    out: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    on_extract: Callable[[int, int], None] | None = None,
    cache: FeatureCache | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
    on_phase: PhaseCallback | None = None,
    ray_address: str | None = None,
    ray_spare: Spare | None = None,
) -> dict:
    """Train a classifier on ``source`` (any input :func:`load_dataset` accepts).

    Phase 1 embeds every image once with the frozen backbone (cached on disk)
    and trains the head on the embeddings; with ``config.augment``, augmented
    copies of the training images are embedded (and cached) too;
    ``config.resample`` rebalances the training examples (never the held-out
    ones). Phase 2, when ``config.fine_tune_layers > 0``, unfreezes the
    backbone's top layers and trains at ``config.fine_tune_lr`` with early
    stopping on validation loss (unless ``config.early_stopping`` is off).
    ``on_epoch(epoch, logs)`` receives each epoch's losses and accuracies;
    ``on_extract(done, total)`` the embedding progress (0 first, then at least
    every second); ``on_phase(phase, done=, total=, **labels)`` hears each
    other phase of :mod:`tlcore.jobs.events` before it starts (building the
    backbone, preparing its engine, augmented copies, head training,
    fine-tuning by batch, scoring the held-out photos, saving);
    ``should_stop()`` is polled after each epoch. When ``out`` is given the
    run is saved there, and a checkpoint is written beside it after every
    epoch (see :mod:`tlcore.training.checkpoint`) until the run is saved; with
    ``resume``, training continues from that checkpoint (same settings and
    data required). Returns the summary dict that the CLI prints (classes,
    counts, ``head_counts`` (examples per class the head trained on),
    accuracies, history, timings, skipped files, warnings: the alarms of
    :mod:`tlcore.training.alarms`). The test split is predicted and its accuracy
    reported (for scripts and the model card), but training is not a look at it:
    ``test_fingerprint`` identifies the test photos for :mod:`tlcore.training.ledger`,
    which counts the looks a person takes. With ``ray_address`` the embeddings are computed on that Ray cluster
    (:mod:`tlcore.training.ray_extract`), into the same cache, on its free CPUs only under a ``ray_spare`` rule (a job
    the cluster runs); the summary's ``executor`` says where they were.
    """
    t_start = time.perf_counter()
    phase = on_phase or no_phase
    validate_config(config)
    # Made before any TensorFlow work: TensorFlow refuses a multi-worker strategy made later.
    strategy = make_strategy(config.strategy) if config.fine_tune_layers > 0 else None
    checkpoints = _start_checkpoints(out, resume, _checkpoint_settings(config))
    # The frozen backbone runs as a cached TFLite engine (Keras for random weights or on failure); random-init
    # backbones are seeded, so they are reproducible too.
    frozen = FrozenBackbone(config.backbone, config.weights, config.input_size, config.seed, phase)
    spec, size, backbone_key = frozen.spec, frozen.size, frozen.key
    get_backbone, get_encoder = frozen.model, frozen.encoder
    warnings = _advice(config)
    dataset = source if isinstance(source, Dataset) else load_dataset(source)
    classes = dataset.classes
    cache = cache if cache is not None else FeatureCache()

    # Issue 20: on a Ray cluster when one is named (each worker builds this encoder itself), else here. A job the
    # cluster runs (ray_spare) borrows the cluster's free CPUs only for many photos; with fewer it is a local run.
    local_executor = dict(LOCAL_EXECUTOR)
    if ray_address and ray_spare is not None and len(dataset.samples) < ray_spare.photos:
        ray_address, local_executor = None, {**LOCAL_EXECUTOR, "reason": too_few_to_borrow(ray_spare)}
    ray = RayExtraction(ray_address, EncoderRecipe(spec.name, config.weights, size, backbone_key, config.seed),
                        ray_spare) if ray_address else None
    extract = ray.extract if ray is not None else extract_features

    t0 = time.perf_counter()
    paths = [s.path for s in dataset.samples]
    # INT8 where the CPU has int8 dot products and an earlier check passed (tlcore.training.int8_choice); a
    # cluster's workers embed with the float32 engine, and so does a run whose photos may go to them.
    plan = plan_extraction(config, backbone_key, size) if ray is None else Int8Plan(
        report={"engine": "float32", "reason": "embedded on a Ray cluster, or here when it had no room, with the "
                                               "float32 engine its workers use"})
    feature_key, encoder_of = ((plan.feature_key, lambda: plan.encoder) if plan.engine == "int8"
                               else (backbone_key, get_encoder))
    feats = extract(paths, feature_key, encoder_of, size, cache, on_progress=on_extract)
    samples = [dataset.samples[i] for i in feats.kept]
    skipped = dataset.skipped + feats.skipped
    check_classes(samples, classes, "the data")
    splits = assign_splits(samples, dataset.has_splits, config.split, config.seed)
    class_index = {c: i for i, c in enumerate(classes)}
    y = np.array([class_index[s.label] for s in samples], dtype=int)
    idx = {sp: np.array([i for i, s in enumerate(splits) if s == sp], dtype=int) for sp in ("train", "val", "test")}
    train_counts = np.bincount(y[idx["train"]], minlength=len(classes))
    missing = [classes[i] for i in np.where(train_counts == 0)[0]]
    if missing:
        raise TLError(f"class {missing[0]!r} has no training images; add some or remove the class")
    if skipped:
        warnings.append(alarm("skipped_files", f"{len(skipped)} file(s) could not be read and were left out",
                              n=len(skipped)))
    if len(idx["val"]) == 0:
        warnings.append(alarm("no_validation", "no validation images; add more images per class to get a validation score"))
    if len(idx["test"]) == 0:
        warnings.append(alarm("no_test_split", "no test images, so test accuracy is not measured"))
    # Against the data tiers, which count a class's photos in every split (tlcore.data.advice).
    warnings += few_images_alarms(dict(zip(classes, np.bincount(y, minlength=len(classes)).tolist())),
                                  dict(zip(classes, train_counts.tolist())))
    held_out = [n for n in (len(idx["val"]), len(idx["test"])) if n]
    if held_out and min(held_out) < 10:  # few-shot data: the splits exist but their scores move in big steps
        points = round(100 / min(held_out))
        warnings.append(alarm("few_held_out", f"only {len(idx['val'])} validation and {len(idx['test'])} test images, "
                              f"so one image moves an accuracy by {points} points; treat these scores as rough",
                              val=int(len(idx["val"])), test=int(len(idx["test"])), points=points))
    class_weight = _class_weights(y[idx["train"]], len(classes), config.class_weights, classes, warnings,
                                  config.resample)
    warnings += imbalance_alarms(config, dict(zip(classes, train_counts.tolist())))
    checkpoints.bind_data((s.path, s.label, sp) for s, sp in zip(samples, splits))

    x = feats.features
    start_check = None
    if plan.check:  # first run of this backbone on an int8 CPU: INT8 is checked on these photos, after this run
        plan.report, start_check = check_later(plan, config, backbone_key, size, [s.path for s in samples], y, idx,
                                               len(classes))
    x_train, y_train = x[idx["train"]], y[idx["train"]]
    if config.augment:
        train_paths = [samples[i].path for i in idx["train"]]
        for copy in range(1, config.augment_copies + 1):
            key = f"{feature_key}|{_augment_key(config, copy)}" if feature_key else None
            counted = lambda done, total, copy=copy: phase(AUGMENTING, done=done, total=total, copy=copy,  # noqa: E731
                                                           copies=config.augment_copies)
            aug = extract(train_paths, key, encoder_of, size, cache, on_progress=counted,
                                   transform=_augmenter(config.seed, copy, _augment_config(config)))
            x_train = np.concatenate([x_train, aug.features])
            y_train = np.concatenate([y_train, y[idx["train"]][aug.kept]])
    # Resampled after augmentation, so augmented copies are repeated or left out like their originals' class.
    order = resample_indices(y_train, config.resample, config.seed)
    x_train, y_train = x_train[order], y_train[order]
    head_counts = {c: int(n) for c, n in zip(classes, np.bincount(y_train, minlength=len(classes)))}
    t_extract = time.perf_counter() - t0

    # Phase 1: head on cached features.
    t0 = time.perf_counter()
    history: list[dict] = checkpoints.resume.history if checkpoints.resume is not None else []
    # Seed here, not earlier: whether the backbone was built (cache miss) must not change the head.
    keras.utils.set_random_seed(config.seed)
    head = build_head(x.shape[1], len(classes), config.dropout, standardize=config.weights is None)
    if config.weights is None:
        head.get_layer("head_standardize").set_statistics(x_train)
    trainer = (TapeTrainer(head, config.lr, seed=config.seed, clip_norm=config.clip_norm) if config.loop == "tape"
               else HeadTrainer(head, config.lr, seed=config.seed))
    val_data = (x[idx["val"]], y[idx["val"]]) if len(idx["val"]) else None
    initial_epoch = 0
    if checkpoints.resumes("head"):
        restore_training(checkpoints.resume, head, trainer.load_optimizer_arrays)
        initial_epoch = checkpoints.resume.epochs_done
    elif checkpoints.resumes("fine_tune"):
        initial_epoch = config.epochs  # the head phase had finished; its result is in the checkpoint's weights
    phase(TRAINING, epochs=config.epochs)
    trainer.fit(x_train, y_train, epochs=config.epochs, batch_size=config.batch_size, initial_epoch=initial_epoch,
                class_weight=class_weight, validation_data=val_data,
                callbacks=[_Progress("head", history, on_epoch, should_stop),
                           *checkpoints.callbacks("head", history, optimizer_arrays=trainer.optimizer_arrays)])
    t_train = time.perf_counter() - t0

    # Phase 2: fine-tune the top of the backbone, continuing from the phase-1 head.
    t_fine = 0.0
    fine_tuned_layers: list[str] = []
    classifier = None
    sample_paths = [s.path for s in samples]
    if config.fine_tune_layers > 0 and not (should_stop and should_stop()):
        t0 = time.perf_counter()
        classifier, fine_tuned_layers = _fine_tune_phase(
            get_backbone(), head, sample_paths, y, idx, size, config, class_weight, history,
            on_epoch, should_stop, warnings, checkpoints, strategy, phase)
        t_fine = time.perf_counter() - t0

    scored = _Scored(phase, idx, config.batch_size)

    def predict(ids):
        if classifier is None:
            return scored.after(ids, head.predict(x[ids], verbose=0))
        return scored.after(ids, classifier.predict(ImageBatches([sample_paths[i] for i in ids], y[ids], size,
                                                                 config.batch_size), verbose=0,
                                                    callbacks=[scored.batches(ids)]))

    # Absolute paths in the saved files: a later fine-tune or gallery may run from another directory.
    saved_paths = [os.path.abspath(p) for p in sample_paths]
    metrics, predictions = held_out_results(predict, saved_paths, [s.label for s in samples], y, idx, classes)
    summary = _summary(
        classes, spec.name, idx, y, metrics, history, _done(config, classifier is not None, class_weight),
        head_counts=head_counts,
        test_fingerprint=fingerprint_test_set([saved_paths[i] for i in idx["test"]]),
        fine_tuned_layers=fine_tuned_layers,
        replicas=classifier.distribute_strategy.num_replicas_in_sync if classifier is not None else 1,
        features={"cache_hits": feats.cache_hits, "computed": feats.computed},
        extraction=plan.report,
        executor=ray.executor() if ray is not None else local_executor,
        seconds={"extract": round(t_extract, 3), "train": round(t_train, 3),
                 "fine_tune": round(t_fine, 3), "total": round(time.perf_counter() - t_start, 3)},
        skipped=skipped,
        warnings=warnings,
    )
    if out is not None:  # metrics.json gets the timings so far; the returned total includes saving
        model = classifier or build_classifier(get_backbone(), head)  # building the backbone says so itself
        run_config = {"backbone": spec.name, "weights": config.weights, "input_size": size,
                      "train": asdict(config), "fine_tuned": classifier is not None}
        split_list = [{"path": p, "label": s.label, "split": sp} for p, s, sp in zip(saved_paths, samples, splits)]
        # The projector's photos: a head-only run's by their cached features, a fine-tuned one's by its backbone
        # (under a strategy, the classifier's copy of it).
        log = RunLog(_log_name(out), history, asdict(config), size, classes, metrics,
                     [(p, s.label, sp) for p, s, sp in zip(saved_paths, samples, splits)],
                     fine_tuned_layers=len(fine_tuned_layers), features=x if classifier is None else None,
                     embed=_embedder(classifier, spec.name) if classifier else None)
        with staged_logs(out) as logs:
            summary["warnings"] += write_run_logs(logs, log, on_phase=phase)
            phase(SAVING)
            save_run(out, model, classes, run_config, summary,
                     extra={"samples.json": split_list, "predictions.json": predictions},
                     folders={TENSORBOARD_DIR: logs})
        checkpoints.finish()
        summary["run_dir"] = str(out)
    if start_check is not None:
        start_check()
    summary["seconds"] = {**summary["seconds"], "total": round(time.perf_counter() - t_start, 3)}
    return summary


def fine_tune(
    run_dir: str | Path,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
    on_phase: PhaseCallback | None = None,
) -> dict:
    """Phase 2 on a saved run: unfreeze the top layers and continue from its head.

    Uses the run's own train/val/test assignment (``samples.json``), so the
    test split is never used for tuning. ``config`` supplies the fine-tuning
    settings (``fine_tune_layers`` >= 1, ``fine_tune_lr``,
    ``fine_tune_epochs``, ``patience``, ``batch_size``, ``augment``,
    ``augment_strength``, ``resample``, ``early_stopping``); the
    history continues from the run's. Saves to ``out`` (default: replace
    ``run_dir``), checkpointing each epoch beside it (``resume`` continues
    from that checkpoint), and returns the same summary as :func:`train`;
    ``on_phase`` hears the phases as in :func:`train`.
    """
    t_start = time.perf_counter()
    phase = on_phase or no_phase
    config = config or TrainConfig(fine_tune_layers=20)
    validate_config(config)  # before loading the model, which takes seconds
    if config.fine_tune_layers < 1:
        raise TLError(f"fine-tuning needs at least one layer to unfreeze, got {config.fine_tune_layers}")
    out = Path(out) if out is not None else Path(run_dir)
    checkpoints = _start_checkpoints(out, resume, _checkpoint_settings(config))
    # Before load_run, which is TensorFlow work: TensorFlow refuses a multi-worker strategy made later.
    strategy = make_strategy(config.strategy)
    run = load_run(run_dir)
    # The run's own settings (head epochs, lr, class weights, ...), with this call's fine-tuning settings on top.
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: tuple(v) if k == "split" else v for k, v in run.config.get("train", {}).items() if k in known}
    earlier_fine_tune_lr = saved.get("fine_tune_lr") if run.config.get("fine_tuned") else None
    tuning = {k: getattr(config, k) for k in FINE_TUNE_SETTINGS}
    config = TrainConfig(**{**asdict(config), **saved, **tuning, "backbone": run.spec.name,
                            "weights": saved.get("weights", "imagenet")})
    validate_config(config)
    samples = read_run_json(run_dir, "samples.json")
    previous = read_run_json(run_dir, "metrics.json")
    missing = [s["path"] for s in samples if not Path(s["path"]).is_file()]
    if missing:
        raise TLError(f"the run's image {missing[0]!r} no longer exists; train again on the current data")
    warnings = _advice(config)
    classes = run.classes
    paths = [s["path"] for s in samples]
    labels = [s["label"] for s in samples]
    y = np.array([classes.index(label) for label in labels], dtype=int)
    idx = {sp: np.array([i for i, s in enumerate(samples) if s["split"] == sp], dtype=int) for sp in ("train", "val", "test")}
    class_weight = _class_weights(y[idx["train"]], len(classes), config.class_weights, classes, warnings,
                                  config.resample)
    warnings += imbalance_alarms(config, dict(zip(classes, np.bincount(y[idx["train"]], minlength=len(classes)).tolist())))
    checkpoints.bind_data((s["path"], s["label"], s["split"]) for s in samples)
    if checkpoints.resume is not None:
        history = checkpoints.resume.history
    else:
        history = [dict(h) for h in previous.get("history", [])]
    backbone = run.model.get_layer(run.spec.name)
    head = run.model.get_layer("head")
    size = int(run.config.get("input_size", run.spec.input_size))
    keras.utils.set_random_seed(config.seed)
    t0 = time.perf_counter()
    classifier, layers = _fine_tune_phase(backbone, head, paths, y, idx, size, config, class_weight, history,
                                          on_epoch, should_stop, warnings, checkpoints, strategy, phase)
    t_fine = time.perf_counter() - t0
    scored = _Scored(phase, idx, config.batch_size)

    def predict(ids):
        return scored.after(ids, classifier.predict(ImageBatches([paths[i] for i in ids], y[ids], size,
                                                                 config.batch_size), verbose=0,
                                                    callbacks=[scored.batches(ids)]))

    metrics, predictions = held_out_results(predict, paths, labels, y, idx, classes)
    summary = _summary(
        classes, run.spec.name, idx, y, metrics, history, _done(config, True, class_weight),
        test_fingerprint=fingerprint_test_set([paths[i] for i in idx["test"]]),
        fine_tuned_layers=layers,
        replicas=strategy.num_replicas_in_sync,
        seconds={"extract": 0.0, "train": 0.0, "fine_tune": round(t_fine, 3),
                 "total": round(time.perf_counter() - t_start, 3)},
        skipped=previous.get("skipped", []),
        warnings=warnings,
    )
    run_config = {**run.config, "train": asdict(config), "fine_tuned": True}
    run_config.pop("classes", None)
    run_config.pop("tlcore_version", None)
    # The run's log continues: its epochs are copied and this fine-tuning's follow (all of them for a run
    # saved without logs, its fine-tuning epochs at its own rate).
    log = RunLog(_log_name(out), history, asdict(config), size, classes, metrics,
                 [(s["path"], s["label"], s["split"]) for s in samples], fine_tuned_layers=len(layers),
                 new_from=len(previous.get("history", [])) + 1, earlier_fine_tune_lr=earlier_fine_tune_lr,
                 embed=_embedder(classifier, run.spec.name))  # the strategy's copy
    with staged_logs(out) as logs:
        summary["warnings"] += write_run_logs(logs, log, parent=Path(run_dir) / TENSORBOARD_DIR, on_phase=phase)
        phase(SAVING)
        save_run(out, classifier, classes, run_config, summary,
                 extra={"samples.json": samples, "predictions.json": predictions},
                 folders={TENSORBOARD_DIR: logs})
    checkpoints.finish()
    summary["run_dir"] = str(out)
    return summary
