"""Jobs on a Ray cluster (tlcore.jobs.ray_jobs, issue 20): a real two-node Ray on 127.0.0.1, no mock.

The dashboard's start_job, job_status and request_stop are used as the pages use them; the cluster's two CPUs
are occupied by small holder tasks where a test needs a job to wait in the queue, so nothing depends on timing.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_jobs import FINISHED, stderr_of, wait_for_event, wait_until_finished
from tests.core.test_warm import _cmdline, _parent, _wait
from tlcore.io.errors import TLError
from tlcore.jobs import ray_jobs
from tlcore.jobs.runner import job_meta, job_status, new_job_dir, read_events, request_stop, start_job

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """Two Ray nodes of one CPU each on this machine (tests/core/conftest.py)."""
    return ray_cluster


@pytest.fixture
def on_cluster(cluster, monkeypatch):
    monkeypatch.setenv(ray_jobs.ENV, cluster.address)
    return cluster


@pytest.fixture
def data(tmp_path):
    return make_image_folder(tmp_path / "data", n_per_class=6, size=16)


def _train(job: Path, data: Path, epochs: int) -> Path:
    return start_job(job, ["train", str(data), "--out", str(job / "run"), "--weights", "none", "--epochs",
                           str(epochs), "--input-size", str(SMALL_INPUT)])


@contextmanager
def cpus_held(folder: Path, n: int = 2):
    """Every CPU of the cluster taken by a task that waits for a file: a job submitted meanwhile is queued."""
    folder.mkdir(parents=True, exist_ok=True)
    release = folder / "release"

    def hold(started: str, release: str):  # nested: Ray ships it by value, nothing to import on the node
        import os
        import time as clock

        open(started, "w").close()
        while not os.path.exists(release):
            clock.sleep(0.05)

    holder = ray_jobs.connect().remote(num_cpus=1)(hold)  # on the cluster jobs go to, connected as they are
    refs = [holder.remote(str(folder / f"held-{i}"), str(release)) for i in range(n)]
    _wait(lambda: all((folder / f"held-{i}").exists() for i in range(n)), "the holders' start")
    try:
        yield
    finally:
        release.touch()
        ray.get(refs, timeout=60)


def _statuses_until_finished(job: Path) -> tuple[dict, list[str]]:
    seen: list[str] = []

    def finished():
        status = job_status(job)
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
        return status if status["status"] in FINISHED else None

    return _wait(finished, f"the end of job {job.name}", 180.0), seen


def test_the_address_is_checked_and_blank_means_local(monkeypatch, tmp_path):
    monkeypatch.setenv(ray_jobs.ENV, "  ")
    assert ray_jobs.ray_address() is None
    for good in ("auto", "ray://head.example:10001", "10.0.0.5:6379"):
        monkeypatch.setenv(ray_jobs.ENV, good)
        assert ray_jobs.ray_address() == good
    for bad in ("head", "http://head:8265", "head:0", "head:99999", "ray://head"):
        monkeypatch.setenv(ray_jobs.ENV, bad)
        with pytest.raises(TLError, match=f"TLCORE_RAY_ADDRESS={bad!r} is not a Ray cluster address"):
            ray_jobs.ray_address()
    # A job started with a bad address is that one sentence, and leaves no folder.
    job = new_job_dir(tmp_path / "jobs", "train")
    with pytest.raises(TLError, match="is not a Ray cluster address"):
        start_job(job, ["train", "data"])
    assert not job.exists()
    # Nothing listens there: one sentence at once (Ray itself would wait for minutes), and no folder either.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        monkeypatch.setenv(ray_jobs.ENV, f"127.0.0.1:{unused.getsockname()[1]}")
        with pytest.raises(TLError, match="TLCORE_RAY_ADDRESS='127.0.0.1:[0-9]+' cannot be reached"):
            start_job(job, ["train", "data"])
    assert not job.exists()


def test_a_server_on_a_cluster_warms_its_nodes_not_this_machine(monkeypatch):
    from tlcore.jobs import runner

    started = []
    monkeypatch.setattr(runner, "warm_up", lambda: started.append("here"))
    monkeypatch.setattr(ray_jobs, "warm_up_nodes", lambda: started.append("nodes"))
    monkeypatch.setenv(ray_jobs.ENV, "auto")
    runner.warm_up_workers()
    monkeypatch.setenv(ray_jobs.ENV, "")
    runner.warm_up_workers()
    monkeypatch.setenv(ray_jobs.ENV, "not an address")  # left for the first job to say
    runner.warm_up_workers()
    assert started == ["nodes", "here"]


def test_a_worker_that_ignores_its_stop_past_the_grace_period_is_killed(tmp_path):
    stop_file = tmp_path / "STOP"
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stop_file.touch()
        code, error = ray_jobs._wait(worker, stop_file, grace=0.2)
    finally:
        worker.kill()
    assert code == -9 and error == "it did not stop within 0 s of the Stop and was ended"


def test_a_training_job_waits_in_the_cluster_queue_runs_there_and_matches_a_local_run(on_cluster, data, tmp_path,
                                                                                     monkeypatch):
    job = tmp_path / "a" / "jobs" / "ray"
    with cpus_held(tmp_path / "hold"):
        _train(job, data, 2)
        meta = job_meta(job)
        assert "pid" not in meta and "argv" not in meta  # no process of this machine, no command line to read back
        executor = meta["executor"]
        assert executor["engine"] == "ray" and executor["address"] == on_cluster.address
        assert len(executor["task"]) == 48 and executor["cpus"] == 1 and executor["gpus"] == 0
        status = job_status(job)
        assert status["status"] == "waiting" and status["slots"] == 2  # every CPU is taken: it is in Ray's queue
        assert not read_events(job) and not (job / "started.json").exists()
        # The session's one waiting job: another start of this session is refused, and leaves no folder.
        with pytest.raises(TLError, match="this session already has a job waiting"):
            _train(tmp_path / "a" / "jobs" / "second", data, 1)
        assert not (tmp_path / "a" / "jobs" / "second").exists()
    status, seen = _statuses_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))
    assert seen[0] == "waiting" and seen[-1] == "done" and set(seen) <= {"waiting", "running", "done"}
    events = read_events(job)
    assert [e["type"] for e in events if e["type"] == "epoch"] == ["epoch", "epoch"]
    assert events[-1]["type"] == "done" and events[-1]["result"] == status["result"]
    record = json.loads((job / "result.json").read_text())
    assert record["task"] == executor["task"] and record["exit_code"] == 0 and record["result"] == status["result"]
    # It embedded its 12 photos on its node, with the CPU it held: too few to borrow the cluster's free CPUs for.
    executed = status["result"]["executor"]
    assert executed["engine"] == "local" and "fewer than 2000 photos to embed" in executed["reason"]

    # The same job on this machine: the same result, to the last digit.
    monkeypatch.delenv(ray_jobs.ENV)
    local = tmp_path / "b" / "jobs" / "local"
    _train(local, data, 2)
    local_status, _ = wait_until_finished(local)
    assert local_status["status"] == "done", (local_status, stderr_of(local))
    ours, theirs = status["result"], local_status["result"]
    assert ours["val_accuracy"] == theirs["val_accuracy"] and ours["history"] == theirs["history"]
    for name in ("predictions.json", "samples.json", "metrics.json"):
        ran, here = (json.loads((folder / "run" / name).read_text()) for folder in (job, local))
        if name == "metrics.json":  # all but how long it took and why it embedded where it did
            assert ran.pop("seconds") and here.pop("seconds")
            assert ran.pop("executor") == executed and here.pop("executor") == {"engine": "local"}
        assert ran == here, name


def _train_borrowing(job: Path, data: Path) -> Path:
    """A training job that borrows one free CPU of the cluster per 4 photos to embed (12 photos: up to 3)."""
    return start_job(job, ["train", str(data), "--out", str(job / "run"), "--weights", "none", "--epochs", "1",
                           "--input-size", str(SMALL_INPUT), "--ray-spare-photos", "4", "--ray-spare-wait", "30"])


def test_a_job_with_many_photos_embeds_them_on_the_clusters_free_cpu_with_ray_data(on_cluster, data, tmp_path,
                                                                                  monkeypatch):
    """Issue 20, item 2: a job the cluster runs holds one CPU; the other node's CPU is free, so its embeddings go
    there through Ray Data (a placement group holds that CPU for the job's worker, then gives it back), and the
    run is the one a local job makes."""
    job = tmp_path / "a" / "jobs" / "borrow"
    _train_borrowing(job, data)
    status, _ = _statuses_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))
    executed = status["result"]["executor"]
    assert executed == {"engine": "ray", "address": on_cluster.address, "nodes": 2, "workers": 1}, executed
    assert all(g["state"] == "REMOVED" for g in ray.util.placement_group_table().values())  # the CPU went back

    monkeypatch.delenv(ray_jobs.ENV)
    local = tmp_path / "b" / "jobs" / "local"
    _train_borrowing(local, data)
    local_status, _ = wait_until_finished(local)
    assert local_status["status"] == "done", (local_status, stderr_of(local))
    assert local_status["result"]["executor"] == {"engine": "local"}
    ours, theirs = status["result"], local_status["result"]
    assert ours["val_accuracy"] == theirs["val_accuracy"] and ours["history"] == theirs["history"]


def test_a_job_embeds_with_its_own_cpu_when_no_cpu_of_the_cluster_is_free(on_cluster, data, tmp_path):
    job = tmp_path / "jobs" / "own"
    with cpus_held(tmp_path / "hold", n=1):  # the job gets the other CPU; none is left to borrow
        _train_borrowing(job, data)
        status, _ = _statuses_until_finished(job)
    assert status["status"] == "done", (status, stderr_of(job))
    assert status["result"]["executor"] == {
        "engine": "local", "reason": "no CPU of the Ray cluster was free: embedded with the job's own CPUs"}

def test_a_failing_job_on_the_cluster_is_failed_with_its_one_sentence(on_cluster, tmp_path):
    job = tmp_path / "jobs" / "bad"
    start_job(job, ["train", str(tmp_path / "missing"), "--out", str(job / "run"), "--weights", "none"])
    status, _ = _statuses_until_finished(job)
    assert status["status"] == "failed"
    assert "missing" in status["error"] and "\n" not in status["error"] and "Traceback" not in stderr_of(job)


def test_stop_takes_a_queued_job_out_of_the_queue_and_stops_a_running_one(on_cluster, data, tmp_path):
    queued = tmp_path / "a" / "jobs" / "queued"
    with cpus_held(tmp_path / "hold"):
        _train(queued, data, 1)
        assert job_status(queued)["status"] == "waiting"
        request_stop(queued)
        status, _ = _statuses_until_finished(queued)  # while the CPUs are still taken: it left the queue
        assert status["status"] == "stopped" and not status.get("result")
        assert not (queued / "started.json").exists() and not (queued / "run").exists() and not read_events(queued)

    # Once the server's warm workers on the nodes are ready (started with its first job), a job's worker is forked
    # by its node's warm worker instead of importing TensorFlow (tlcore.jobs.ray_warm); a Stop reaches it all the same.
    _wait(_warm_workers_ready, "the warm workers of the nodes")
    running = tmp_path / "b" / "jobs" / "running"
    _train(running, data, 500)
    wait_for_event(running, "epoch")
    assert job_status(running)["status"] == "running"
    worker = _worker_writing(running / "stdout.log")
    assert "tlcore.cli.warm_worker" in _cmdline(_parent(worker))
    request_stop(running)
    assert job_status(running)["status"] in ("stopping", "stopped")
    status, _ = _statuses_until_finished(running)
    assert status["status"] == "stopped", (status, stderr_of(running))
    epochs = [e for e in read_events(running) if e["type"] == "epoch"]
    assert 1 <= len(epochs) < 500 and len(status["result"]["history"]) == len(epochs)
    assert (running / "run" / "config.json").is_file()  # what it trained is kept
    assert json.loads((running / "result.json").read_text())["pid"] == worker


def _warm_workers_ready() -> bool:
    from tlcore.jobs import ray_warm

    return all(ray_warm.node_socket(n["NodeID"]) for n in ray.nodes() if n.get("Alive"))


def _worker_writing(log: Path) -> int:
    """The pid of the process whose standard output is ``log``: the job's worker (its task's output is Ray's)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "fd" / "1") == str(log):
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"no process writes {log}")


def test_without_the_variable_starting_a_job_never_imports_ray(data, tmp_path):
    # The server's side (start_job and the status a page reads); that the job's own process, the train command,
    # does not import Ray either is checked in test_ray_extract (a local run in a process of its own).
    script = textwrap.dedent(f"""
        import os, signal, sys
        os.environ.pop({ray_jobs.ENV!r}, None)
        os.environ["TLCORE_WARM_JOBS"] = "0"
        from tlcore.jobs.runner import job_meta, job_status, start_job
        job = start_job({str(tmp_path / "jobs" / "one")!r}, ["train", {str(tmp_path / "no-photos")!r}])
        print(job_status(job)["status"] in ("running", "failed"), "ray" in sys.modules)
        try:  # the job itself is not what this checks: spare its TensorFlow import
            os.killpg(job_meta(job)["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]