"""Settings defined once (tlcore.io.settings): each config field carries its default, limits and help, and the
command line, the job command lines and the limits checked are all derived from it."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace

import pytest

from tlcore.adversarial.attacks import AttackConfig
from tlcore.adversarial.corruptions import CORRUPTION_SETTINGS, CorruptionConfig
from tlcore.adversarial.defence import (CURVE_RENAMES, CURVE_SETTINGS, HARDEN_SETTINGS, HardenConfig, harden_args,
                                        robustness_args)
from tlcore.analysis.explain import IDEAL_SETTINGS, IdealImageConfig, ideal_args
from tlcore.cli import build_parser
from tlcore.cli.options import config_from_args
from tlcore.export.formats import ExportConfig, export_args
from tlcore.io.errors import TLError
from tlcore.io.settings import (as_positional, check_settings, option_name, setting, setting_info, settings_of,
                                to_options)
from tlcore.lab.mlflow_tracking import TrackingConfig
from tlcore.training.commands import FINETUNE_RENAMES, finetune_args, train_args
from tlcore.training.config import FINE_TUNE_SETTINGS, TrainConfig
from tlcore.training.ray_extract import ExecutorConfig

CONFIGS = [TrainConfig, ExportConfig, AttackConfig, HardenConfig, IdealImageConfig, CorruptionConfig, TrackingConfig,
           ExecutorConfig]


@dataclass(frozen=True)
class Demo:
    count: int = setting(3, "how many", minimum=1)
    span: int = setting(5, "a span", minimum=1, maximum=10)
    rate: float = setting(0.1, "a rate", above=0)
    share: float = setting(0.2, "a share", minimum=0, below=1)
    mode: str = setting("a", "a mode", choices=("a", "b"))
    on: bool = setting(True, "on", option="--no-on", flag_help="turn it off")
    off: bool = setting(False, "off")
    size: int | None = setting(None, "a size", minimum=8, maximum=64, unit="pixels", label="size")
    pair: tuple[float, float, float] = setting((0.5, 0.25, 0.25), "a split")
    name: str | None = setting("x", "a name")


@pytest.mark.parametrize("changes, message", [
    ({"count": 0}, "count must be a whole number >= 1, got 0"),
    ({"count": 2.0}, "count must be a whole number >= 1, got 2.0"),
    ({"span": 11}, "span must be a whole number from 1 to 10, got 11"),
    ({"rate": 0.0}, "rate must be positive, got 0.0"),
    ({"rate": float("nan")}, "rate must be positive, got nan"),
    ({"share": 1.0}, r"share must be in \[0, 1\), got 1.0"),
    ({"mode": "c"}, "mode 'c' must be a or b"),
    ({"on": "yes"}, "on must be true or false, got 'yes'"),
    ({"size": 4}, "size must be a whole number of pixels from 8 to 64, got 4"),
])
def test_a_value_outside_its_limits_is_one_sentence_repeating_it(changes, message):
    check_settings(Demo())  # the defaults pass
    with pytest.raises(TLError, match=message):
        check_settings(replace(Demo(), **changes))


def test_limits_themselves_are_accepted():
    check_settings(Demo(count=1, span=10, rate=1e-9, share=0.0, mode="b", size=64))
    check_settings(Demo(size=None))  # an optional setting left out


def test_options_write_what_differs_and_keep_values_that_look_like_options():
    assert to_options(Demo(), ["on", "off", "size", "name"]) == ["--name=x"]  # values always, flags when changed
    assert to_options(Demo(on=False, off=True, size=16, name=None), ["on", "off", "size", "name"]) == [
        "--no-on", "--off", "--size=16", "--name=none"]
    assert to_options(Demo(rate=0.5, pair=(0.8, 0.1, 0.1)), ["rate", "pair"]) == ["--rate=0.5", "--pair=0.8,0.1,0.1"]
    assert to_options(Demo(name="-x"), ["name"], {"name": ("--who", "--name")}) == ["--who=-x"]
    assert as_positional("-data") == "./-data" and as_positional("data") == "data"
    assert option_name(Demo, "on") == "--no-on" and option_name(Demo, "count") == "--count"


def test_unknown_setting_is_a_tlerror():
    with pytest.raises(TLError, match="Demo has no setting 'nope'"):
        setting_info(Demo, "nope")


# Each config's fields against the command line ------------------------------------------------------------

def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# (command, config class, fields it takes, fields that start from their suggested value)
COMMAND_SETTINGS = [
    ("train", TrainConfig, [f.name for f in fields(TrainConfig)], ()),
    ("finetune", TrainConfig, list(FINE_TUNE_SETTINGS), ("fine_tune_layers",)),
    ("export", ExportConfig, [f.name for f in fields(ExportConfig)], ()),
    ("attack", AttackConfig, ["method", "epsilon", "steps", "step_size", "random_start", "seed"], ()),
    ("harden", HardenConfig, list(HARDEN_SETTINGS), ()),
    ("robustness", HardenConfig, list(CURVE_SETTINGS), ()),
    ("ideal", IdealImageConfig, list(IDEAL_SETTINGS), ()),
    ("corruptions", CorruptionConfig, list(CORRUPTION_SETTINGS), ()),
    ("check", TrainConfig, ["split", "seed"], ()),
    # --mlflow, on the commands whose runs are logged to MLflow
    *((command, TrackingConfig, ["mlflow_uri"], ()) for command in ("train", "finetune", "export")),
    ("train", ExecutorConfig, ["ray"], ()),  # --ray, where the embeddings are computed
]


@pytest.mark.parametrize("command, cls, names, suggested", COMMAND_SETTINGS,
                         ids=[f"{c[0]}-{c[1].__name__}" if c[1] in (TrackingConfig, ExecutorConfig) else c[0]
                              for c in COMMAND_SETTINGS])
def test_every_option_takes_its_default_and_help_from_its_field(command, cls, names, suggested):
    parser = _commands()[command]
    for name in names:
        default, about = settings_of(cls)[name]
        # The field's own option (another, such as export's old --verify-held-out, may share its destination).
        action = next(a for a in parser._actions if a.dest == name and a.help != "the default; kept for old scripts")
        want = about.suggested if name in suggested else default
        assert action.default == want, (command, name)
        assert action.help in (about.help, about.flag_help) or action.help.startswith(about.help), (command, name)
        if about.choices:
            assert tuple(action.choices) == about.choices


def test_every_field_of_every_config_describes_itself():
    for cls in CONFIGS:
        described = settings_of(cls)
        for f in fields(cls):
            if f.name == "target":  # an attack's target: a class index the command line gives by name
                continue
            assert f.name in described and described[f.name][1].help, (cls.__name__, f.name)


ODD_TRAIN = TrainConfig(weights=None, epochs=7, batch_size=4, lr=3e-3, dropout=0.35, split=(0.6, 0.2, 0.2), seed=9,
                        class_weights="balanced", fine_tune_layers=4, fine_tune_epochs=2, fine_tune_lr=3e-6, patience=2,
                        augment=True, augment_copies=3, augment_strength=0.3, resample="oversample",
                        early_stopping=False, loop="tape", clip_norm=2.5, input_size=96)


def _parsed(args: list[str]):
    return build_parser().parse_args(args)


def test_job_command_lines_give_the_worker_every_setting_back():
    """Each page's job command (built from a config) parses back to the same config in the worker."""
    parsed = _parsed(train_args(ODD_TRAIN, "d", "o"))
    assert config_from_args(TrainConfig, parsed, [f.name for f in fields(TrainConfig)]) == ODD_TRAIN
    parsed = _parsed(finetune_args(ODD_TRAIN, "r", "o"))
    tuned = config_from_args(TrainConfig, parsed, FINE_TUNE_SETTINGS)
    assert all(getattr(tuned, n) == getattr(ODD_TRAIN, n) for n in FINE_TUNE_SETTINGS)
    assert set(FINETUNE_RENAMES) <= set(FINE_TUNE_SETTINGS)

    export = ExportConfig(calibration_samples=123, int8_io=True, seed=4, verify=False)
    parsed = _parsed(export_args(export, "r", ["tflite-int8", "keras"], "out", "b.zip"))
    assert config_from_args(ExportConfig, parsed, [f.name for f in fields(ExportConfig)]) == export
    assert (parsed.format, parsed.out, parsed.bundle) == (["tflite-int8", "keras"], "out", "b.zip")

    harden = HardenConfig(epsilon=0.02, epochs=3, lr=5e-4, curve_images=10, curve_steps=2)
    assert config_from_args(HardenConfig, _parsed(harden_args(harden, "r", "o")), HARDEN_SETTINGS) == harden
    parsed = _parsed(robustness_args("r", harden))
    assert (parsed.curve_steps, parsed.curve_images) == (2, 10)
    assert all(CURVE_RENAMES[n][0] in robustness_args("r", harden)[2 + i] for i, n in enumerate(CURVE_SETTINGS))

    ideal = IdealImageConfig(steps=40, tv_weight=10.0, seed=3)
    parsed = _parsed(ideal_args(ideal, "r", "-cat", "o"))
    assert config_from_args(IdealImageConfig, parsed, IDEAL_SETTINGS) == ideal and parsed.class_name == "-cat"


@pytest.mark.parametrize("build, message", [
    (lambda: export_args(ExportConfig(calibration_samples=0), "r", ["tflite-int8"], "o"), "calibration size"),
    (lambda: export_args(ExportConfig(), "r", ["tensorrt"], "o"), "unknown export format 'tensorrt'"),
    (lambda: harden_args(HardenConfig(epochs=0), "r", "o"), "epochs must be a whole number >= 1, got 0"),
    (lambda: ideal_args(IdealImageConfig(steps=0), "r", "c", "o"), "steps must be a whole number >= 1, got 0"),
])
def test_a_command_is_never_built_from_a_refused_setting(build, message):
    with pytest.raises(TLError, match=message):
        build()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_each_limit_is_the_one_checked(cls):
    """The limit a field declares (what pages offer and --help says) is where its check refuses."""
    base = cls()
    for name, (default, about) in settings_of(cls).items():
        whole = isinstance(default, int) and not isinstance(default, bool)
        if about.minimum is not None:
            check_settings(replace(base, **{name: about.minimum}))
            with pytest.raises(TLError, match=name.replace("_", " ") if not about.label else about.label):
                check_settings(replace(base, **{name: about.minimum - (1 if whole else 1e-6)}))
        if about.above is not None:
            with pytest.raises(TLError):
                check_settings(replace(base, **{name: about.above}))
        if about.maximum is not None:
            check_settings(replace(base, **{name: about.maximum}))
            with pytest.raises(TLError):
                check_settings(replace(base, **{name: about.maximum + (1 if whole else 1e-6)}))
