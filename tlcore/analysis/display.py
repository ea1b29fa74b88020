"""Images made for the eye: the heat maps' colours and their scale.

Pure NumPy (no TensorFlow): the dashboard draws these beside what :mod:`tlcore.analysis.explain` computes.
"""
from __future__ import annotations

import numpy as np

from ..io.errors import TLError

__all__ = ["jet_colours", "colour_scale"]


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
