"""The shape of a learning curve: accuracy against photos per class, fitted and extrapolated.

Validation accuracy usually climbs fast with the first photos and then ever
more slowly towards a ceiling. The inverse power law

    accuracy(n) = a - b * n ** -c      (a <= 1, b >= 0, c > 0)

describes that shape with three numbers: ``a`` the ceiling, ``b`` how far
below it the curve starts, ``c`` how fast it closes the gap. It is fitted by
least squares exactly in ``a`` and ``b`` for each ``c`` of a fine grid (a linear
problem once ``c`` is fixed), so the fit needs no starting guess, cannot
diverge, and gives the same answer on every machine. When the points cannot
carry three parameters (fewer than three photo counts) the fit falls back to a
straight line in ``log n``, and with a single count to that point's own value;
every prediction is bounded to [0, 1].

Pure NumPy, no TensorFlow: :mod:`tlcore.training.learning_curve` trains the
heads and calls this.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

__all__ = ["CurveFit", "fit_learning_curve", "POWER_LAW", "LOG_LINEAR", "CONSTANT", "EXPONENTS"]

POWER_LAW, LOG_LINEAR, CONSTANT = "power_law", "log_linear", "constant"

# The exponents tried: 0.02 (an almost flat gap) to 4 (a gap closed within a few photos), log-spaced about 1%
# apart, which is finer than the noise of any curve measured on a few seeds.
EXPONENTS = np.geomspace(0.02, 4.0, 540)


@dataclass(frozen=True)
class CurveFit:
    """A fitted learning curve: ``method`` (:data:`POWER_LAW`, :data:`LOG_LINEAR` or :data:`CONSTANT`), its
    parameters (``a``, ``b``, ``c`` of ``a - b * n**-c``; for the log line ``a + b * ln n`` with ``c`` 0), and the
    root-mean-square distance of the points from it (``rmse``)."""

    method: str
    a: float
    b: float
    c: float
    rmse: float

    def predict(self, photos) -> np.ndarray | float:
        """Expected accuracy at ``photos`` per class (a number or an array), bounded to [0, 1]."""
        n = np.maximum(np.asarray(photos, dtype=float), 1e-9)
        if self.method == POWER_LAW:
            value = self.a - self.b * n ** -self.c
        elif self.method == LOG_LINEAR:
            value = self.a + self.b * np.log(n)
        else:
            value = np.full_like(n, self.a)
        value = np.clip(value, 0.0, 1.0)
        return float(value) if value.ndim == 0 else value

    def as_dict(self) -> dict:
        """The fit as plain numbers (JSON)."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _weighted_line(u: np.ndarray, acc: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Least-squares ``acc ~ p + q * u`` with weights ``w``; ``(p, q)`` (q 0 when ``u`` does not vary)."""
    mu, ma = np.average(u, weights=w), np.average(acc, weights=w)
    var = np.average((u - mu) ** 2, weights=w)
    q = np.average((u - mu) * (acc - ma), weights=w) / var if var > 1e-15 else 0.0
    return float(ma - q * mu), float(q)


def _power_law(n: np.ndarray, acc: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """The best ``(a, b, c, sse)`` over :data:`EXPONENTS`, with ``a <= 1`` and ``b >= 0`` held exactly."""
    best = (float(np.average(acc, weights=w)), 0.0, 1.0, float(np.inf))
    for c in EXPONENTS:
        u = n ** -c
        a, q = _weighted_line(u, acc, w)
        b = -q
        if b < 0:  # accuracy falling with more photos: the law's flat limit is the best it can do
            a, b = float(np.average(acc, weights=w)), 0.0
        elif a > 1:  # the ceiling held at 1: b alone by least squares on 1 - acc = b * u
            a = 1.0
            b = max(0.0, float(np.sum(w * u * (1 - acc)) / max(np.sum(w * u * u), 1e-15)))
        sse = float(np.sum(w * (acc - (a - b * u)) ** 2))
        if sse < best[3] - 1e-15:
            best = (a, b, float(c), sse)
    return best


def fit_learning_curve(photos: Sequence[float], accuracies: Sequence[float],
                       weights: Sequence[float] | None = None) -> CurveFit:
    """Fit ``accuracy = a - b * photos**-c`` to the points (``photos`` per class, accuracy in [0, 1]).

    ``weights`` (default equal) weigh the points, e.g. by the number of runs
    each averages. Three photo counts or more give the power law; two give a
    straight line in ``log photos`` (rising or flat, never falling: fewer
    photos are not expected to help); one gives a constant. Points with a
    non-finite value or fewer than one photo are left out.
    """
    n = np.asarray(photos, dtype=float)
    acc = np.asarray(accuracies, dtype=float)
    w = np.ones_like(n) if weights is None else np.asarray(weights, dtype=float)
    keep = np.isfinite(n) & np.isfinite(acc) & np.isfinite(w) & (n >= 1) & (w > 0)
    n, acc, w = n[keep], np.clip(acc[keep], 0.0, 1.0), w[keep]
    if len(n) == 0:
        return CurveFit(CONSTANT, 0.0, 0.0, 0.0, 0.0)
    distinct = len(np.unique(n))
    if distinct >= 3:
        a, b, c, sse = _power_law(n, acc, w)
        return CurveFit(POWER_LAW, a, b, c, float(np.sqrt(sse / np.sum(w))))
    if distinct == 2:
        p, q = _weighted_line(np.log(n), acc, w)
        if q < 0:
            p, q = float(np.average(acc, weights=w)), 0.0
        rmse = float(np.sqrt(np.average((acc - (p + q * np.log(n))) ** 2, weights=w)))
        return CurveFit(LOG_LINEAR, p, q, 0.0, rmse)
    mean = float(np.average(acc, weights=w))
    return CurveFit(CONSTANT, mean, 0.0, 0.0, float(np.sqrt(np.average((acc - mean) ** 2, weights=w))))
