"""Moderate photometric and geometric augmentation (flip, brightness, contrast, saturation)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

__all__ = ["AugmentConfig", "augment_image"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges follow the usual advice: horizontal flip and about ±0.2 for the rest."""

    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def augment_image(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """A randomly augmented copy of an RGB ``uint8`` image (same shape)."""
    for name in ("brightness", "contrast", "saturation"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} range must be in [0, 1), got {value!r}")
    img = Image.fromarray(np.asarray(image, np.uint8))
    if config.flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer, value in ((ImageEnhance.Brightness, config.brightness),
                            (ImageEnhance.Contrast, config.contrast),
                            (ImageEnhance.Color, config.saturation)):
        if value:
            img = enhancer(img).enhance(float(rng.uniform(1 - value, 1 + value)))
    return np.asarray(img, np.uint8)
