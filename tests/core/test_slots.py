"""Job slots: a server-wide cap on concurrent jobs, held by file locks that a dead process gives back.

Locks are taken from this test process and from short-lived child processes (``python -c``), never
from a TensorFlow worker: these tests are fast. The real worker is in tests/core/test_jobs.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tlcore.jobs import slots
from tlcore.io.errors import TLError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, read, value, expected", [
    ("TLCORE_MAX_JOBS", slots.max_jobs, None, 2), ("TLCORE_MAX_JOBS", slots.max_jobs, "", 2),
    ("TLCORE_MAX_JOBS", slots.max_jobs, "1", 1), ("TLCORE_MAX_JOBS", slots.max_jobs, " 4 ", 4),
    ("TLCORE_MAX_WAITING", slots.max_waiting, None, 8), ("TLCORE_MAX_WAITING", slots.max_waiting, "", 8),
    ("TLCORE_MAX_WAITING", slots.max_waiting, "0", 0), ("TLCORE_MAX_WAITING", slots.max_waiting, " 3 ", 3),
])
def test_the_job_caps_read_the_environment(monkeypatch, name, read, value, expected):
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)
    assert read() == expected


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5"])
def test_a_bad_max_jobs_is_one_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("TLCORE_MAX_JOBS", value)
    with pytest.raises(TLError) as info:
        slots.max_jobs()
    assert str(info.value) == f"TLCORE_MAX_JOBS={value!r} is not allowed; set it to a whole number of at least 1"


def test_a_bad_max_jobs_refuses_to_start_a_job(monkeypatch, tmp_path):
    from tlcore.jobs.runner import start_job

    monkeypatch.setenv("TLCORE_MAX_JOBS", "none")
    with pytest.raises(TLError, match="TLCORE_MAX_JOBS='none'"):
        start_job(tmp_path / "job", ["backbones"])
    assert not (tmp_path / "job" / "job.json").exists()  # no worker was started


def test_slots_live_in_the_cache_folder(isolated_cache):
    assert slots.slots_dir() == isolated_cache / "slots"
    assert slots.slots_dir().is_dir()


def test_no_more_slots_than_the_cap_and_a_released_one_is_free_again(monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "2")
    first, second = slots.try_acquire(), slots.try_acquire()
    assert first is not None and second is not None and first.path != second.path
    assert slots.try_acquire() is None
    second.release()
    third = slots.try_acquire()
    assert third is not None and third.path == second.path
    first.release()
    third.release()


def hold_in_child(n: int, ready: Path) -> subprocess.Popen:
    """A child process that takes ``n`` slots, says so by creating ``ready``, then sleeps."""
    code = ("import sys, time, pathlib; from tlcore.jobs import slots; "
            f"held = [slots.try_acquire() for _ in range({n})]; assert all(held); "
            f"pathlib.Path({str(ready)!r}).touch(); time.sleep(600)")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if path.exists():
            return
        assert proc.poll() is None, "the child process ended before taking its slots"
        threading.Event().wait(0.05)
    pytest.fail("the child process did not take its slots")


def test_a_killed_holder_gives_its_slot_back(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    child = hold_in_child(1, tmp_path / "ready")
    try:
        wait_for(tmp_path / "ready", child)
        assert slots.try_acquire() is None  # another process holds the only slot
    finally:
        child.kill()
        child.wait()
    slot = slots.try_acquire()
    assert slot is not None  # no clean-up needed after a crash
    slot.release()


def test_acquire_waits_in_line_and_reports_its_place(monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    held = slots.try_acquire()
    seen, got = [], []
    polled = threading.Event()

    def should_stop():
        polled.set()
        return False

    waiter = threading.Thread(target=lambda: got.append(slots.acquire(on_wait=lambda p, n: seen.append((p, n)),
                                                                       should_stop=should_stop, poll=0.02)))
    waiter.start()
    assert polled.wait(10)
    assert seen == [(1, 1)] and not got  # first in line, one slot on the server, still waiting
    held.release()
    waiter.join(10)
    assert got and got[0] is not None
    got[0].release()
    assert not list((slots.slots_dir() / "queue").glob("*.ticket"))  # its ticket is gone


def test_a_stop_while_waiting_gives_up_without_a_slot(monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    held = slots.try_acquire()
    asked = []
    result = slots.acquire(should_stop=lambda: asked.append(1) or len(asked) >= 3, poll=0.01)
    assert result is None and len(asked) == 3
    assert not list((slots.slots_dir() / "queue").glob("*.ticket"))
    held.release()


def test_waiters_start_in_the_order_they_came(monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    held = slots.try_acquire()
    order, places = [], {}
    ready = {name: threading.Event() for name in ("early", "late")}

    def wait(name):
        def on_wait(position, n):
            places.setdefault(name, []).append(position)
            ready[name].set()
        slot = slots.acquire(on_wait=on_wait, poll=0.02)
        order.append(name)
        threading.Event().wait(0.1)  # hold it a moment, as a job would
        slot.release()

    early = threading.Thread(target=wait, args=("early",))
    early.start()
    assert ready["early"].wait(10)
    late = threading.Thread(target=wait, args=("late",))
    late.start()
    assert ready["late"].wait(10)
    assert places == {"early": [1], "late": [2]}
    held.release()
    early.join(10)
    late.join(10)
    assert order == ["early", "late"]
    assert places["late"] == [2, 1]  # it moved up when the first one got the slot


def test_a_ticket_left_by_a_dead_waiter_does_not_block_the_line(monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    queue = slots.slots_dir() / "queue"
    queue.mkdir()
    dead = queue / f"{0:020d}-999999.ticket"
    dead.touch()  # older than any new ticket, and no process holds its lock
    held = slots.try_acquire()
    places = []
    result = slots.acquire(on_wait=lambda p, n: places.append(p), should_stop=lambda: True, poll=0.01)
    assert result is None and places == [1]  # first in line, not behind the dead ticket
    assert not dead.exists()
    held.release()
