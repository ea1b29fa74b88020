"""usable_cpus: the CPUs this process may run on, which is what thread pools should be sized by."""
from __future__ import annotations

import os

import pytest

from tlcore.io import cpus


def test_usable_cpus_follows_the_affinity_not_the_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cpus.usable_cpus() == 1


def test_usable_cpus_without_affinity_is_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.usable_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: still one thread
    assert cpus.usable_cpus() == 1


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_usable_cpus_is_this_process_share():
    assert cpus.usable_cpus() == len(os.sched_getaffinity(0)) <= (os.cpu_count() or 1)
