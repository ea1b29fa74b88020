"""Widgets for settings, drawn from the config dataclass that defines them (:mod:`tlcore.io.settings`): the page
gives the label, the field gives the default, the range or the values on offer. A page never retypes a default."""
from __future__ import annotations

from typing import Any

from tlcore.io.settings import setting_info, settings_of

__all__ = ["default_of", "slider", "number", "ladder", "options", "choice", "flag"]


def default_of(cls, name: str) -> Any:
    """The default of field ``name`` of ``cls``."""
    return settings_of(cls)[name][0]


def slider(container, cls, name: str, label: str, start=None, high=None, suggested=False, **kwargs):
    """A slider over the field's offered ``(low, high)`` (``high`` lowered to what this page can take), starting
    at ``start``, or at the field's suggested value when ``suggested`` (its default means "off"), or its default."""
    about = setting_info(cls, name)
    low, top = about.offered
    top = top if high is None else min(top, high)
    value = start if start is not None else about.suggested if suggested else default_of(cls, name)
    value = min(max(value, low), top)
    if isinstance(low, float) or isinstance(value, float):
        low, top, value = float(low), float(top), float(value)
    return container.slider(label, low, top, value, **kwargs)


def number(container, cls, name: str, label: str, **kwargs):
    """A number input over the field's offered ``(low, high)``, at its suggested value (its default means "off")."""
    about = setting_info(cls, name)
    low, high = about.offered
    start = about.suggested if about.suggested is not None else default_of(cls, name)
    return container.number_input(label, low, high, start, **kwargs)


def ladder(container, cls, name: str, label: str, **kwargs):
    """A select-slider over the field's offered values (a ladder of learning rates, say), at its default."""
    return container.select_slider(label, list(setting_info(cls, name).offered), value=default_of(cls, name),
                                   **kwargs)


def options(cls, name: str) -> list:
    """The values the field accepts (its choices) or, failing that, the ones a page offers."""
    about = setting_info(cls, name)
    return list(about.choices or about.offered)


def choice(container, cls, name: str, label: str, widget: str = "selectbox", start=None, **kwargs):
    """A ``selectbox`` (or ``radio``) over the field's choices, at ``start`` or its default."""
    values = options(cls, name)
    value = default_of(cls, name) if start is None else start
    return getattr(container, widget)(label, values, index=values.index(value), **kwargs)


def flag(container, cls, name: str, label: str, widget: str = "checkbox", **kwargs) -> bool:
    """A ``checkbox`` (or ``toggle``) at the field's default."""
    return getattr(container, widget)(label, value=bool(default_of(cls, name)), **kwargs)
