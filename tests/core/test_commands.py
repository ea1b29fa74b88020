"""Job command lines from settings (tlcore.training.commands): every TrainConfig field reaches the worker's parser as it
was, values that look like options stay values, and settings read from a file are checked before use."""
from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from tlcore.cli import build_parser
from tlcore.training.commands import FINETUNE_OPTIONS, TRAIN_OPTIONS, config_from_settings, finetune_args, train_args
from tlcore.io.errors import TLError
from tlcore.training.config import TrainConfig

# Every field away from its default, so a field the mapping forgot shows as a default on the other side.
ODD = TrainConfig(backbone="mobilenet_v2", weights=None, epochs=7, batch_size=8, lr=0.003, dropout=0.35,
                  split=(0.6, 0.25, 0.15), seed=42, class_weights="balanced", fine_tune_layers=12,
                  fine_tune_epochs=4, fine_tune_lr=3e-5, patience=5, augment=True, augment_copies=3,
                  augment_strength=0.3, resample="oversample", early_stopping=False, strategy="mirrored",
                  loop="tape", clip_norm=1.5, input_size=160, int8_extraction=False)


def test_the_odd_config_differs_from_the_defaults_in_every_field():
    default = TrainConfig()
    assert [f.name for f in fields(TrainConfig) if getattr(ODD, f.name) == getattr(default, f.name)] == []


def test_train_args_give_the_worker_every_setting():
    parsed = build_parser().parse_args(train_args(ODD, "/w/jobs/run-1/data", "/w/jobs/run-1/run"))
    assert (parsed.command, parsed.data, parsed.out) == ("train", "/w/jobs/run-1/data", "/w/jobs/run-1/run")
    assert set(TRAIN_OPTIONS) == {f.name for f in fields(TrainConfig)}
    got = {name: getattr(parsed, name) for name in TRAIN_OPTIONS}
    assert got == {**asdict(ODD), "split": ODD.split}


def test_finetune_args_give_the_worker_every_fine_tuning_setting():
    parsed = build_parser().parse_args(finetune_args(ODD, "/w/jobs/run-1/run", "/w/jobs/finetune-1/run"))
    assert (parsed.command, parsed.run_dir, parsed.out) == ("finetune", "/w/jobs/run-1/run", "/w/jobs/finetune-1/run")
    got = {name: getattr(parsed, name) for name in FINETUNE_OPTIONS}  # each option's value lands in its field
    assert got == {name: getattr(ODD, name) for name in FINETUNE_OPTIONS}


def test_a_value_that_looks_like_an_option_stays_a_value():
    config = TrainConfig(weights="--out=/elsewhere")  # a weights file by that name
    parsed = build_parser().parse_args(train_args(config, "-data", "--out"))
    assert (parsed.weights, parsed.data, parsed.out) == ("--out=/elsewhere", "./-data", "--out")


def test_train_args_refuse_settings_training_would_refuse():
    with pytest.raises(TLError, match="unknown backbone 'nope'"):
        train_args(TrainConfig(backbone="nope"), "d", "o")
    with pytest.raises(TLError, match="dropout must be in"):
        finetune_args(TrainConfig(dropout=1.5), "r", "o")


def test_settings_from_a_file_keep_defaults_for_fields_it_lacks():
    saved = {k: v for k, v in asdict(ODD).items() if k not in ("strategy", "clip_norm", "loop")}
    config = config_from_settings({**saved, "split": list(ODD.split)}, "settings")
    assert config == TrainConfig(**{**saved, "split": ODD.split})


@pytest.mark.parametrize("settings, message", [
    ([1, 2], "the settings of X are not a set of training settings, so they are not used"),
    ({"argv": ["sh"]}, "the settings of X hold the unknown setting 'argv', so they are not used"),
    ({"epochs": "2 --out=/elsewhere"},
     "the settings of X give epochs the value '2 --out=/elsewhere', which it cannot take, so they are not used"),
    ({"augment": 1}, "the settings of X give augment the value 1, which it cannot take, so they are not used"),
    ({"split": [0.5, 0.5]}, "the settings of X give split the value [0.5, 0.5], which it cannot take, so they are "
                            "not used"),
    ({"lr": float("nan")}, "the settings of X are not used: learning rate must be positive, got nan"),
    ({"input_size": 9.5}, "the settings of X give input_size the value 9.5, which it cannot take, so they are not used"),
    ({"input_size": 8}, "the settings of X are not used: input size must be a whole number of pixels from 32 to 1024, "
                        "got 8"),
    ({"backbone": "--out=/x"}, "the settings of X are not used: unknown backbone '--out=/x'"),
], ids=["not-a-dict", "unknown-key", "option-in-a-number", "number-for-a-flag", "short-split", "nan", "size-kind",
        "size-range", "backbone"])
def test_settings_from_a_file_refuse_in_one_sentence(settings, message):
    with pytest.raises(TLError) as info:
        config_from_settings(settings, "settings of X")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
