"""How long one prediction takes: warm-up calls first, then the median of timed repeats, in milliseconds.

The first calls of a model are not typical (graph tracing, buffer
allocation, cold caches), so they are run and not timed. The median rather
than the mean, so that one repeat slowed by another process on a shared
machine does not move the figure.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

__all__ = ["median_latency_ms"]


def median_latency_ms(run_once: Callable[[], object], repeats: int, warmup: int,
                      clock: Callable[[], float] = time.perf_counter) -> float:
    """Call ``run_once`` ``warmup`` times untimed, then ``repeats`` times timed; the median call, in milliseconds.

    ``clock`` returns seconds (:func:`time.perf_counter` unless a test gives
    its own). ``repeats`` should be at least 1: with none there is no median
    and the result is NaN.
    """
    for _ in range(warmup):
        run_once()
    times = []
    for _ in range(repeats):
        t0 = clock()
        run_once()
        times.append(clock() - t0)
    return float(np.median(times) * 1000.0)
