"""The settings of a training run: one frozen dataclass whose fields carry their defaults, limits and help
(:mod:`tlcore.io.settings`). The CLI's options, the pages' widgets and a job's command line are derived from it;
the values are checked where training uses them (:func:`tlcore.training.pipeline.validate_config`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..backbones.registry import DEFAULT_BACKBONE
from ..data.resample import RESAMPLE_MODES
from ..io.settings import setting

__all__ = ["TrainConfig", "LOOPS", "STRATEGIES", "CLASS_WEIGHTS", "MIN_INPUT_SIZE", "MAX_INPUT_SIZE",
           "FINE_TUNE_SETTINGS"]

# Phase 1's training loops: "fit" the vectorised NumPy trainer (tlcore.training.head_fit), "tape" the GradientTape one
# (tlcore.training.tape_loop), which can clip gradients.
LOOPS = ("fit", "tape")
# Where fine-tuning runs (tlcore.training.distribute).
STRATEGIES = ("default", "mirrored", "multi-worker")
CLASS_WEIGHTS = ("auto", "balanced", "none")

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024  # the input sizes train() accepts, in pixels

_HEAD_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
_FINE_TUNE_LRS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults follow the usual transfer-learning practice."""

    backbone: str = setting(DEFAULT_BACKBONE, "the pretrained network (python -m tlcore backbones lists them)")
    weights: str | None = setting("imagenet", "imagenet, none (random) or a weights file")
    epochs: int = setting(20, "epochs of the new head on the frozen backbone", minimum=1, offered=(1, 100))
    batch_size: int = setting(32, "images per training step", minimum=1, offered=(8, 16, 32, 64),
                              label="batch size")
    lr: float = setting(1e-3, "learning rate of the head (about 1e-3 is usual)", above=0, offered=_HEAD_LRS,
                        label="learning rate")
    dropout: float = setting(0.2, "share of the features the head drops at each training step", minimum=0, below=1,
                             offered=(0.0, 0.8))
    split: tuple[float, float, float] = setting((0.8, 0.1, 0.1), "train,val,test fractions when the data has no splits")
    seed: int = setting(0, "seed of the split, the head's initialisation and the augmentation")
    class_weights: str = setting("auto", "weigh the classes' losses: auto (when imbalanced), balanced or none",
                                 choices=CLASS_WEIGHTS, label="class weights")
    # A count of layers that learn: layers with weights, BatchNorm left out (it stays frozen); 0 = feature extraction.
    fine_tune_layers: int = setting(0, "after the head, unfreeze this many of the backbone's top layers with weights "
                                       "(0: feature extraction only)", minimum=0, suggested=7, offered=(1, 999),
                                    label="fine-tune layers")
    fine_tune_epochs: int = setting(5, "epochs of fine-tuning", minimum=1, offered=(1, 20), label="fine-tune epochs")
    fine_tune_lr: float = setting(1e-5, "learning rate of fine-tuning (about 1e-5: a hundredth of the head's)", above=0,
                                  offered=_FINE_TUNE_LRS, label="fine-tune learning rate")
    patience: int = setting(3, "epochs without a better validation loss before fine-tuning stops", minimum=1,
                            offered=(1, 10))
    augment: bool = setting(False, "flip, and change brightness, contrast and saturation by up to the strength")
    augment_copies: int = setting(2, "augmented variants per training photo (their features are cached too)",
                                  minimum=1, maximum=10, label="augmented copies")
    augment_strength: float = setting(0.2, "brightness/contrast/saturation range of the augmentation", minimum=0,
                                      below=1, offered=(0.0, 0.6), label="augmentation strength")
    resample: str = setting("none", "rebalance the training photos: none, oversample or undersample",
                            choices=RESAMPLE_MODES)
    early_stopping: bool = setting(True, "stop fine-tuning when validation loss stops improving (after patience "
                                         "epochs)", option="--no-early-stopping",
                                   flag_help="fine-tune for all epochs, without stopping when validation loss stops "
                                             "improving")
    strategy: str = setting("default", "where fine-tuning runs: this device, mirrored (every GPU of this machine) or "
                                       "multi-worker (the machines in TF_CONFIG); the batch is split across them",
                            choices=STRATEGIES)
    loop: str = setting("fit", "how the head is trained: fit (fast, vectorised) or tape (a tf.GradientTape step loop "
                               "that can clip gradients)", choices=LOOPS)
    clip_norm: float | None = setting(None, "with loop tape: scale each step's gradients down to this global norm",
                                      above=0, offered=(0.1, 100.0), suggested=1.0, metavar="X", label="clip norm")
    input_size: int | None = setting(None, "side of the square input in pixels (default: the backbone's own, 224 for "
                                           "Lite0); smaller is faster and less accurate", minimum=MIN_INPUT_SIZE,
                                     maximum=MAX_INPUT_SIZE, unit="pixels", metavar="PX", label="input size")
    int8_extraction: bool = setting(True, "where the CPU has int8 dot products (VNNI, AMX), embed with an INT8 copy "
                                          "of the backbone when a head on its features keeps validation accuracy "
                                          "within 0.5 points of float32", option="--no-int8-extraction",
                                    flag_help="always embed with the float32 backbone, even where INT8 would be "
                                              "faster", label="INT8 extraction")


# What fine_tune() takes from its config; everything else comes from the saved run.
FINE_TUNE_SETTINGS = ("fine_tune_layers", "fine_tune_epochs", "fine_tune_lr", "patience", "batch_size", "augment",
                      "strategy", "augment_strength", "resample", "early_stopping")
