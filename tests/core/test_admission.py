"""Admission of jobs (issue 14, item 5): one running and one waiting job per session, a server-wide cap on
waiting jobs, no job for a session over its disk cap, decided exactly under a lock in the starting process;
and a waiting worker holds no TensorFlow.

Most tests call :func:`tlcore.jobs.slots.admit` in this process (fast, no worker); those marked slow start real
``python -m tlcore`` workers, which wait (a small Python process) while the test holds every slot.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import make_image_folder
from tests.core.test_jobs import (FINISHED, all_slots_held, end_leftover_workers, stderr_of,  # noqa: F401 - fixtures
                                  wait_for_status, wait_until_finished)
from tlcore.jobs import slots
from tlcore.io.errors import TLError
from tlcore.jobs.runner import job_status, list_jobs, new_job_dir, read_events, request_stop, start_job
from tlcore.lab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
SESSION_WAITING = "this session already has a job waiting for a free slot"
LINE_FULL = "this server's waiting line is full (TLCORE_MAX_WAITING="


def sessions(tmp_path, n):
    return [Workspace(tmp_path / f"session-{i}").jobs_dir for i in range(n)]


# The caps, in the starting process ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "many", "2.5"])
def test_a_bad_max_waiting_is_one_error_naming_it(monkeypatch, tmp_path, value):
    monkeypatch.setenv("TLCORE_MAX_WAITING", value)
    expected = f"TLCORE_MAX_WAITING={value!r} is not allowed; set it to a whole number of at least 0"
    with pytest.raises(TLError) as info:
        slots.admit(tmp_path / "jobs")
    assert str(info.value) == expected


def test_a_session_has_at_most_one_job_waiting(tmp_path, all_slots_held):
    mine, other = sessions(tmp_path, 2)
    first = slots.admit(mine)
    assert first.ticket is not None and first.slot is None  # it waits
    with pytest.raises(TLError, match=SESSION_WAITING):
        slots.admit(mine)
    with pytest.raises(TLError, match=SESSION_WAITING):
        slots.admit(Path(str(mine) + "/../jobs"))  # the same folder spelled otherwise
    slots.admit(other).release()  # another session may still wait
    first.release()
    slots.admit(mine).release()  # its place is free again once the waiting job has gone


def test_a_session_runs_one_job_at_a_time_even_with_free_slots(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "3")
    mine, other = sessions(tmp_path, 2)
    running = slots.admit(mine)
    assert running.slot is not None and running.session is not None  # it runs at once
    second = slots.admit(mine)
    assert second.slot is None and second.session is None and second.ticket is not None  # it waits for the first
    with pytest.raises(TLError, match=SESSION_WAITING):  # one running and one waiting: nothing more
        slots.admit(mine)
    elsewhere = slots.admit(other)
    assert elsewhere.slot is not None  # other sessions still run at once
    for admission in (running, second, elsewhere):
        admission.release()


def test_the_server_caps_its_waiting_jobs(tmp_path, all_slots_held, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_WAITING", "2")
    a, b, c = sessions(tmp_path, 3)
    waiting = [slots.admit(a), slots.admit(b)]
    with pytest.raises(TLError) as info:
        slots.admit(c)
    assert str(info.value) == ("this server's waiting line is full (TLCORE_MAX_WAITING=2): every job slot is busy "
                               "and no more jobs may wait; try again when one has started")
    waiting.pop().release()
    slots.admit(c).release()
    waiting[0].release()


def test_a_dead_waiters_ticket_does_not_count(tmp_path, all_slots_held, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_WAITING", "1")
    mine, other = sessions(tmp_path, 2)
    ready = tmp_path / "ready"
    code = (f"import pathlib, time; from tlcore.jobs import slots; a = slots.admit({str(mine)!r}); "
            f"pathlib.Path({str(ready)!r}).touch(); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for _ in range(600):
            if ready.exists() or child.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert ready.exists(), "the child did not take its place"
        with pytest.raises(TLError, match="waiting line is full"):
            slots.admit(other)
    finally:
        child.kill()
        child.wait()
    slots.admit(other).release()  # the killed waiter's ticket counts no more: no clean-up needed
    slots.admit(mine).release()


@pytest.mark.parametrize("same_session", [True, False], ids=["one-session", "many-sessions"])
def test_admission_is_exact_when_many_start_at_once(tmp_path, all_slots_held, monkeypatch, same_session):
    """Sixteen starts at the same moment: exactly the capped number gets a place, never one more."""
    monkeypatch.setenv("TLCORE_MAX_WAITING", "3")
    folders = sessions(tmp_path, 1) * 16 if same_session else sessions(tmp_path, 16)
    gate = threading.Barrier(len(folders))
    admitted, refused = [], []

    def start(folder):
        gate.wait()
        try:
            admitted.append(slots.admit(folder))
        except TLError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=start, args=(f,)) for f in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(admitted) == (1 if same_session else 3) and len(admitted) + len(refused) == 16
    assert all((SESSION_WAITING if same_session else LINE_FULL) in message for message in refused)
    for admission in admitted:
        admission.release()


def test_a_job_waits_for_its_sessions_running_job_then_takes_a_free_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "2")
    (mine,) = sessions(tmp_path, 1)
    running = slots.admit(mine)
    waiting = slots.admit(mine)
    places, got = [], []
    waited = threading.Event()

    def should_stop():
        waited.set()
        return False

    worker = threading.Thread(target=lambda: got.append(slots.wait_turn(
        waiting, on_wait=lambda p, n: places.append((p, n)), should_stop=should_stop, poll=0.02)))
    worker.start()
    assert waited.wait(10)
    assert not got and places == [(1, 2)]  # a slot is free, yet it waits: its session's job runs
    running.release()
    worker.join(10)
    assert got and got[0] is not None
    assert not list((slots.slots_dir() / "waiting").glob("*.ticket"))  # no longer counted as waiting
    got[0].release()


# Through start_job, with real workers ---------------------------------------------------------------

def test_a_session_over_its_disk_cap_starts_no_job(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "session")
    (ws.root / "big.bin").write_bytes(b"\0" * 300_000)
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "0.1")
    job = new_job_dir(ws.jobs_dir, "run")
    with pytest.raises(TLError) as info:
        start_job(job, ["backbones"])
    assert str(info.value).startswith("no new job can start: it would bring this session to 0.3 MB on disk, "
                                      "over the limit of 0.1 MB per session")
    assert not job.exists()  # the refused job leaves no folder
    assert list_jobs(ws.jobs_dir) == []


@pytest.mark.slow
def test_a_waiting_worker_holds_no_tensorflow_then_runs_when_a_slot_frees(tmp_path, all_slots_held):
    ws = Workspace(tmp_path / "session")
    make_image_folder(ws.data_dir, n_per_class=4, size=16)
    job = new_job_dir(ws.jobs_dir, "run")
    data = ws.snapshot(job / "data")
    start_job(job, ["train", str(data), f"--out={job / 'run'}", "--weights=none", "--epochs=1"])
    status = wait_for_status(job, "waiting")
    pid = int(status["pid"])
    for _ in range(5):  # while it waits it stays small
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "tensorflow" not in maps.lower() and "keras" not in maps.lower()
        rss_kb = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:")).split()[1])
        assert rss_kb < 150_000, f"a waiting worker uses {rss_kb} kB"
        assert job_status(job)["status"] == "waiting"
        threading.Event().wait(0.1)
    assert "argv" not in json.loads((job / "job.json").read_text())  # no command line on disk

    # The session has a job waiting: a second is refused, and leaves no folder.
    second = new_job_dir(ws.jobs_dir, "run")
    with pytest.raises(TLError, match=SESSION_WAITING):
        start_job(second, ["backbones"])
    assert not second.exists()

    all_slots_held.release()
    status, seen = wait_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))
    kinds = [e["phase"] if e["type"] == "phase" else e["type"] for e in read_events(job)]
    assert kinds[:2] == ["starting", "waiting"] and kinds[kinds.index("start") - 1] == "loading"
    assert kinds[-1] == "done"
    assert not list((slots.slots_dir() / "waiting").glob("*.ticket"))


@pytest.mark.slow
def test_the_server_waiting_cap_refuses_a_start_from_another_session(tmp_path, all_slots_held, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_WAITING", "1")
    first, other = (Workspace(tmp_path / name) for name in ("first", "other"))
    job = new_job_dir(first.jobs_dir, "export")
    start_job(job, ["backbones"], kind="export")
    wait_for_status(job, "waiting")
    refused = new_job_dir(other.jobs_dir, "export")
    with pytest.raises(TLError, match="waiting line is full"):
        start_job(refused, ["backbones"], kind="export")
    assert not refused.exists()
    request_stop(job)  # it leaves the line without running anything
    status, _ = wait_until_finished(job)
    assert status["status"] == "stopped" and status["result"] == {}
    start_job(refused, ["backbones"], kind="export")  # the line has room again
    assert job_status(refused)["status"] in ("waiting", "running", *FINISHED)
    request_stop(refused)
    wait_until_finished(refused)
