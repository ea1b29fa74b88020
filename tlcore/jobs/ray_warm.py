"""Warm workers on a Ray cluster's nodes: jobs there start without importing TensorFlow again.

:mod:`tlcore.jobs.warm` keeps one warm worker per server, and a job forked from it skips the four seconds of CPU a
new process spends importing TensorFlow. On a cluster a job's worker must be forked on the node that runs its task,
so each node needs its own: this server starts one small Ray actor per alive node (:class:`WarmNode`, pinned to the
node, holding no CPU: it only waits), which starts that node's warm worker and holds it. A job's task asks the actor
of its node for the warm worker's socket and has the job's worker forked there (:func:`spawn_on_node`); while none
is ready (a node's first seconds) the task starts the worker as a process of its own, as before.

The actors are named after this server (its host and process), so servers sharing a cluster never use each
other's, and Ray ends them when this server's connection ends, as the local warm worker leaves with its server:
they run the code the server imported, and a restarted server starts new ones.
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

__all__ = ["WarmNode", "warm_prefix", "ensure_warm_nodes", "forget", "node_socket", "spawn_on_node"]

_NAMESPACE = "tlcore"
_lock = threading.Lock()
_actors: dict[str, object] = {}  # node id -> this server's actor on it (held: an actor without a handle ends)
_remote: dict = {}  # the actor class, made once per process


def warm_prefix() -> str:
    """The name this server's warm actors start with: its host and process."""
    return f"tlcore-warm-{socket.gethostname()}-{os.getpid()}"


def _name(prefix: str, node_id: str) -> str:
    return f"{prefix}-{node_id[:16]}"


class WarmNode:
    """A Ray actor: its node's warm worker (:mod:`tlcore.jobs.warm`), started at once and held while it lives."""

    def __init__(self):
        from . import warm

        os.environ[warm.ENV] = "1"  # the server that made this actor wants warm jobs
        warm.warm_up()

    def socket(self) -> str | None:
        """The warm worker's socket on this node, or None while it is still importing TensorFlow."""
        from . import warm

        path = warm.socket_path()
        return str(path) if path is not None else None


def ensure_warm_nodes(ray, pythonpath: str) -> None:
    """Start this server's warm actor on each alive node of the cluster that has none yet."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with _lock:
        if "cls" not in _remote:
            _remote["cls"] = ray.remote(WarmNode)
        prefix = warm_prefix()
        for node in ray.nodes():
            node_id = node.get("NodeID")
            if not node.get("Alive") or not node_id or node_id in _actors:
                continue
            _actors[node_id] = _remote["cls"].options(
                name=_name(prefix, node_id), namespace=_NAMESPACE, get_if_exists=True, num_cpus=0, max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}).remote()


def forget() -> None:
    """Drop the handles of this server's actors (its connection to their cluster has ended, and them with it)."""
    with _lock:
        _actors.clear()


def node_socket(node_id: str, prefix: str | None = None) -> str | None:
    """The socket of the warm worker on node ``node_id`` (of the server whose actors are named ``prefix``, this one
    by default), or None while it is not ready or when there is none."""
    import ray

    try:
        actor = ray.get_actor(_name(prefix or warm_prefix(), node_id), namespace=_NAMESPACE)
        return ray.get(actor.socket.remote(), timeout=10)
    except Exception:  # noqa: BLE001 - no actor there (yet), or it is gone
        return None


def spawn_on_node(prefix: str, args: list[str], env: dict[str, str], cwd: str, stdout: int,
                  stderr: int):
    """In a job's task: have the warm worker of this node (of the server whose actors are named ``prefix``) fork
    the job's worker, ``python -m tlcore ARGS`` in ``cwd`` with ``env``, its output on ``stdout`` and ``stderr``.
    A :class:`tlcore.jobs.warm.Forked`, or None when this node has no warm worker ready (the caller starts the
    worker itself)."""
    import ray

    from . import warm

    path = node_socket(ray.get_runtime_context().get_node_id(), prefix)
    if not path:
        return None
    # The warm worker records the end of what it forks in a folder: this task's own, not the job's, whose
    # result.json the task writes itself (with its task id) once it has read the exit status there.
    ends = Path(tempfile.mkdtemp(prefix="tlcore-ray-end-"))
    pid = warm.ask(Path(path), args, env, ends, stdout, stderr, cwd=cwd)
    if pid is None:
        os.rmdir(ends)
        return None
    return warm.Forked(pid, ends, remove=True)
