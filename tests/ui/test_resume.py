"""The Resume button: a training job whose worker died continues from its checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_checkpoint import Crash, crash_after
from tests.ui.conftest import open_page, shown, wait_for_job
from tlcore.training.checkpoint import checkpoint_dir
from tlcore.jobs.runner import EventWriter, job_status
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import train

pytestmark = pytest.mark.slow


def test_a_dead_training_job_offers_resume_and_finishes(workspace, sid):
    make_image_folder(workspace.data_dir, n_per_class=8)
    job = workspace.jobs_dir / "run-killed"
    data = workspace.snapshot(job / "data")
    args = ["train", str(data), "--out", str(job / "run"), "--weights", "none", "--epochs", "4",
            "--split", "0.5,0.25,0.25", "--input-size", str(SMALL_INPUT)]
    events = EventWriter(job / "events.jsonl")
    events({"type": "start", "command": "train", "epochs": 4, "fine_tune_epochs": 0})

    def on_epoch(epoch, logs):
        events({"type": "epoch", **logs})
        crash(epoch, logs)

    crash = crash_after(3, [])  # dies in epoch 3: epochs 1 and 2 are checkpointed
    with pytest.raises(Crash):
        train(data, TrainConfig(weights=None, epochs=4, split=(0.5, 0.25, 0.25), input_size=SMALL_INPUT), out=job / "run", on_epoch=on_epoch)
    pid = subprocess.Popen(["true"])
    pid.wait()  # finished and reaped: the pid of no live process, as after a kill
    # A command line in job.json (as older versions wrote, or a project could hold) is never what resume runs.
    (job / "job.json").write_text(json.dumps({
        "kind": "train", "pid": pid.pid, "started": time.time(),
        "argv": [sys.executable, "-m", "tlcore", *args, "--out=/elsewhere", "--json"]}))
    assert job_status(job)["status"] == "failed"
    workspace.update_settings(current_job=str(job))

    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert any("failed" in shown(e.value) for e in at.error)
    resume = [b for b in at.button if b.label.startswith("Resume after epoch")]
    # Epoch 3 was reported, then the worker died before checkpointing it: resuming keeps 2.
    assert len(resume) == 1 and "epoch 2," in resume[0].label
    resume[0].click().run()
    assert not at.exception
    meta = json.loads((job / "job.json").read_text())
    assert meta["resumed"] is True and "argv" not in meta
    status = wait_for_job(job)
    assert status["status"] == "done", status
    assert [h["epoch"] for h in status["result"]["history"]] == [1, 2, 3, 4]
    assert not checkpoint_dir(job / "run").exists()

    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert not [b for b in at.button if b.label.startswith("Resume")]
    assert any("Validation accuracy" in s.value or "%" in s.value for s in at.success)
