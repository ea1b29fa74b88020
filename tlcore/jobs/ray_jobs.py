"""Jobs on a Ray cluster: with ``$TLCORE_RAY_ADDRESS`` set, :func:`tlcore.jobs.runner.start_job` submits each job
to the cluster instead of starting it on this machine.

A job is one Ray task (:func:`submit`) that asks for the CPUs a local job gets (and one GPU when the cluster has
any), waits in the cluster's queue instead of the local slots (:mod:`tlcore.jobs.slots`), and on its node runs the
same ``python -m tlcore ARGS`` a local job runs (forked from its node's warm worker when this server has one ready
there, :mod:`tlcore.jobs.ray_warm`), with the working directory and environment ``start_job`` gives, its output in
the job folder's ``stdout.log`` and ``stderr.log``; when that process ends, the task records its end
with the runner's own ``record_end``, so ``result.json`` is the same as a local job's. The task writes
:data:`STARTED` in the job folder when it begins: until then the job is waiting in the queue.

What the cluster must see: the job folder (the workspace) and the cache (``$TLCORE_CACHE_DIR``) at the same paths
on every node, on shared storage (NFS or the like), and the same Python environment (``requirements.txt``
installed) at the same path; tlcore itself is found through ``PYTHONPATH``, which the task carries. Ray is
imported only here, inside functions, and only when the variable is set.

This process (the server) owns the tasks it submitted (Ray ends a task whose submitter has gone): it keeps their
references, follows each one in a thread, and records the end of a task that ended without recording one (left
the queue on a Stop, or lost with its node). A Stop (:func:`stop`) takes a queued task out of the queue; a running
job gets the stop file and stops after its epoch, and a task that does not end within :data:`GRACE` seconds of it
has its worker killed (by the task itself, then by a forced cancel from here).
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..io.cpus import usable_cpus
from . import ray_warm
from ..io.errors import TLError

__all__ = ["ENV", "JOB_ENV", "in_cluster_job", "STARTED", "GRACE", "check_address", "ray_address", "connect", "submit", "warm_up_nodes", "task_state",
           "stop"]

ENV = "TLCORE_RAY_ADDRESS"
JOB_ENV = "TLCORE_RAY_JOB"  # "1" in a job's worker that a cluster's task started: it holds that task's CPUs
STARTED = "started.json"  # written by a job's task when the cluster starts it (its node and the time)
GRACE = 60.0  # seconds a running job has, after its Stop, to end by itself before its worker is killed
_CANCELLED = "it was stopped on the Ray cluster before it could save its work"

_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9.\-]+:(\d{1,5})")
_lock = threading.Lock()
_tasks: dict[str, dict] = {}  # task id (hex) -> {"ref", "done" (threading.Event), "job"}: this process's tasks
_remote: dict = {}  # the Ray remote function of _run_on_node, made once per process


def check_address(value: str, source: str = ENV) -> str:
    """``value`` when it has the form of a Ray cluster address (``auto``, ``ray://HOST:PORT`` or a ``HOST:PORT`` GCS
    address), else :class:`TLError` naming ``source`` (the variable, or an option such as ``--ray``)."""
    match = _ADDRESS.fullmatch(value)
    if value != "auto" and not (match and 0 < int(match.group(2)) < 65536):
        raise TLError(f"{source}={value!r} is not a Ray cluster address: give auto, ray://HOST:PORT or HOST:PORT")
    return value


def in_cluster_job() -> bool:
    """Whether this process is a job's worker that a Ray cluster's task started (it holds that task's CPUs)."""
    return os.environ.get(JOB_ENV) == "1"


def ray_address() -> str | None:
    """The Ray cluster jobs run on, ``$TLCORE_RAY_ADDRESS`` (see :func:`check_address`), or None when it is unset or
    blank (jobs run on this machine). The one place the variable is read."""
    value = os.environ.get(ENV, "").strip()
    return check_address(value) if value else None


def connect(address: str | None = None, source: str = ENV):
    """The ``ray`` module, connected to the cluster at ``address`` (default :func:`ray_address`), once per process
    and address; ``source`` names where the address came from in a refusal."""
    address = address or ray_address()
    if address is None:
        raise TLError(f"no Ray cluster is set ({ENV} is empty)")
    with _lock:
        import ray

        if ray.is_initialized() and _remote.get("address") == address:
            return ray
        _check_reachable(address, source)  # ray.init waits minutes for an address nobody answers at
        if ray.is_initialized():  # connected elsewhere (the address changed): its tasks are not ours
            ray.shutdown()
            _remote.clear()
            ray_warm.forget()
        try:
            # The workers' output stays in the cluster's logs: a --json line on stdout and one-line errors here.
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise TLError(f"the Ray cluster {source}={address!r} cannot be reached: {reason}") from None
        _remote["address"] = address
        return ray


def _check_reachable(address: str, source: str = ENV, timeout: float = 5.0) -> None:
    """One sentence at once when nothing listens at a ``HOST:PORT`` address (``auto`` is Ray's to find)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TLError(f"the Ray cluster {source}={address!r} cannot be reached ({exc.strerror or exc})") from None


def _resources(ray) -> tuple[int, int]:
    """``(cpus, gpus)`` a job asks for: this server's share for one job (its CPUs over the jobs it runs at once),
    at most what the largest node has (more would never be scheduled), and one GPU when the cluster has one."""
    from .slots import max_jobs

    largest = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    cpus = max(1, min(usable_cpus() // max_jobs(), int(largest)))
    return cpus, 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def submit(job_dir: str | Path, args: list[str], env: dict[str, str], record) -> dict:
    """Submit ``python -m tlcore ARGS`` of job ``job_dir`` to the cluster; returns what ``job.json`` records of its
    executor. ``record`` is :func:`tlcore.jobs.runner.record_end`, called on the node when the worker ends (and
    here for a task that ended without it)."""
    ray = connect()
    job_dir = Path(job_dir)
    (job_dir / STARTED).unlink(missing_ok=True)  # a resumed job's previous task
    cpus, gpus = _resources(ray)
    slots = max(1, int(ray.cluster_resources().get("CPU", cpus)) // cpus)  # jobs the cluster runs at once
    warm_nodes = _warm_nodes(ray, env.get("PYTHONPATH", ""))
    with _lock:
        if "fn" not in _remote:
            _remote["fn"] = ray.remote(_run_on_node)
    # No retry: a job whose node died is failed, never run twice into the same folder.
    options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0, "name": f"tlcore-{job_dir.name}",
               "runtime_env": {"env_vars": {"PYTHONPATH": env.get("PYTHONPATH", "")}}}
    ref = _remote["fn"].options(**options).remote(str(job_dir), list(args), dict(env), os.getcwd(), GRACE, record,
                                                  warm_nodes)
    task = ref.task_id().hex()
    entry = {"ref": ref, "done": threading.Event(), "job": job_dir}
    with _lock:
        _tasks[task] = entry
    threading.Thread(target=_follow, args=(task, entry, record), daemon=True, name=f"ray-{job_dir.name}").start()
    return {"engine": "ray", "address": ray_address(), "task": task, "cpus": cpus, "gpus": gpus, "slots": slots,
            "owner": {"host": socket.gethostname(), "pid": os.getpid(), "since": _process_start(os.getpid())}}


def _warm_nodes(ray, pythonpath: str) -> str | None:
    """This server's warm workers on the nodes (:mod:`tlcore.jobs.ray_warm`), started on any node that has none
    yet: the name their actors start with, or None when jobs start cold (``$TLCORE_WARM_JOBS=0``)."""
    from . import warm

    if not warm.enabled():
        return None
    try:
        ray_warm.ensure_warm_nodes(ray, pythonpath)
    except Exception as exc:  # noqa: BLE001 - the jobs still run, each in a process of its own
        log.warning("no warm workers on the Ray cluster's nodes (%s)", exc)
        return None
    return ray_warm.warm_prefix()


def warm_up_nodes() -> None:
    """Start this server's warm workers on the cluster's nodes in the background (the server's start calls it, as
    it starts the local warm worker), so that the first jobs find them ready; a failure is logged, never raised."""
    from ..io.paths import tlcore_environment

    def start():
        try:
            _warm_nodes(connect(), tlcore_environment().get("PYTHONPATH", ""))
        except Exception as exc:  # noqa: BLE001 - e.g. the cluster unreachable: its jobs will say so
            log.warning("the Ray cluster's warm workers were not started (%s)", exc)

    threading.Thread(target=start, daemon=True, name="tlcore-ray-warm").start()


def _follow(task: str, entry: dict, record) -> None:
    """Wait for the task; when it ended without recording its end, record it here."""
    import ray

    job = entry["job"]
    try:
        ray.get(entry["ref"])
    except ray.exceptions.TaskCancelledError:
        if not (job / STARTED).exists():  # taken out of the queue by a Stop: nothing ran
            _record_once(record, job, task, 0, None)
        else:
            _record_once(record, job, task, -signal.SIGKILL, _CANCELLED)
    except Exception as exc:  # the task's node or worker died, or Ray failed it
        _record_once(record, job, task, -1, f"its task on the Ray cluster ended without a result "
                                            f"({type(exc).__name__}: its node or worker was lost)")
    finally:
        entry["done"].set()


def _record_once(record, job: Path, task: str, code: int, error: str | None) -> None:
    try:
        if json.loads((job / "result.json").read_text(encoding="utf-8")).get("task") == task:
            return  # the task recorded its own end
    except (OSError, ValueError, AttributeError):
        pass
    record(-1, code, job, task=task, error=error)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``): with the pid, a process's identity."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def task_state(job_dir: str | Path, executor: dict) -> str:
    """Where the Ray task of a job that has no end recorded stands: ``queued``, ``running``, ``ended`` (it ended;
    its end is being recorded) or ``lost`` (the server that owned it has gone, and Ray ended it with its owner)."""
    entry = _tasks.get(str(executor.get("task")))
    started = (Path(job_dir) / STARTED).exists()
    if entry is not None:
        return "ended" if entry["done"].is_set() else "running" if started else "queued"
    owner = executor.get("owner") if isinstance(executor.get("owner"), dict) else {}
    # Another process submitted it: the owner's pid is of this machine only when its host is this one.
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) and owner["pid"] > 0:
        if _process_start(owner["pid"]) != owner.get("since"):
            return "lost"
    return "running" if started else "queued"


def stop(job_dir: str | Path, executor: dict) -> None:
    """After the stop file is written: take a queued task out of the cluster's queue; give a running one
    :data:`GRACE` seconds (and a little more) before its cancel is forced."""
    entry = _tasks.get(str(executor.get("task")))
    if entry is None or entry["done"].is_set():
        return  # not this process's task (its owner's Stop does this), or over
    import ray

    if not (Path(job_dir) / STARTED).exists():
        ray.cancel(entry["ref"])  # out of the queue; a task starting just now is interrupted and records itself
        return

    def force():
        if not entry["done"].wait(GRACE + 15):
            ray.cancel(entry["ref"], force=True)

    threading.Thread(target=force, daemon=True, name=f"ray-stop-{Path(job_dir).name}").start()


# On the node ----------------------------------------------------------------------------------------------------

def _run_on_node(job_dir: str, args: list[str], env: dict[str, str], cwd: str, grace: float, record,
                 warm_nodes: str | None = None) -> int:
    """The task: say it started, run the job's worker (forked by this node's warm worker when the server has one
    ready here, ``warm_nodes`` naming its actors), record its end (ended or interrupted by a cancel)."""
    import ray

    job = Path(job_dir)
    task = ray.get_runtime_context().get_task_id()
    tmp = job / (STARTED + ".tmp")
    tmp.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}),
                   encoding="utf-8")
    os.replace(tmp, job / STARTED)
    # The worker keeps the cluster's address and is told it runs in this task: a training job with many photos
    # borrows the cluster's free CPUs for its embeddings, and only those (tlcore.training.ray_extract.spare_rule),
    # else embeds with the CPUs this task holds.
    env = {**env, JOB_ENV: "1"}
    with open(job / "stdout.log", "wb") as out, open(job / "stderr.log", "wb") as err:
        proc = (ray_warm.spawn_on_node(warm_nodes, args, env, cwd, out.fileno(), err.fileno()) if warm_nodes else None)
        if proc is None:
            proc = subprocess.Popen([sys.executable, "-m", "tlcore", *args], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    error = None
    try:
        code, error = _wait(proc, job / "STOP", grace)
    except BaseException:  # a cancel interrupts the task: its worker ends with it
        _kill(proc)
        code = proc.wait()
        if (job / "STOP").exists():  # a Stop that came as the task started (it was queued): nothing to keep
            record(proc.pid, 0, job, task=task)
        else:
            record(proc.pid, code, job, task=task, error=_CANCELLED)
        raise
    record(proc.pid, code, job, task=task, error=error)
    return code


def _wait(proc, stop_file: Path, grace: float) -> tuple[int, str | None]:
    """The worker's exit status (and an error when it was killed for not stopping within ``grace`` s of a Stop)."""
    asked = None
    while True:
        try:
            return proc.wait(timeout=0.5), None
        except subprocess.TimeoutExpired:
            pass
        if asked is None:
            asked = time.monotonic() if stop_file.exists() else None
        elif time.monotonic() - asked > grace:
            _kill(proc)
            return proc.wait(), f"it did not stop within {grace:.0f} s of the Stop and was ended"


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the worker and anything it started
    except ProcessLookupError:
        pass
