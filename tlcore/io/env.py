"""Numbers the operator sets in the server's environment, read one way: a bad value is one sentence naming it."""
from __future__ import annotations

import math
import os

from .errors import TLError

__all__ = ["positive_number", "whole_number"]


def positive_number(name: str, default: float, unit: str | None = None) -> float:
    """``$name`` as a finite number above 0 (``default`` when unset or blank); ``unit`` names it in the error."""
    text = os.environ.get(name, "").strip()
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):  # nan fails both
        of = f" of {unit}" if unit else ""
        raise TLError(f"{name}={text!r} is not allowed; set it to a number{of} above 0")
    return value


def whole_number(name: str, default: int, least: int) -> int:
    """``$name`` as a whole number of at least ``least`` (``default`` when unset or blank)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise TLError(f"{name}={text!r} is not allowed; set it to a whole number of at least {least}")
    return value
