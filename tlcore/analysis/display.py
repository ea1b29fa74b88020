"""Images made for the eye: the heat maps' colours and their scale, and a contrast stretch for display.

Pure NumPy (no TensorFlow): the dashboard draws these beside what :mod:`tlcore.analysis.explain` computes.
"""
from __future__ import annotations

import numpy as np

from ..io.errors import TLError

__all__ = ["jet_colours", "colour_scale", "contrast_limits", "stretch_contrast"]


def jet_colours(values: np.ndarray) -> np.ndarray:
    """Map values 0..1 to RGB ``uint8`` with a jet-like colour map (blue, cyan, yellow, red)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    # Piecewise-linear jet: each channel is a tent centred at 0.75 (red), 0.5 (green), 0.25 (blue).
    centres = np.array([0.75, 0.5, 0.25], np.float32)
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


def colour_scale(width: int = 256, height: int = 14) -> np.ndarray:
    """The heat maps' colour scale as an RGB ``uint8`` image ``(height, width, 3)``: :func:`jet_colours` from 0 at
    the left (blue, low) to 1 at the right (red, high), for a legend beside a Grad-CAM overlay."""
    if int(width) < 2 or int(height) < 1:
        raise TLError(f"a colour scale needs a width of at least 2 and a height of at least 1; got {width}x{height}")
    row = jet_colours(np.linspace(0.0, 1.0, int(width), dtype=np.float32))
    return np.repeat(row[None], int(height), axis=0)


def contrast_limits(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """The ``low`` and ``high`` percentiles of each channel of an RGB image ``(H, W, C)``: ``float32 (2, C)``,
    the range :func:`stretch_contrast` spreads (percentiles, not the extremes: a few stray pixels do not set it)."""
    if not 0.0 <= float(low) < float(high) <= 100.0:
        raise TLError(f"the percentiles must satisfy 0 <= low < high <= 100; got low={low}, high={high}")
    pixels = np.asarray(image, np.float32)
    if pixels.ndim != 3:
        raise TLError(f"the image must be an array of shape (height, width, channels); got shape {pixels.shape}")
    return np.percentile(pixels.reshape(-1, pixels.shape[-1]), [float(low), float(high)], axis=0).astype(np.float32)


def stretch_contrast(image: np.ndarray, limits: np.ndarray | None = None, low: float = 1.0,
                     high: float = 99.0) -> np.ndarray:
    """``image`` with each channel's range stretched to 0..255 for display: ``uint8``, same shape.

    The range is ``limits`` (from :func:`contrast_limits`, e.g. of another image, so that a series is stretched
    alike) or the image's own ``low``..``high`` percentiles; values outside it are clipped. A channel whose
    range is under one level is left as it is (stretching it would only magnify rounding). For the eye only:
    a model's input or a download is the image as it was.
    """
    pixels = np.asarray(image, np.float32)
    lo, hi = contrast_limits(pixels, low, high) if limits is None else np.asarray(limits, np.float32)
    span = hi - lo
    flat = span < 1.0
    stretched = (pixels - lo) / np.where(flat, 1.0, span) * 255.0
    return np.clip(np.rint(np.where(flat, pixels, stretched)), 0, 255).astype(np.uint8)
