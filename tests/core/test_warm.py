"""The warm worker (tlcore.jobs.warm, tlcore.cli.warm_worker): jobs forked from a process that imported TensorFlow
once behave as the processes start_job starts itself, hold their slot locks, and end recorded."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_events import assert_each_phase_announced
from tests.core.test_jobs import stderr_of, wait_until_finished
from tlcore.jobs import warm
from tlcore.jobs.runner import job_status, read_events, request_stop, start_job

pytestmark = pytest.mark.slow


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int | str) -> str:
    """The command line of process ``pid`` as one string ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait(condition, what: str, limit: float = 120.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {limit:.0f} s")


@pytest.fixture
def warm_pid(monkeypatch, tmp_path):
    """This process's warm worker, ready for jobs; the slots of this test only."""
    monkeypatch.setenv(warm.ENV, "1")
    warm.warm_up()
    return _wait(warm.ready, "the warm worker's start")


@pytest.fixture
def data(tmp_path):
    return make_image_folder(tmp_path / "data", n_per_class=6, size=16)


def _train(job: Path, data: Path, epochs: int) -> Path:
    return start_job(job, ["train", str(data), "--out", str(job / "run"), "--weights", "none", "--epochs", str(epochs),
                           "--input-size", str(SMALL_INPUT)])


def test_a_warm_job_is_forked_holds_its_slot_and_ends_recorded(warm_pid, data, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_JOBS", "1")
    first = _train(tmp_path / "a" / "jobs" / "first", data, 500)
    pid = json.loads((first / "job.json").read_text())["pid"]
    assert _parent(pid) == warm_pid  # forked by the warm worker, not started by this process
    assert os.getpgid(pid) == pid  # in its own session, as a started worker: a Stop reaches its group only
    _wait(lambda: any(e["type"] == "epoch" for e in read_events(first)), "the first epoch")
    # The one slot is the warm job's: a job of another session waits (as a small process of its own) for it.
    second = _train(tmp_path / "b" / "jobs" / "second", data, 1)
    _wait(lambda: job_status(second)["status"] == "waiting", "the second job's wait")
    assert _parent(json.loads((second / "job.json").read_text())["pid"]) == os.getpid()
    request_stop(first)
    status, _ = wait_until_finished(first)
    assert status["status"] == "stopped", (status, stderr_of(first))
    record = json.loads(_wait(lambda: (first / "result.json").exists() and (first / "result.json").read_text(),
                              "the warm worker's record"))
    assert record["pid"] == pid and record["exit_code"] == 0 and record["result"] == status["result"]
    assert_each_phase_announced(read_events(first))
    assert "Traceback" not in stderr_of(first)
    status, _ = wait_until_finished(second)
    assert status["status"] == "done", (status, stderr_of(second))


def test_a_failing_warm_job_reports_its_one_line_error(warm_pid, tmp_path):
    job = start_job(tmp_path / "jobs" / "bad", ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run"),
                                                 "--weights", "none"])
    status, _ = wait_until_finished(job)
    assert status["status"] == "failed"
    assert status["error"] == f"data source {str(tmp_path / 'missing')!r} does not exist"
    record = json.loads(_wait(lambda: (job / "result.json").exists() and (job / "result.json").read_text(),
                              "the warm worker's record"))
    assert record["exit_code"] == 2 and record["error"] == status["error"]


def test_turned_off_jobs_start_their_own_process(monkeypatch, data, tmp_path):
    monkeypatch.setenv(warm.ENV, "0")
    assert warm.spawn(["backbones"], dict(os.environ), tmp_path, 1, 2) is None
    job = _train(tmp_path / "jobs" / "cold", data, 1)
    pid = json.loads((job / "job.json").read_text())["pid"]
    try:
        assert _parent(pid) == os.getpid()
    except FileNotFoundError:
        pass  # ended and reaped already: its record below says it ran
    status, _ = wait_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))


def test_a_malformed_request_starts_nothing(warm_pid):
    path = warm._state["folder"] / "warm.sock"
    before = set(os.listdir(f"/proc/{warm_pid}/task"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        warm.send_message(sock, {"args": ["backbones"], "env": {}, "cwd": "/", "job_dir": "/nowhere", "fds": [7]})
        reply, fds = warm.receive_message(sock)
    assert reply == {"pid": -1} and fds == []  # one descriptor named, none passed: refused before any fork
    assert set(os.listdir(f"/proc/{warm_pid}/task")) == before
    assert warm.ready() == warm_pid  # and it goes on serving


SERVER = r'''
import sys, time
from tlcore.jobs import warm
warm.warm_up()
deadline = time.monotonic() + 120
while warm.ready() is None and time.monotonic() < deadline:
    time.sleep(0.1)
print(warm.ready(), warm._state["folder"], flush=True)
'''


def test_the_warm_worker_leaves_with_its_server(tmp_path):
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", SERVER], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, warm.ENV: "1"})
    pid, folder = done.stdout.split()
    assert pid != "None", done.stderr[-2000:]
    _wait(lambda: not Path(f"/proc/{pid}").exists() or
          Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", "the warm worker's exit")
    assert not Path(folder).exists()  # its socket and private folder went with it
