"""Backbone registry in the spirit of timm: a decorator fills a dict.

A spec describes a backbone (its input size, preprocessing, feature size and
provenance); its builder makes a Keras model that takes float RGB pixels
0..255 of shape ``input_shape`` and returns pooled features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..io.errors import TLError

__all__ = [
    "BackboneSpec",
    "DEFAULT_BACKBONE",
    "register_backbone",
    "list_backbones",
    "get_spec",
    "create_backbone",
]

DEFAULT_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class BackboneSpec:
    """What a user needs to know to choose a backbone; no logic."""

    name: str
    input_size: int
    preprocessing: str  # a mode of tlcore.backbones.preprocessing
    feature_dim: int
    params: int  # parameters of the ImageNet classifier, as published
    size_mb: float  # size of the ImageNet weights file, as published
    imagenet_top1: float  # published ImageNet top-1 accuracy, 0..1
    weights_source: str  # where the ImageNet weights come from
    offline: bool  # ImageNet weights available without network access
    display_name: str = ""


_REGISTRY: dict[str, tuple[BackboneSpec, Callable]] = {}


def register_backbone(spec: BackboneSpec):
    """Register ``builder(spec, weights, input_shape, pooling)`` under ``spec.name``."""

    def decorator(builder):
        _REGISTRY[spec.name] = (spec, builder)
        return builder

    return decorator


def list_backbones() -> list[str]:
    """Names of all registered backbones, the default first."""
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_BACKBONE, n))


def get_spec(name: str) -> BackboneSpec:
    """The spec registered as ``name``."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise TLError(
            f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}"
        ) from None


def create_backbone(name: str = DEFAULT_BACKBONE, weights="imagenet", input_shape=None, pooling="avg"):
    """Build backbone ``name`` as a Keras model on float RGB pixels 0..255.

    ``weights`` is ``"imagenet"``, ``None`` (random initialisation) or the
    path of a weights file for the architecture built here. ``pooling`` is
    ``"avg"`` (feature vectors, the default), ``"max"`` or ``None`` (maps).
    ``input_shape`` defaults to the spec's ``(input_size, input_size, 3)``;
    a size the architecture cannot take is a :class:`TLError`.
    """
    spec = get_spec(name)
    if pooling not in ("avg", "max", None):
        raise TLError(f"unknown pooling {pooling!r}; choose 'avg', 'max' or None")
    if input_shape is None:
        input_shape = (spec.input_size, spec.input_size, 3)
    if isinstance(weights, str) and weights.lower() in ("none", "random", "scratch"):
        weights = None
    builder = _REGISTRY[name][1]
    try:
        return builder(spec, weights=weights, input_shape=tuple(input_shape), pooling=pooling)
    except ValueError as exc:
        if "at least" not in str(exc):  # Keras's own refusal of a too-small input; anything else is a bug
            raise
        side = "x".join(str(v) for v in tuple(input_shape)[:2])
        reason = str(exc).split(";")[0].rstrip(".").lower()
        raise TLError(f"backbone {name!r} cannot take {side} pixel inputs ({reason})") from None
