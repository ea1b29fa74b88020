"""The tests that need a real Ray cluster: one cluster for the folder (a package-scoped fixture)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_cluster():
    """Two Ray nodes of one CPU each on this machine (a small object store each), started once for this folder's
    modules, which the scheduler (tests/conftest.py) runs on one worker, one after the other, and stopped when the
    worker leaves the folder: an idle cluster and its connected driver took about 4 % of a core for the rest of
    the run."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
    started = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        started.add_node(**node)
        started.wait_for_nodes(timeout=60)
        yield started
    finally:
        ray.shutdown()
        started.shutdown()
