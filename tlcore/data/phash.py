"""Perceptual hashes of images and the fast search for near-identical ones.

A 64-bit DCT hash (pHash): the picture as a 32x32 grey thumbnail, its 2-D
cosine transform, and one bit per low-frequency coefficient (above or below
their median). Resizing, re-encoding (JPEG quality 60-95, PNG and JPEG either
way) and mild colour changes keep almost every bit; different photos differ in
about half of them. Pairs are compared with XOR and a population count on
whole blocks of hashes at once, so 10,000 images take seconds, not minutes.
"""
from __future__ import annotations

import numpy as np

__all__ = ["THUMB_SIDE", "NEAR_DISTANCE", "phash", "near_pairs"]

# decode_image is asked for this square, then halved: Pillow's resize already averages, the
# halving makes the 32x32 thumbnail the same whatever the draft scale of a JPEG decode was.
THUMB_SIDE = 64
_HASH_SIDE = 32
_LOW = 8  # 8x8 lowest frequencies -> 64 bits

# Hamming distance (of 64 bits) at or below which two images count as the same photo. Measured:
# copies resized to 0.25-1.7x and re-encoded (JPEG quality 60-95, PNG) stay within 4 of the
# original; the 398 distinct photos of the hymenoptera ants/bees set are 12 or more apart.
# 8 sits halfway, with margin on both sides.
NEAR_DISTANCE = 8


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_HASH_SIDE)
_WEIGHTS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def phash(rgb: np.ndarray) -> int:
    """The 64-bit DCT hash of an RGB ``uint8`` image of ``THUMB_SIDE`` x ``THUMB_SIDE`` (any even square works)."""
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    side = grey.shape[0]
    factor = side // _HASH_SIDE
    if factor > 1:
        grey = grey[: factor * _HASH_SIDE, : factor * _HASH_SIDE]
        grey = grey.reshape(_HASH_SIDE, factor, _HASH_SIDE, factor).mean(axis=(1, 3))
    coeffs = (_DCT @ grey @ _DCT.T)[:_LOW, :_LOW].ravel()
    # The DC term (overall brightness) is left out of the median: it would shift every bit.
    bits = coeffs > np.median(coeffs[1:])
    return int((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))


def near_pairs(hashes, max_distance: int = NEAR_DISTANCE, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """Every pair ``(i, j, distance)`` with ``i < j`` whose hashes differ in at most ``max_distance`` bits.

    The comparison runs on blocks of ``chunk`` rows against all later hashes,
    so memory stays at ``chunk * len(hashes)`` small integers.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(h), chunk):
        rows = h[start:start + chunk]
        dist = np.bitwise_count(rows[:, None] ^ h[None, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = j > i  # each pair once, and never an image with itself
        out += [(int(a), int(b), int(dist[a - start, b])) for a, b in zip(i[keep], j[keep])]
    return out
