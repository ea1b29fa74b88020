"""The settings of a training run, with their defaults: one frozen dataclass that the CLI, the pages and a job's
command line all start from. The values are checked where training uses them (:mod:`tlcore.training.pipeline`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..backbones.registry import DEFAULT_BACKBONE

__all__ = ["TrainConfig", "LOOPS", "MIN_INPUT_SIZE", "MAX_INPUT_SIZE", "FINE_TUNE_SETTINGS"]

# Phase 1's training loops: "fit" the vectorised NumPy trainer (tlcore.training.head_fit), "tape" the GradientTape one
# (tlcore.training.tape_loop), which can clip gradients.
LOOPS = ("fit", "tape")

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024  # the input sizes train() accepts, in pixels


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults follow the usual transfer-learning practice."""

    backbone: str = DEFAULT_BACKBONE
    weights: str | None = "imagenet"  # "imagenet", None (random) or a weights file
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    dropout: float = 0.2
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    class_weights: str = "auto"  # "auto" (when imbalanced), "balanced" or "none"
    fine_tune_layers: int = 0  # 0 = feature extraction only
    fine_tune_epochs: int = 5
    fine_tune_lr: float = 1e-5
    patience: int = 3  # early stopping on validation loss while fine-tuning
    augment: bool = False  # flip and brightness/contrast/saturation ±augment_strength on training images
    augment_copies: int = 2  # augmented variants per training image (their features are cached too)
    augment_strength: float = 0.2  # brightness/contrast/saturation range of the augmentation
    resample: str = "none"  # rebalance the training set: "none", "oversample" or "undersample" (tlcore.data.resample)
    early_stopping: bool = True  # stop fine-tuning when validation loss stops improving (after `patience` epochs)
    strategy: str = "default"  # where fine-tuning runs: "default", "mirrored" or "multi-worker" (tlcore.training.distribute)
    loop: str = "fit"  # phase 1's training loop, one of LOOPS
    clip_norm: float | None = None  # with loop "tape": clip each step's gradients to this global norm
    input_size: int | None = None  # side of the square input in pixels; None: the backbone's own (224 for Lite0)


# What fine_tune() takes from its config; everything else comes from the saved run.
FINE_TUNE_SETTINGS = ("fine_tune_layers", "fine_tune_epochs", "fine_tune_lr", "patience", "batch_size", "augment",
                       "strategy", "augment_strength", "resample", "early_stopping")
