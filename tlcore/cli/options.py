"""The command line's parser pieces: a parser whose errors are one sentence, the value types, the options every
job command takes, and options derived from a config dataclass's self-describing fields (:mod:`tlcore.io.settings`),
so that a default, a limit or a help text is never written twice."""
from __future__ import annotations

import argparse
import typing

from ..io.errors import TLError
from ..io.settings import option_name, settings_of

__all__ = ["PROG", "Parser", "one_line", "fractions", "shares", "weights_value", "names", "floats", "threshold",
           "job_options", "resume_option", "add_settings", "config_from_args", "tracking_option", "tracking_of"]

PROG = "python -m tlcore"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one sentence naming the command's --help (a :class:`TLError`)."""

    def error(self, message):  # one line, not argparse's usage block
        command = self.prog[len(PROG):].strip() if self.prog.startswith(PROG) else ""
        raise TLError(f"{message} (see {PROG} {command} --help)".replace("  ", " "))


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (Keras and OS messages can span several)."""
    return " ".join(str(exc).split())


def fractions(text: str):
    """Three comma-separated fractions (a train,val,test split)."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"split {text!r} must be three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"split {text!r} must be three numbers like 0.8,0.1,0.1")
    return parts


def shares(text: str) -> tuple[float, ...]:
    """Comma-separated shares (a learning curve's fractions of the training photos), as a tuple."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"fractions {text!r} must be numbers separated by commas, like "
                                         "0.1,0.25,0.5,0.75,1") from None


def weights_value(text: str):
    """``imagenet``, a weights file, or None for the words that mean random weights."""
    return None if text.lower() in ("none", "random", "scratch") else text


def names(text: str) -> list[str]:
    """Comma-separated names."""
    return [part.strip() for part in text.split(",") if part.strip()]


def floats(text: str) -> list[float]:
    """Comma-separated numbers."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be numbers separated by commas, like 0,0.01,0.03") from None


def threshold(text: str) -> float:
    """A probability between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold {text!r} must be a number between 0 and 1, like 0.7")
    return value


def job_options(p) -> None:
    """What every command a job runs takes: its progress file, its stop file and --json."""
    p.add_argument("--progress", metavar="FILE", help="append progress events (JSON lines) to FILE")
    p.add_argument("--stop-file", metavar="FILE", help="stop after the current epoch once FILE exists")
    p.add_argument("--json", action="store_true")


def resume_option(p) -> None:
    """``--resume``, for the commands that checkpoint their epochs."""
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last completed epoch (same command and settings)")


# Value types the annotations do not say: how the text of these fields becomes a value.
_TYPES = {"split": fractions, "weights": weights_value, "fractions": shares}


def _value_type(cls, name: str):
    if name in _TYPES:
        return _TYPES[name]
    hint = typing.get_type_hints(cls)[name]
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]  # int | None -> int
    return kinds[0]


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_settings(p, cls, fields_: typing.Iterable[str], renames: dict[str, tuple[str, ...]] | None = None,
                 suggested: typing.Iterable[str] = ()) -> None:
    """One option per field of ``cls`` in ``fields_``, from the field itself: its option (``--field-name`` unless
    it names another, or ``renames`` gives this command's names), type, default, choices and help. A field listed
    in ``suggested`` starts from its suggested value (its default means "off" and this command turns it on)."""
    described = settings_of(cls)
    for name in fields_:
        default, about = described[name]
        options = (renames or {}).get(name) or (option_name(cls, name),)
        start = about.suggested if name in suggested and about.suggested is not None else default
        if isinstance(default, bool):
            # A flag: --augment turns on what is off by default, --no-early-stopping turns off what is on.
            p.add_argument(*options, dest=name, action="store_false" if default else "store_true",
                           help=about.flag_help if default else about.help)
            continue
        help_text = about.help if start is None or start == "" else f"{about.help} (default {_shown(start)})"
        extra = {"choices": about.choices} if about.choices else {}
        extra["metavar"] = about.metavar or options[0].lstrip("-").replace("-", "_").upper()
        p.add_argument(*options, dest=name, type=_value_type(cls, name), default=start, help=help_text, **extra)


def config_from_args(cls, args, fields_: typing.Iterable[str]):
    """A ``cls`` holding the parsed value of each field in ``fields_`` (the others keep their defaults)."""
    return cls(**{name: getattr(args, name) for name in fields_})


def tracking_option(p) -> None:
    """``--mlflow URI``, from :class:`~tlcore.lab.mlflow_tracking.TrackingConfig`, for the commands whose runs are
    logged to MLflow (train, finetune, export)."""
    from ..lab.mlflow_tracking import TrackingConfig

    add_settings(p, TrackingConfig, ["mlflow_uri"])


def tracking_of(args) -> str | None:
    """The MLflow tracking URI this command logs its run to: ``--mlflow``, else ``$MLFLOW_TRACKING_URI``; None
    logs nothing (and imports nothing of MLflow)."""
    from ..lab.mlflow_tracking import TrackingConfig, tracking_uri

    return tracking_uri(config_from_args(TrackingConfig, args, ["mlflow_uri"]))
