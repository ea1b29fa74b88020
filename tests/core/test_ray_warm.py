"""A process forked by a warm worker (tlcore.jobs.warm.Forked: a Ray node's job worker, a model check), waited on
as a child would be: its exit status from the warm worker's record, a timeout like Popen's, and an end that no
record follows. (The fork on a real two-node cluster: tests/core/cluster/test_ray_jobs.py; a model check:
tests/core/test_model_files.py.)"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tlcore.jobs import ray_warm, warm


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # reaped: no such process any more


def test_the_exit_status_is_the_warm_workers_record_of_that_pid(tmp_path):
    pid = _ended_pid()
    (tmp_path / "result.json").write_text(json.dumps({"exit_code": 3, "pid": pid}), encoding="utf-8")
    worker = warm.Forked(pid, tmp_path, remove=True)
    assert worker.poll() == 3 and worker.wait() == 3 and worker.returncode == 3
    assert not tmp_path.exists()  # the task's folder for the record is removed once read


def test_a_record_of_another_pid_is_not_this_workers_end(tmp_path, monkeypatch):
    monkeypatch.setattr(warm.Forked, "_LATE", 0.2)
    pid = _ended_pid()
    (tmp_path / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid + 1}), encoding="utf-8")
    worker = warm.Forked(pid, tmp_path, remove=True)
    assert worker.poll() is None
    assert worker.wait() == -1  # gone, and the record never came: the warm worker died with it


def test_a_running_worker_times_out_as_popen_does(tmp_path):
    worker = warm.Forked(os.getpid(), tmp_path)  # alive for as long as this test runs
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=0.1)
    assert worker.returncode is None


def test_actor_names_belong_to_this_server_and_node():
    prefix = ray_warm.warm_prefix()
    assert prefix.endswith(f"-{os.getpid()}") and prefix.startswith("tlcore-warm-")
    assert ray_warm._name(prefix, "ab" * 28) == f"{prefix}-{'ab' * 8}"
