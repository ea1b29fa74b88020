"""Job directories: events written by the worker, status, stop requests, listing.

The tests marked slow start real ``python -m tlcore`` workers (TensorFlow start-up takes seconds), poll
until they end (with a generous limit, never a timing assertion) and read what they left behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_events import assert_each_phase_announced, phase_story
from tlcore.jobs.events import current_phase
from tlcore.jobs import slots
import tlcore.jobs.runner as jobs_mod
from tlcore.jobs.runner import (LIVE, EventWriter, job_status, list_jobs, new_job_dir, read_events, request_stop,
                                start_job)

FINISHED = ("done", "stopped", "failed")


def wait_until_finished(job_dir, limit=180.0):
    """Poll job_status until the job has ended; returns (final status, statuses seen)."""
    seen = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = job_status(job_dir)
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
        if status["status"] in FINISHED:
            return status, seen
        time.sleep(0.1)
    pytest.fail(f"job {job_dir} still {seen[-1]} after {limit:.0f} s; stderr: {stderr_of(job_dir)}")


def wait_for_event(job_dir, kind, limit=180.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(e["type"] == kind for e in read_events(job_dir)):
            return
        if job_status(job_dir)["status"] in FINISHED:
            pytest.fail(f"job ended before a {kind!r} event: {job_status(job_dir)}")
        time.sleep(0.1)
    pytest.fail(f"no {kind!r} event after {limit:.0f} s; stderr: {stderr_of(job_dir)}")


@pytest.fixture(autouse=True)
def end_leftover_workers(tmp_path):
    """After each test, end any worker it started that is still running (only when a test failed)."""
    yield
    for meta in tmp_path.rglob("job.json"):
        try:
            pid = int(json.loads(meta.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid > 0 and job_status(meta.parent)["status"] in LIVE:
            try:
                os.killpg(pid, signal.SIGTERM)  # start_job gives each worker its own session
            except ProcessLookupError:
                pass


def result_record(job_dir, limit=30.0):
    """result.json, once the thread that reaped the worker has written it."""
    path = Path(job_dir) / "result.json"
    deadline = time.monotonic() + limit
    while not path.is_file():
        if time.monotonic() > deadline:
            pytest.fail(f"no result.json in {job_dir} after {limit:.0f} s")
        time.sleep(0.1)
    return json.loads(path.read_text())


def stderr_of(job_dir):
    path = Path(job_dir) / "stderr.log"
    return path.read_text(errors="replace")[-2000:] if path.is_file() else "(none)"


def types(events):
    return [e["type"] for e in events]


# Events ----------------------------------------------------------------------------------------

def test_event_writer_and_read_events_round_trip(tmp_path):
    job = tmp_path / "job"
    write = EventWriter(job / "events.jsonl")  # creates the folder
    sent = [{"type": "start", "epochs": 3}, {"type": "extract", "done": 2, "total": 4},
            {"type": "epoch", "epoch": 1, "phase": "head", "loss": 0.5}, {"type": "done", "result": {"a": [1, 2]}}]
    for event in sent:
        write(event)
    events = read_events(job)
    assert len(events) == len(sent)
    for got, want in zip(events, sent):
        assert {k: v for k, v in got.items() if k != "time"} == want
        assert isinstance(got["time"], float)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert len((job / "events.jsonl").read_text().splitlines()) == len(sent)  # one line each


def test_read_events_ignores_a_half_written_last_line(tmp_path):
    write = EventWriter(tmp_path / "events.jsonl")
    write({"type": "start"})
    write({"type": "epoch", "epoch": 1})
    with open(tmp_path / "events.jsonl", "a", encoding="utf-8") as f:
        f.write('{"type": "epoch", "epo')  # the worker is mid-write
    assert types(read_events(tmp_path)) == ["start", "epoch"]
    with open(tmp_path / "events.jsonl", "a", encoding="utf-8") as f:
        f.write('ch": 2}\n')  # ... and finishes the line
    assert types(read_events(tmp_path)) == ["start", "epoch", "epoch"]
    assert read_events(tmp_path)[-1]["epoch"] == 2


def test_read_events_of_a_job_without_events(tmp_path):
    assert read_events(tmp_path) == []
    assert read_events(tmp_path / "missing") == []


def test_event_text_survives_unicode(tmp_path):
    write = EventWriter(tmp_path / "events.jsonl")
    write({"type": "error", "message": "class 'Äpfel – 苹果' has no training images"})
    assert read_events(tmp_path)[0]["message"] == "class 'Äpfel – 苹果' has no training images"


# Job folders ------------------------------------------------------------------------------------

def test_new_job_dirs_made_in_the_same_second_from_many_threads_are_distinct(tmp_path, monkeypatch):
    """Issue 14, item 7: names are to the second, so starts in the same second must not share a folder."""
    monkeypatch.setattr(jobs_mod.time, "strftime", lambda fmt, *a: "20250101-120000")  # every call: one second
    gate = threading.Barrier(24)
    made = []

    def make():
        gate.wait()
        made.append(new_job_dir(tmp_path / "jobs", "finetune"))

    threads = [threading.Thread(target=make) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(made) == 24 and len(set(made)) == 24
    assert all(p.is_dir() and not any(p.iterdir()) and p.parent == tmp_path / "jobs" for p in made)
    assert all(p.name.startswith("finetune-20250101-120000") for p in made)  # pages test the kind's prefix
    names = sorted(p.name for p in made)
    assert names[0] == "finetune-20250101-120000" and names[1:] == [f"finetune-20250101-120000-{n:03d}" for n in range(1, 24)]


def test_new_job_dir_names_sort_by_time(tmp_path, monkeypatch):
    stamps = iter(["20250101-120000", "20250101-120000", "20250101-120001"])
    monkeypatch.setattr(jobs_mod.time, "strftime", lambda fmt, *a: next(stamps))
    made = [new_job_dir(tmp_path, "run").name for _ in range(3)]
    assert made == ["run-20250101-120000", "run-20250101-120000-001", "run-20250101-120001"] == sorted(made)


# Status and listing without a worker ---------------------------------------------------------

def test_status_of_a_folder_without_job_json_is_missing(tmp_path):
    assert job_status(tmp_path)["status"] == "missing"
    assert job_status(tmp_path / "nowhere")["status"] == "missing"
    (tmp_path / "job.json").write_text("{not json")
    assert job_status(tmp_path)["status"] == "missing"


def test_request_stop_writes_the_stop_file(tmp_path):
    request_stop(tmp_path)
    assert (tmp_path / "STOP").is_file()


def ended_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_job(folder: Path, started: float, pid: int | None = None) -> Path:
    """A job folder as start_job leaves it, for a worker that has ended."""
    folder.mkdir(parents=True)
    meta = {"kind": "train", "argv": [], "started": started}
    if pid is not None:
        meta["pid"] = pid
    (folder / "job.json").write_text(json.dumps(meta))
    return folder


def test_list_jobs_newest_first_even_when_an_older_job_wrote_last(tmp_path):
    root = tmp_path / "jobs"
    assert list_jobs(root) == []  # no folder yet
    now = time.time()
    first = fake_job(root / "b-first", now - 300)
    second = fake_job(root / "c-second", now - 200)
    third = fake_job(root / "a-third", now - 100)
    (root / "not-a-job").mkdir()
    (root / "stray.txt").write_text("x")
    # The oldest job writes into its folder last (its result arrives late).
    (first / "result.json").write_text(json.dumps({"exit_code": 0, "result": {}}))
    os.utime(first, (now + 10, now + 10))
    assert list_jobs(root) == [third, second, first]


@pytest.mark.parametrize("pid", ["ended", None, 0, -1], ids=["ended", "no-pid", "zero", "minus-one"])
def test_status_of_a_dead_worker_without_result(tmp_path, pid):
    job = fake_job(tmp_path / "job", time.time(), ended_pid() if pid == "ended" else pid)
    assert job_status(job)["status"] == "failed"
    assert job_status(job)["error"]
    EventWriter(job / "events.jsonl")({"type": "start"})
    assert job_status(job)["status"] == "failed"
    EventWriter(job / "events.jsonl")({"type": "done", "result": {"val_accuracy": 1.0}})
    status = job_status(job)  # it finished; only the recording of its result was lost
    assert status["status"] == "done" and status["result"] == {"val_accuracy": 1.0}
    request_stop(job)
    assert job_status(job)["status"] == "stopped"


def test_status_of_a_dead_worker_that_reported_an_error(tmp_path):
    job = fake_job(tmp_path / "job", time.time(), ended_pid())
    write = EventWriter(job / "events.jsonl")
    write({"type": "start"})
    write({"type": "error", "message": "class 'blue' has no training images; add some or remove the class"})
    # Its result.json is not written yet (or never will be, after a server restart): the event tells why.
    status = job_status(job)
    assert status["status"] == "failed"
    assert status["error"] == "class 'blue' has no training images; add some or remove the class"
    (job / "result.json").write_text(json.dumps({"exit_code": 2, "error": "from the record"}))
    assert job_status(job)["error"] == "from the record"


# Real workers -----------------------------------------------------------------------------------

@pytest.fixture
def tiny_data(tmp_path):
    return make_image_folder(tmp_path / "data", n_per_class=6, size=16)


@pytest.mark.slow
def test_train_job_runs_to_done_and_leaves_its_result(tiny_data, tmp_path):
    job = tmp_path / "jobs" / "one"
    returned = start_job(job, ["train", str(tiny_data), "--out", str(job / "run"), "--weights", "none",
                               "--epochs", "2", "--input-size", str(SMALL_INPUT)], kind="train", meta={"label": "first"})
    assert returned == job
    meta = json.loads((job / "job.json").read_text())
    assert meta["kind"] == "train" and meta["label"] == "first" and meta["pid"] > 0
    assert "argv" not in meta  # no command line is kept to be read back (issue 14, item 2)
    assert job_status(job)["status"] in ("running", "done")

    status, seen = wait_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))
    assert seen[-1] == "done" and set(seen) <= {"running", "done"}
    assert status["kind"] == "train" and status["label"] == "first"

    events = read_events(job)
    # Issue 17, item 5: the worker said it had started before anything heavy, that it was loading before
    # TensorFlow, and each phase before its work; the page never looked at a silent job.
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "embedding", "loading", "embedding", "training",
                                   "evaluating", "logging", "saving"]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    events = [e for e in events if e["type"] != "phase"]  # the phases aside, the events of earlier versions
    kinds = types(events)
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0]["command"] == "train" and events[0]["epochs"] == 2
    extract = [e for e in events if e["type"] == "extract"]
    assert extract and extract[-1]["done"] == extract[-1]["total"] == 12
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [(e["epoch"], e["phase"]) for e in epochs] == [(1, "head"), (2, "head")]
    assert kinds.index("extract") < kinds.index("epoch")

    result = status["result"]
    assert result == events[-1]["result"]
    assert result["classes"] == ["blue", "red"]
    assert result["n_train"] + result["n_val"] + result["n_test"] == 12
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert result["run_dir"] == str(job / "run")
    record = result_record(job)
    assert record["exit_code"] == 0 and record["result"] == result
    assert (job / "run" / "config.json").is_file() and (job / "run" / "samples.json").is_file()

    # A fine-tuning job on that run, as the dashboard starts it: the history continues.
    tune = tmp_path / "jobs" / "two"
    start_job(tune, ["finetune", str(job / "run"), "--out", str(tune / "run"), "--layers", "10", "--epochs", "1"],
              kind="finetune")
    status, _ = wait_until_finished(tune)
    assert status["status"] == "done", (status, stderr_of(tune))
    events = read_events(tune)
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "fine_tuning", "evaluating", "logging", "saving"]
    events = [e for e in events if e["type"] != "phase"]
    assert types(events)[0] == "start" and events[0]["command"] == "finetune"
    assert [(e["epoch"], e["phase"]) for e in events if e["type"] == "epoch"] == [(3, "fine_tune")]
    assert [h["phase"] for h in status["result"]["history"]] == ["head", "head", "fine_tune"]
    assert status["result"]["fine_tuned_layers"]
    assert result_record(tune)["result"] == status["result"]
    tuned_config = json.loads((tune / "run" / "config.json").read_text())
    assert tuned_config["fine_tuned"] is True and tuned_config["input_size"] == SMALL_INPUT  # the run's own size
    assert list_jobs(tmp_path / "jobs") == [tune, job]


@pytest.mark.slow
def test_request_stop_ends_a_long_job_early(tiny_data, tmp_path):
    job = tmp_path / "job"
    start_job(job, ["train", str(tiny_data), "--out", str(job / "run"), "--weights", "none", "--epochs", "200",
                    "--input-size", str(SMALL_INPUT)])
    wait_for_event(job, "epoch")
    request_stop(job)
    assert job_status(job)["status"] in ("stopping", "stopped")
    status, _ = wait_until_finished(job)
    assert status["status"] == "stopped", (status, stderr_of(job))
    epochs = [e for e in read_events(job) if e["type"] == "epoch"]
    assert 1 <= len(epochs) < 200
    history = status["result"]["history"]
    assert len(history) == len(epochs)
    assert (job / "run" / "config.json").is_file()  # what was trained is kept
    assert types(read_events(job))[-1] == "done"


@pytest.mark.slow
def test_failing_job_reports_its_one_line_error(tmp_path):
    job = tmp_path / "job"
    missing = tmp_path / "no-such-data"
    start_job(job, ["train", str(missing), "--out", str(job / "run"), "--weights", "none"])
    status, _ = wait_until_finished(job)
    assert status["status"] == "failed"
    assert status["error"] == f"data source {str(missing)!r} does not exist"
    events = read_events(job)
    assert types(events) == ["phase", "phase", "start", "error"]
    assert [e["phase"] for e in events[:2]] == ["starting", "loading"]
    assert events[-1]["message"] == status["error"]
    assert result_record(job)["exit_code"] == 2
    assert job_status(job)["error"] == status["error"]  # the same once its result is recorded
    assert not (job / "run").exists()


@pytest.mark.slow
def test_relative_paths_are_relative_to_the_caller(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = Path("jobs") / "rel"
    start_job(job, ["train", "data", "--out", "jobs/rel/run", "--weights", "none", "--epochs", "1", "--input-size", str(SMALL_INPUT)])
    status, _ = wait_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(tmp_path / job))
    assert types(read_events(job))[-1] == "done"
    assert (tmp_path / "jobs" / "rel" / "run" / "config.json").is_file()
    assert list_jobs("jobs") == [Path("jobs") / "rel"]


# The server-wide cap on concurrent jobs -----------------------------------------------------------

def test_status_of_a_live_worker_in_line_is_waiting(tmp_path):
    job = fake_job(tmp_path / "job", time.time(), os.getpid())  # a live process stands in for the worker
    assert job_status(job)["status"] == "running"  # no event yet (TensorFlow still loading)
    write = EventWriter(job / "events.jsonl")
    write({"type": "waiting", "position": 2, "slots": 3})
    status = job_status(job)
    assert (status["status"], status["position"], status["slots"]) == ("waiting", 2, 3)
    write({"type": "start", "epochs": 1})  # it got a slot
    assert job_status(job)["status"] == "running"
    write({"type": "waiting", "position": 1, "slots": 3})
    request_stop(job)
    assert job_status(job)["status"] == "stopping"


def test_status_of_a_worker_killed_while_waiting_is_failed(tmp_path):
    job = fake_job(tmp_path / "job", time.time(), ended_pid())
    EventWriter(job / "events.jsonl")({"type": "waiting", "position": 1, "slots": 2})
    assert job_status(job)["status"] == "failed"


def test_live_status_reads_only_the_end_of_a_long_event_file(tmp_path):
    job = fake_job(tmp_path / "job", time.time(), os.getpid())
    write = EventWriter(job / "events.jsonl")
    write({"type": "start", "note": "x" * 10000})  # one line longer than the tail that is read
    write({"type": "waiting", "position": 1, "slots": 1})
    assert job_status(job)["status"] == "waiting"
    write({"type": "epoch", "note": "y" * 10000})
    assert job_status(job)["status"] == "running"
    with open(job / "events.jsonl", "a", encoding="utf-8") as f:
        f.write('{"type": "waiting", "posi')  # half-written: the last complete event counts
    assert job_status(job)["status"] == "running"


def wait_for_status(job_dir, wanted, limit=180.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = job_status(job_dir)
        if status["status"] == wanted:
            return status
        if status["status"] in FINISHED:
            pytest.fail(f"job ended as {status} before it was {wanted!r}; stderr: {stderr_of(job_dir)}")
        time.sleep(0.1)
    pytest.fail(f"job not {wanted!r} after {limit:.0f} s; stderr: {stderr_of(job_dir)}")


@pytest.fixture
def all_slots_held(monkeypatch):
    """A cap of one job (the workers inherit it, and the test's cache folder) with its slot held here."""
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    slot = slots.try_acquire()
    assert slot is not None
    yield slot
    slot.release()


@pytest.mark.slow
def test_a_job_beyond_the_cap_waits_then_runs_when_a_slot_frees(tiny_data, tmp_path, all_slots_held):
    job = tmp_path / "job"
    start_job(job, ["train", str(tiny_data), "--out", str(job / "run"), "--weights", "none", "--epochs", "1",
                    "--input-size", str(SMALL_INPUT)])
    status = wait_for_status(job, "waiting")
    assert status["position"] == 1 and status["slots"] == 1
    for _ in range(10):  # while the slot is held it stays in line and does no work
        time.sleep(0.1)
        assert job_status(job)["status"] == "waiting"
    assert types(read_events(job)) == ["phase", "waiting"]  # it said it had started, then that it waits
    assert current_phase(read_events(job)) is None  # waiting, which the page says in its own words
    assert not (job / "run").exists()

    all_slots_held.release()
    status, seen = wait_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))
    assert set(seen) <= {"waiting", "running", "done"}
    events = read_events(job)
    assert_each_phase_announced(events)
    kinds = [e["phase"] if e["type"] == "phase" else e["type"] for e in events]
    assert kinds[:2] == ["starting", "waiting"] and kinds[kinds.index("start") - 1] == "loading"  # once in a slot
    assert kinds[-1] == "done"
    assert (job / "run" / "config.json").is_file()
    assert slots.try_acquire() is not None  # the worker gave its slot back when it ended


@pytest.mark.slow
def test_a_stop_while_waiting_ends_the_job_as_stopped_without_work(tiny_data, tmp_path, all_slots_held):
    job = tmp_path / "job"
    start_job(job, ["train", str(tiny_data), "--out", str(job / "run"), "--weights", "none", "--epochs", "1",
                    "--input-size", str(SMALL_INPUT)])
    wait_for_status(job, "waiting")
    request_stop(job)
    status, _ = wait_until_finished(job)
    assert status["status"] == "stopped", (status, stderr_of(job))
    assert status["result"] == {}
    events = read_events(job)
    assert types(events) == ["phase", "waiting", "done"] and events[-1]["started"] is False
    assert result_record(job)["exit_code"] == 0
    assert not (job / "run").exists()
    assert not list((slots.slots_dir() / "queue").glob("*.ticket"))  # it left the line


def test_a_late_result_of_a_replaced_worker_is_ignored(tmp_path):
    """A resumed job gets a new worker; the reaper of the killed one may write result.json afterwards."""
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"kind": "train", "pid": os.getpid(), "started": time.time()}))
    (job / "result.json").write_text(json.dumps({"exit_code": -9, "pid": os.getpid() + 100000, "error": "killed"}))
    assert job_status(job)["status"] == "running"  # the live worker's state, not its predecessor's end
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": os.getpid(), "result": {"ok": 1}}))
    assert job_status(job)["status"] == "done"


def test_a_job_folder_removed_while_its_worker_ends_is_left_alone(tmp_path, caplog):
    # The thread that reaps a worker records its end in the job's folder; a folder deleted meanwhile (a project or
    # session removed, the cleaner) must not raise in that thread nor be made again.
    gone = tmp_path / "jobs" / "gone"
    worker = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with caplog.at_level("INFO", logger="tlcore"):
        jobs_mod._wait_and_record(worker, gone)
    assert not gone.exists() and not (tmp_path / "jobs").exists()
    assert "gone ended with status 3 after its folder was removed" in caplog.text
