"""Job command lines built from validated settings: the one place a :class:`~tlcore.training.pipeline.TrainConfig`
becomes ``python -m tlcore train|finetune`` arguments.

Pages, the from-scratch twin and resume all build their commands here, never by hand and never
from a command line read back from disk. Settings read from a file a user could have supplied (a
checkpoint's ``state.json``, a run's ``config.json``) go through :func:`config_from_settings` first.
Every value is written as ``--option=value``, so a value that starts with ``-`` stays a value.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ..io.errors import TLError
from ..backbones.registry import get_spec
from ..io.settings import as_positional, option_name, to_options
from .config import FINE_TUNE_SETTINGS, TrainConfig
from .pipeline import validate_config

__all__ = ["TRAIN_OPTIONS", "FINETUNE_OPTIONS", "FINETUNE_RENAMES", "train_args", "finetune_args", "config_from_settings",
           "check_config"]

# Each TrainConfig field and the ``train`` option that sets it (the field's own: tlcore.io.settings.option_name).
TRAIN_OPTIONS = {f.name: option_name(TrainConfig, f.name) for f in fields(TrainConfig)}
# ``finetune`` takes the fine-tuning fields only, three of them under shorter names (what they mean there); the
# first name of each is the one job command lines use.
FINETUNE_RENAMES = {"fine_tune_layers": ("--layers",), "fine_tune_lr": ("--lr", "--fine-tune-lr"),
                    "fine_tune_epochs": ("--epochs",)}
FINETUNE_OPTIONS = {name: FINETUNE_RENAMES.get(name, (TRAIN_OPTIONS[name],))[0] for name in FINE_TUNE_SETTINGS}

_NULLABLE = {"weights": str, "clip_norm": float, "input_size": int}  # fields whose default or value may be None


def check_config(config: TrainConfig) -> TrainConfig:
    """``config`` if training could start with it (the checks :func:`tlcore.training.pipeline.train` makes first, and a
    known backbone), else :class:`TLError` naming the bad value."""
    get_spec(config.backbone)
    validate_config(config)
    return config


def train_args(config: TrainConfig, data: str | Path, out: str | Path) -> list[str]:
    """``tlcore train`` arguments that train ``config`` on ``data`` into the run folder ``out``."""
    check_config(config)
    return ["train", as_positional(data), f"--out={out}", *to_options(config, TRAIN_OPTIONS)]


def finetune_args(config: TrainConfig, run_dir: str | Path, out: str | Path) -> list[str]:
    """``tlcore finetune`` arguments that fine-tune the run ``run_dir`` with ``config``'s fine-tuning settings
    into ``out`` (its other settings come from the run itself)."""
    check_config(config)
    return ["finetune", as_positional(run_dir), f"--out={out}", *to_options(config, FINE_TUNE_SETTINGS, FINETUNE_RENAMES)]


def _kind_ok(name: str, value, default) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in _NULLABLE:
        kind = _NULLABLE[name]
        if kind is int:
            return value is None or (isinstance(value, int) and not isinstance(value, bool))
        return value is None or (number if kind is float else isinstance(value, str))
    if name == "split":
        return (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return number
    return isinstance(value, str)


def config_from_settings(settings, what: str) -> TrainConfig:
    """A checked :class:`TrainConfig` from ``settings`` read from a file (``what`` names it in the error):
    known fields only, each of its field's kind, then the checks of :func:`check_config`. A field the file
    does not hold keeps its default (files written before the field existed); anything else refuses."""
    if not isinstance(settings, dict):
        raise TLError(f"the {what} are not a set of training settings, so they are not used")
    known = {f.name: f.default for f in fields(TrainConfig)}
    unknown = sorted(str(k) for k in settings if k not in known)
    if unknown:
        raise TLError(f"the {what} hold the unknown setting {unknown[0]!r}, so they are not used")
    for name, value in settings.items():
        if not _kind_ok(name, value, known[name]):
            raise TLError(f"the {what} give {name} the value {value!r}, which it cannot take, so they are not used")
    config = TrainConfig(**{k: tuple(v) if k == "split" else v for k, v in settings.items()})
    try:
        return check_config(config)
    except TLError as exc:
        raise TLError(f"the {what} are not used: {exc}") from None
