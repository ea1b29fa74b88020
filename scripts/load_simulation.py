"""A workshop's rush, simulated: N sessions start a training job on the built-in sample at the same moment
(issue 20, item 4).

Each simulated session is a real workspace with the sample loaded, and starts its job exactly as the Train page
does (``new_job_dir``, ``Workspace.snapshot``, ``train_args`` with the default settings, ``start_job``), all
released by one barrier. Then every job is followed to its end. Reported: how many finished, how many were refused
and with which sentence, and that none was lost (every accepted job ended "done" with its run saved); the wait of
each accepted job (from its start request to the first event of its work, ``start``: queueing, then the worker's
start) and its whole time, as median and 95th percentile.

``--mode local`` uses this machine's runner (the job caps ``$TLCORE_MAX_JOBS`` and ``$TLCORE_MAX_WAITING``, the
warm worker, started and ready first as a server's is); ``--mode ray`` starts a two-node Ray cluster on 127.0.0.1
(``ray.cluster_utils.Cluster``) and points ``$TLCORE_RAY_ADDRESS`` at it. Either way the cache is fresh and the
default backbone's engine is prepared first, as at a server's start. Writes its section of docs/SCALING.md.
Usage: ``python scripts/load_simulation.py [--sessions 20] [--mode local|ray|both]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "SCALING.md"
HEADER = "# Scaling Transfer Lab\n"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _first_work(job: Path) -> float | None:
    from tlcore.jobs.runner import read_events

    return next((e["time"] for e in read_events(job) if e.get("type") == "start" and "time" in e), None)


def rush(sessions: int, timeout: float = 1800) -> dict:
    """Start one training job per session at the same moment and follow them all to their end."""
    from tlcore.io.errors import TLError
    from tlcore.jobs.runner import LIVE, job_status, new_job_dir, start_job
    from tlcore.lab.workspace import Workspace
    from tlcore.models.run_files import is_run
    from tlcore.training.commands import train_args
    from tlcore.training.config import TrainConfig

    base = Path(os.environ["TLCORE_CACHE_DIR"]) / "sessions"
    spaces = []
    for k in range(sessions):
        ws = Workspace(base / f"s{k:02d}")
        ws.load_sample()
        spaces.append(ws)
    barrier = threading.Barrier(sessions)
    outcomes: list[dict] = [{} for _ in spaces]

    def session(k: int) -> None:
        ws = spaces[k]
        barrier.wait()
        asked = time.time()
        job = new_job_dir(ws.jobs_dir, "run")
        try:
            data = ws.snapshot(job / "data")
            start_job(job, train_args(TrainConfig(), data, job / "run"), kind="train")
            outcomes[k] = {"job": job, "asked": asked}
        except TLError as exc:
            outcomes[k] = {"refused": str(exc), "asked": asked}

    threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.time() + timeout
    live = [o for o in outcomes if "job" in o]
    while live and time.time() < deadline:
        for o in list(live):
            status = job_status(o["job"])
            if status["status"] not in LIVE:
                o.update(ended=time.time(), status=status["status"], error=status.get("error"))
                live.remove(o)
        time.sleep(0.2)
    accepted = [o for o in outcomes if "job" in o]
    done = [o for o in accepted if o.get("status") == "done" and is_run(o["job"] / "run")]
    waits = [_first_work(o["job"]) - o["asked"] for o in done if _first_work(o["job"])]
    totals = [o["ended"] - o["asked"] for o in done]
    refusals = sorted({o["refused"] for o in outcomes if "refused" in o})
    return {
        "sessions": sessions, "accepted": len(accepted), "finished": len(done),
        "refused": sum("refused" in o for o in outcomes), "refusal_messages": refusals,
        "lost": len(accepted) - len(done),
        "lost_detail": [{"job": o["job"].name, "status": o.get("status", "still running"), "error": o.get("error")}
                        for o in accepted if o not in done],
        "wait_median_s": statistics.median(waits) if waits else None,
        "wait_p95_s": _percentile(waits, 0.95) if waits else None,
        "total_median_s": statistics.median(totals) if totals else None,
        "total_p95_s": _percentile(totals, 0.95) if totals else None,
    }


def run_mode(mode: str, sessions: int) -> dict:
    """One rush on a fresh cache in ``mode`` (local or ray), the engine prepared first as at a server's start."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TLCORE_CACHE_DIR"] = tmp
        from tlcore.training.frozen import prepare_engine

        prepare_engine()
        cluster = None
        if mode == "ray":
            from ray.cluster_utils import Cluster

            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            cluster.add_node(num_cpus=1)
            os.environ["TLCORE_RAY_ADDRESS"] = cluster.address
        else:
            from tlcore.jobs import warm

            warm.warm_up()
            deadline = time.time() + 120
            while warm.ready() is None and time.time() < deadline:
                time.sleep(0.2)
        try:
            result = rush(sessions)
            # A first run on a CPU with int8 dot products leaves an INT8 check running in the background
            # (tlcore.training.int8_choice); it writes into this cache, so the cache outlives it.
            deadline = time.time() + 900
            while list(Path(tmp, "engines").glob("*.check.json")) and time.time() < deadline:
                time.sleep(0.5)
        finally:
            os.environ.pop("TLCORE_RAY_ADDRESS", None)
            if cluster is not None:
                import ray

                ray.shutdown()
                cluster.shutdown()
        from tlcore.jobs.slots import max_jobs, max_waiting

        caps = f"{max_jobs()} running, {max_waiting()} waiting" if mode == "local" else "Ray's queue, 2 nodes x 1 CPU"
        return {"mode": mode, "caps": caps, **result}


def _row(r: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    return (f"| {r['mode']} ({r['caps']}) | {r['sessions']} | {r['finished']} | {r['refused']} | {r['lost']} | "
            f"{f(r['wait_median_s'])} | {f(r['wait_p95_s'])} | {f(r['total_median_s'])} | {f(r['total_p95_s'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--mode", choices=("local", "ray", "both"), default="both")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchdoc import cpu_description, replace_section

    modes = ("local", "ray") if args.mode == "both" else (args.mode,)
    results = [run_mode(mode, args.sessions) for mode in modes]
    print(json.dumps(results, indent=1, default=str))
    refusals = sorted({m for r in results for m in r["refusal_messages"]})
    body = "\n".join([
        f"## Simulated load: {args.sessions} sessions start training on the sample at once",
        "",
        "Measured by `scripts/load_simulation.py` (default settings: EfficientNet-Lite0, 20 epochs of the head, "
        "the 120-photo sample per session; fresh cache, the default engine prepared first as at a server's start).",
        "Wait = from the start request to the first event of the job's work; total = to its end. Seconds.",
        "",
        "| mode (caps) | sessions | finished | refused | lost | wait median | wait p95 | total median | total p95 |",
        "|---|---|---|---|---|---|---|---|---|",
        *[_row(r) for r in results],
        "",
        "Refused with: " + ("; ".join(f'"{m}"' for m in refusals) if refusals else "none refused."),
        "",
        f"- CPU: {cpu_description()}",
    ])
    replace_section("load", body, doc=DOC, header=HEADER)
    print(body)


if __name__ == "__main__":
    main()
