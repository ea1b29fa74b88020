"""How many CPUs this process may use: its CPU affinity (a container's limit, an operator's ``taskset``),
not the machine's count. Threads beyond that only wait for each other. And what the CPU can do: its model
name and the vector instruction flags that decide which engine is fastest (int8 dot products or not)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["usable_cpus", "cpu_flags", "cpu_model", "int8_dot_product", "REPORTED_FLAGS", "INT8_DOT_FLAGS",
           "FLAGS_VARIABLE"]

# The flags bench reports: what bounds float32 (vector width) and int8 (dot products) inference.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
# int8 dot-product instructions: x86 AVX-512 VNNI, AVX-VNNI, AMX; ARM's dot product (``asimddp``). Without
# them XNNPACK's int8 kernels widen to 16 bits and are no faster than float32 (AVX2: 1.16x slower, measured).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")

CPUINFO = Path("/proc/cpuinfo")
FLAGS_VARIABLE = "TLCORE_CPU_FLAGS"


def usable_cpus() -> int:
    """The number of CPUs this process may be scheduled on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return os.cpu_count() or 1


def _cpuinfo(text: str | None) -> str:
    if text is not None:
        return text
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:  # not Linux: no flags known, so no int8 engine (float32 is always safe)
        return ""


def _field(text: str, names: tuple[str, ...]) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (``/proc/cpuinfo``'s text; read when None):
    x86's ``flags`` line or ARM's ``Features``; empty when unknown. With ``cpuinfo`` None,
    ``$TLCORE_CPU_FLAGS`` (space-separated, possibly empty) replaces the CPU's own: tests, and a machine whose
    kernel hides its flags."""
    if cpuinfo is None and FLAGS_VARIABLE in os.environ:
        return frozenset(os.environ[FLAGS_VARIABLE].lower().split())
    return frozenset((_field(_cpuinfo(cpuinfo), ("flags", "features")) or "").lower().split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (x86 ``model name``, else ARM's ``Hardware`` or ``CPU part``), or ``"unknown"``."""
    return _field(_cpuinfo(cpuinfo), ("model name", "hardware", "cpu part")) or "unknown"


def int8_dot_product(flags: frozenset[str] | set[str]) -> bool:
    """Whether ``flags`` include int8 dot-product instructions (where an INT8 engine beats float32)."""
    return any(flag in flags for flag in INT8_DOT_FLAGS)
