"""Resume (issue 14, item 2): a job's command line is never read back from disk and run.

Resuming rebuilds the command from the checkpoint's checked settings and the job folder's own layout, so
whatever ``job.json`` says (another command, ``--out=/elsewhere``, a shell) changes nothing. The job folders
here are made by hand (no training); ``start_job`` is replaced to record what would run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

import tlcore.training.resume as resume
from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.training.checkpoint import checkpoint_dir
from tlcore.cli import build_parser
from tlcore.training.commands import finetune_args, train_args
from tlcore.io.errors import TLError
from tlcore.jobs.runner import job_status
from tlcore.training.resume import resumable, resume_job, resume_point
from tlcore.training.config import TrainConfig
from tlcore.lab.workspace import Workspace

CONFIG = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=4, lr=0.002, seed=3, split=(0.5, 0.25, 0.25))
TUNING = TrainConfig(fine_tune_layers=6, fine_tune_epochs=3, fine_tune_lr=3e-5, early_stopping=False)


def settings_of(config: TrainConfig) -> dict:
    """What a checkpoint records: every setting but the strategy, through JSON."""
    return json.loads(json.dumps({k: v for k, v in asdict(config).items() if k != "strategy"}))


def ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def failed_job(jobs: Path, name: str, kind: str = "train", settings: dict | None = None, **meta) -> Path:
    """A job whose worker died after checkpointing two epochs, as a page or a project leaves it."""
    job = jobs / name
    make_image_folder(job / "data", n_per_class=2, size=8)
    folder = checkpoint_dir(job / "run")
    folder.mkdir(parents=True)
    history = [{"epoch": i, "phase": "head"} for i in (1, 2)] + (
        [{"epoch": i, "phase": "fine_tune"} for i in (3, 4)] if kind == "finetune" else [])
    (folder / "state.json").write_text(json.dumps({
        "phase": "fine_tune" if kind == "finetune" else "head", "epochs_done": 2, "history": history,
        "settings": settings_of(TUNING if kind == "finetune" else CONFIG) if settings is None else settings,
        "data": "0" * 16}))
    pid = ended_pid()
    (job / "job.json").write_text(json.dumps({"kind": kind, "pid": pid, "started": 1.0, **meta}))
    (job / "result.json").write_text(json.dumps({"exit_code": -9, "pid": pid, "error": "killed"}))
    return job


def finished_run(jobs: Path, name: str) -> Path:
    run = jobs / name / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"backbone": "efficientnet_lite0", "train": asdict(CONFIG)}))
    return run


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "session")


@pytest.fixture
def started(monkeypatch):
    """What resume_job would start: (job folder, arguments, kind, meta)."""
    calls = []
    monkeypatch.setattr(resume, "start_job", lambda job_dir, args, kind, meta: calls.append(
        (Path(job_dir), list(args), kind, meta)) or Path(job_dir))
    return calls


@pytest.mark.parametrize("argv", [
    None,
    ["python", "-m", "tlcore", "train", "/elsewhere/photos", "--out", "RUN", "--out=/elsewhere/run"],
    ["python", "-m", "tlcore", "export", "RUN", "--format", "keras", "--out", "RUN"],
    ["sh", "-c", "touch /tmp/owned"],
], ids=["no-argv", "last-out-elsewhere", "another-command", "a-shell"])
def test_resume_rebuilds_the_command_whatever_job_json_argv_says(ws, started, argv):
    job = ws.jobs_dir / "run-1"
    argv = None if argv is None else [str(job / "run") if a == "RUN" else a for a in argv]
    failed_job(ws.jobs_dir, "run-1", **({} if argv is None else {"argv": argv}))
    assert resume_point(job) == 2 and resumable(job)
    resume_job(job)
    [(job_dir, args, kind, meta)] = started
    assert job_dir == job and kind == "train"
    assert args == [*train_args(CONFIG, job / "data", job / "run"), "--resume"]
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.data, parsed.out, parsed.resume) == ("train", str(job / "data"), str(job / "run"), True)
    assert not any("elsewhere" in a or "owned" in a for a in args)
    assert "argv" not in meta and meta["resumed"] is True


def test_a_fine_tuning_job_resumes_on_its_parent_run_inside_the_jobs_folder(ws, started):
    parent = finished_run(ws.jobs_dir, "run-1")
    job = failed_job(ws.jobs_dir, "finetune-1", kind="finetune", parent=str(parent),
                     argv=["python", "-m", "tlcore", "finetune", "/elsewhere", "--out=/elsewhere"])
    assert resume_point(job) == 2  # fine-tuning epochs only: the head epochs came with the run
    resume_job(job)
    [(_, args, kind, meta)] = started
    assert kind == "finetune" and meta["parent"] == str(parent)
    assert args == [*finetune_args(TUNING, parent, job / "run"), "--resume"]


def test_a_parent_written_relative_to_the_workspace_is_found(ws, started):
    parent = finished_run(ws.jobs_dir, "run-1")
    job = failed_job(ws.jobs_dir, "finetune-1", kind="finetune", parent="jobs/run-1/run")
    resume_job(job)
    assert Path(build_parser().parse_args(started[0][1]).run_dir).resolve() == parent.resolve()


@pytest.mark.parametrize("where", ["absolute-outside", "other-workspace", "climbing", "its-own-run", "no-run"])
def test_a_fine_tuning_job_whose_parent_is_not_a_run_of_this_workspace_is_not_resumed(ws, started, tmp_path, where):
    elsewhere = finished_run(Workspace(tmp_path / "other").jobs_dir, "run-1")  # a real run, of another session
    parent = {"absolute-outside": "/etc", "other-workspace": str(elsewhere),
              "climbing": "jobs/../../other/jobs/run-1/run", "its-own-run": str(ws.jobs_dir / "finetune-1" / "run"),
              "no-run": str(ws.jobs_dir)}[where]
    job = failed_job(ws.jobs_dir, "finetune-1", kind="finetune", parent=parent)
    assert resume_point(job) is None
    with pytest.raises(TLError) as info:
        resume_job(job)
    assert str(info.value) == ("the run that job 'finetune-1' fine-tunes is not a run of this workspace, "
                               "so it cannot be resumed")
    assert started == []


@pytest.mark.parametrize("change, message", [
    ({"argv": ["sh", "-c", "id"]}, "hold the unknown setting 'argv'"),
    ({"epochs": "4 --out=/elsewhere"}, "give epochs the value '4 --out=/elsewhere'"),
    ({"batch_size": 0}, "batch size must be a whole number >= 1, got 0"),
    ({"backbone": "../../x"}, "unknown backbone '../../x'"),
    ({"weights": "/etc/passwd"}, "names the weights file '/etc/passwd'"),
], ids=["unknown-key", "option-in-a-value", "bad-value", "bad-backbone", "weights-file"])
def test_checkpoint_settings_a_project_could_hold_are_refused_in_one_sentence(ws, started, change, message):
    job = failed_job(ws.jobs_dir, "run-1", settings={**settings_of(CONFIG), **change})
    assert resume_point(job) is None
    with pytest.raises(TLError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        resume_job(job)
    assert "'run-1'" in str(info.value) and "\n" not in str(info.value)
    assert started == []


@pytest.mark.parametrize("linked", ["run.checkpoint", "data"])
def test_a_job_folder_linking_out_of_the_workspace_is_not_resumed(ws, started, tmp_path, linked):
    job = failed_job(ws.jobs_dir, "run-1")
    outside = tmp_path / "outside"
    (job / linked).rename(outside)
    (job / linked).symlink_to(outside, target_is_directory=True)
    assert resume_point(job) is None
    what = {"run.checkpoint": "checkpoint", "data": "photos"}[linked]
    with pytest.raises(TLError, match=f"the {what} of job 'run-1' leads outside its workspace"):
        resume_job(job)
    assert started == []


def test_a_job_that_has_not_failed_or_keeps_no_checkpoint_is_not_resumed(ws, started):
    job = failed_job(ws.jobs_dir, "run-1")
    pid = json.loads((job / "job.json").read_text())["pid"]
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": {}}))
    with pytest.raises(TLError, match="the job 'run-1' cannot be resumed: it has not failed"):
        resume_job(job)
    other = failed_job(ws.jobs_dir, "export-1", kind="export")
    with pytest.raises(TLError, match="'export' jobs keep no checkpoint"):
        resume_job(other)
    assert started == []


def test_a_resume_refused_by_a_cap_leaves_the_job_as_it_was(ws, monkeypatch):
    job = failed_job(ws.jobs_dir, "run-1")
    before = (job / "result.json").read_bytes()

    def refuse(*args, **kwargs):
        raise TLError("this session already has a job waiting for a free slot")

    monkeypatch.setattr(resume, "start_job", refuse)
    with pytest.raises(TLError, match="already has a job waiting"):
        resume_job(job)
    assert (job / "result.json").read_bytes() == before
    assert job_status(job)["error"] == "killed" and resumable(job)
