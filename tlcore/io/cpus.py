"""How many CPUs this process may use: its CPU affinity (a container's limit, an operator's ``taskset``),
not the machine's count. Threads beyond that only wait for each other."""
from __future__ import annotations

import os

__all__ = ["usable_cpus"]


def usable_cpus() -> int:
    """The number of CPUs this process may be scheduled on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return os.cpu_count() or 1
