"""Settings that describe themselves: a config dataclass field carries its help text, its limits and what a page
offers, so the command line, the pages and a job's command line are derived from the one definition.

    @dataclass(frozen=True)
    class TrainConfig:
        epochs: int = setting(20, "epochs of the new head", minimum=1, offered=(1, 100))

:func:`setting_info` reads it back; :func:`check_settings` refuses a value outside the limits in one sentence
that repeats it (the modules that use a config call it where they check the rest).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import TLError

__all__ = ["Setting", "setting", "setting_info", "settings_of", "option_name", "check_settings", "to_options", "as_positional"]


@dataclass(frozen=True)
class Setting:
    """What a config field says about itself (its default stays the field's own)."""

    help: str  # one line for --help and the pages' help; also names the value in error messages (``label``)
    label: str = ""  # the value's name in an error message ("batch size"); default: the field's name in words
    minimum: float | None = None  # smallest value accepted
    maximum: float | None = None  # largest value accepted
    above: float | None = None  # values must be above this one (a limit that is itself refused)
    below: float | None = None  # values must be below this one
    unit: str = ""  # what a whole number counts, for error messages ("pixels")
    choices: tuple | None = None  # the values accepted, when they are a short list
    offered: tuple | None = None  # what a page offers: (low, high) for a slider, or the values of a ladder
    suggested: Any = None  # where a page or a command starts when the default means "off" (fine_tune_layers 0)
    option: str | None = None  # the command-line option, when it is not --field-name
    flag_help: str = ""  # for a setting on by default: what its --no-... flag does
    metavar: str | None = None


def setting(default, help: str, **about) -> Any:
    """A dataclass field with ``default`` that describes itself (:class:`Setting`'s fields as keywords)."""
    return field(default=default, metadata={"setting": Setting(help, **about)})


def settings_of(cls) -> dict[str, tuple[Any, Setting]]:
    """Every field of the config class ``cls`` that describes itself: name -> (default, :class:`Setting`)."""
    return {f.name: (f.default if f.default is not MISSING else None, f.metadata["setting"])
            for f in fields(cls) if "setting" in f.metadata}


def setting_info(cls, name: str) -> Setting:
    """The :class:`Setting` of field ``name`` of ``cls``."""
    try:
        return settings_of(cls)[name][1]
    except KeyError:
        raise TLError(f"{cls.__name__} has no setting {name!r}") from None


def option_name(cls, name: str) -> str:
    """The command-line option that sets field ``name`` of ``cls``: its own, or ``--field-name``."""
    return setting_info(cls, name).option or "--" + name.replace("_", "-")


def _label(name: str, about: Setting) -> str:
    return about.label or name.replace("_", " ")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refusal(name: str, about: Setting, default, value) -> str | None:
    """Why ``value`` is refused for the field, or None."""
    label = _label(name, about)
    if about.choices is not None:
        if value in about.choices:
            return None
        listed = ", ".join(str(c) for c in about.choices[:-1]) + f" or {about.choices[-1]}"
        return f"{label} {value!r} must be {listed}"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{label} must be true or false, got {value!r}"
    if value is None and default is None:
        return None  # an optional setting left out
    low, high = about.minimum, about.maximum
    if isinstance(default, int) or (default is None and _whole(low)):
        if low is None and high is None:
            return None
        if _whole(value) and (low is None or value >= low) and (high is None or value <= high):
            return None
        whole = f"a whole number of {about.unit}" if about.unit else "a whole number"
        if high is None:
            return f"{label} must be {whole} >= {low}, got {value!r}"
        return f"{label} must be {whole} from {low} to {high}, got {value!r}"
    bounds = [(low, lambda v: v >= low), (high, lambda v: v <= high), (about.above, lambda v: v > about.above),
              (about.below, lambda v: v < about.below)]
    if all(limit is None for limit, _ in bounds):
        return None
    if _number(value) and math.isfinite(value) and all(limit is None or ok(value) for limit, ok in bounds):
        return None
    if about.above is not None and low is high is about.below is None:
        return f"{label} must be positive, got {value!r}" if about.above == 0 else \
            f"{label} must be above {about.above:g}, got {value!r}"
    if about.above is not None and high is not None:
        return f"{label} must be above {about.above:g} and at most {high:g}, got {value!r}"
    if low is not None and about.below is not None:
        return f"{label} must be in [{low:g}, {about.below:g}), got {value!r}"
    if low is not None and high is not None:
        return f"{label} must be between {low:g} and {high:g}, got {value!r}"
    return f"{label} must be at least {low:g}, got {value!r}" if low is not None else \
        f"{label} must be at most {high:g}, got {value!r}"


def check_settings(config) -> None:
    """Raise :class:`TLError` for the first field of ``config`` outside its limits or choices, naming the value."""
    for name, (default, about) in settings_of(type(config)).items():
        reason = _refusal(name, about, default, getattr(config, name))
        if reason:
            raise TLError(reason)


def to_options(config, names, renames: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Command-line options that give the fields ``names`` of ``config`` their values, each as ``--option=value``
    (so a value that starts with ``-`` stays a value): a flag only when it differs from the default, a value left
    out when it is None by default, ``none`` when None replaces another default, a tuple as comma-separated numbers.
    ``renames`` gives a command's own option names (the first is written)."""
    described = settings_of(type(config))
    args = []
    for name in names:
        default = described[name][0]
        option = ((renames or {}).get(name) or (option_name(type(config), name),))[0]
        value = getattr(config, name)
        if isinstance(value, bool):
            args += [option] if value != default else []
        elif value is None:
            args += [] if default is None else [f"{option}=none"]
        elif isinstance(value, tuple):
            args.append(f"{option}={','.join(repr(float(v)) for v in value)}")
        else:
            args.append(f"{option}={value!r}" if isinstance(value, float) else f"{option}={value}")
    return args


def as_positional(path) -> str:
    """``path`` as a positional command-line argument: one that starts with ``-`` is written ``./-...``, so it is
    never read as an option."""
    text = str(path)
    return f"./{text}" if text.startswith("-") else text
