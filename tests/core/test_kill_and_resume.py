"""A real training worker killed with SIGKILL resumes from its last completed epoch."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from tests.conftest import SMALL_INPUT
from tests.core.test_jobs import end_leftover_workers, stderr_of, wait_until_finished  # noqa: F401 - fixture
from tlcore.training.checkpoint import checkpoint_dir, load_checkpoint
from tlcore.jobs.runner import job_status, read_events, start_job
from tlcore.training.resume import resumable, resume_job

pytestmark = pytest.mark.slow

EPOCHS = 300  # head epochs take milliseconds: enough of them that the kill lands mid-run


def epochs_seen(job_dir) -> list[int]:
    return [e["epoch"] for e in read_events(job_dir) if e.get("type") == "epoch"]


def test_sigkill_mid_training_then_resume_continues_from_the_last_epoch(image_folder, tmp_path):
    job = tmp_path / "jobs" / "run-1"
    run = job / "run"
    data = job / "data"  # resuming rebuilds the command from the job folder's layout: <job>/data, <job>/run
    shutil.copytree(image_folder, data)
    start_job(job, ["train", str(data), "--out", str(run), "--weights", "none", "--epochs", str(EPOCHS),
                    "--input-size", str(SMALL_INPUT)])
    deadline = time.monotonic() + 240
    while len(epochs_seen(job)) < 3:
        assert job_status(job)["status"] == "running", stderr_of(job)
        assert time.monotonic() < deadline, f"no third epoch after 240 s; stderr: {stderr_of(job)}"
        time.sleep(0.01)
    pid = json.loads((job / "job.json").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)  # no clean-up of any kind can run
    reported = len(epochs_seen(job))
    status, _ = wait_until_finished(job)
    assert status["status"] == "failed" and not run.exists()

    saved = load_checkpoint(checkpoint_dir(run))
    assert saved is not None and saved.phase == "head"
    done_before = saved.epochs_done
    # An epoch is reported, then checkpointed: the kill may fall between the two.
    assert reported - 1 <= done_before <= reported < EPOCHS
    assert [h["epoch"] for h in saved.history] == list(range(1, done_before + 1))
    assert resumable(job)

    resume_job(job)
    status, _ = wait_until_finished(job)
    assert status["status"] == "done", status
    history = status["result"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert history[:done_before] == saved.history  # the completed epochs are kept, not redone
    resumed = [e for e in read_events(job) if e.get("type") == "resume"]
    assert len(resumed) == 1 and resumed[0]["history"] == saved.history
    assert (run / "model.weights.h5").is_file() and not checkpoint_dir(run).exists()
    assert json.loads((run / "config.json").read_text())["input_size"] == SMALL_INPUT  # resumed with the run's own settings
    meta = json.loads((job / "job.json").read_text())
    assert meta["resumed"] is True and "argv" not in meta
    assert not resumable(job)  # finished: nothing left to resume
