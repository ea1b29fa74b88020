"""Embedding extraction on a real two-node Ray cluster (tlcore.training.ray_extract), against the local path.

One cluster for the module: two nodes of one CPU each on this machine, no dashboard, a small object store. The
backbone is the random-weight Lite0 at 64 pixels, saved to a weights file so that its features are cached (a
random-weight run caches nothing) and its TFLite engine is converted once for the module.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.training.features import FeatureCache, extract_features
from tlcore.training.frozen import weights_key
from tlcore.training.ray_extract import RAY_ADDRESS_ENV, EncoderRecipe, RayExtraction

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]
BACKBONE = "efficientnet_lite0"


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The address of the two-node Ray cluster on this machine (tests/core/conftest.py); this process is its
    driver once a test connects."""
    return ray_cluster.address


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ray-cache")


@pytest.fixture(scope="module")
def lite0_file(module_cache, tmp_path_factory):
    """A random-weight Lite0 at 64 pixels as a weights file, its engine converted into the module's cache."""
    import keras

    from tlcore.backbones.registry import create_backbone

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("weights") / "lite0-64.weights.h5"
    create_backbone(BACKBONE, weights=None, input_shape=(SMALL_INPUT, SMALL_INPUT, 3)).save_weights(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(module_cache))
        recipe(str(path)).encoder()  # converts and caches the engine once for every test here
    return str(path)


@pytest.fixture
def shared_cache(module_cache, monkeypatch):
    """This test works in the module's cache (its engine is there): after the autouse isolated one."""
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(module_cache))
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    return module_cache


def recipe(weights: str) -> EncoderRecipe:
    return EncoderRecipe(BACKBONE, weights, SMALL_INPUT, weights_key(BACKBONE, weights, SMALL_INPUT), 0)


@pytest.fixture(scope="module")
def extracted(cluster, lite0_file, module_cache, tmp_path_factory):
    """The same photos (a broken one and a missing one among them) embedded locally and on the cluster, each into a
    cache of its own, then locally again from the cluster's cache."""
    root = tmp_path_factory.mktemp("photos")
    data = make_image_folder(root / "data", n_per_class=5)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    paths = sorted(str(p) for p in data.rglob("*.png")) + [str(data / "blue" / "gone.png")]
    made = recipe(lite0_file)
    key = made.backbone_key
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(module_cache))
        local = extract_features(paths, key, made.encoder, SMALL_INPUT, FeatureCache(root / "local"))
        progress: list[tuple[int, int]] = []
        ray_run = RayExtraction(cluster, made)
        remote = ray_run.extract(paths, key, None, SMALL_INPUT, FeatureCache(root / "ray"),
                                 on_progress=lambda done, total: progress.append((done, total)))

        def refuse(batch):
            raise AssertionError("a run after the cluster's must find every vector in the cache")

        # The broken file is read again (it is never cached), so an encoder is asked for, never called.
        again = extract_features(paths, key, lambda: refuse, SMALL_INPUT, FeatureCache(root / "ray"))
    return {"paths": paths, "root": root, "local": local, "remote": remote, "again": again, "progress": progress,
            "executor": ray_run.executor()}


def _npy(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.npy"))


def test_ray_embeddings_equal_the_local_ones_in_the_same_cache(extracted):
    local, remote, again = extracted["local"], extracted["remote"], extracted["again"]
    assert remote.kept == local.kept and len(local.kept) == 10
    np.testing.assert_allclose(remote.features, local.features, rtol=1e-5, atol=1e-5)
    assert (remote.cache_hits, remote.computed) == (0, 10)
    # The same cache entries (same key, same content sha) as the local run wrote: a later local run only hits.
    assert _npy(extracted["root"] / "ray") == _npy(extracted["root"] / "local") and len(_npy(extracted["root"] / "ray")) == 10
    assert (again.cache_hits, again.computed) == (10, 0)
    np.testing.assert_array_equal(again.features, remote.features)
    total = len(extracted["paths"])
    counts = [done for done, _ in extracted["progress"]]
    assert extracted["progress"][0] == (0, total) and extracted["progress"][-1] == (total, total)
    assert counts == sorted(counts) and {t for _, t in extracted["progress"]} == {total}
    assert extracted["executor"]["engine"] == "ray" and extracted["executor"]["nodes"] == 2
    assert extracted["executor"]["workers"] >= 1


def test_a_broken_or_missing_file_is_skipped_with_the_local_reason(extracted):
    assert extracted["remote"].skipped == extracted["local"].skipped
    reasons = {Path(s["path"]).name: s["reason"] for s in extracted["remote"].skipped}
    assert set(reasons) == {"broken.png", "gone.png"}
    assert reasons["broken.png"].startswith("corrupt or truncated image")
    assert reasons["gone.png"].startswith("cannot read file")


def _train_args(data, out, weights):
    return ["train", str(data), "--out", str(out), "--weights", weights, "--input-size", str(SMALL_INPUT),
            "--epochs", "3", "--json"]


def _local_train_in_a_process(argv, cache: Path) -> tuple[dict, bool]:
    """A local ``train`` in a fresh Python (no ``$TLCORE_RAY_ADDRESS``): its result and whether Ray was imported."""
    script = ("import json, sys\nfrom tlcore.cli import main\ncode = main(sys.argv[1:])\n"
              "print(json.dumps({'ray_imported': 'ray' in sys.modules}))\nsys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if k != RAY_ADDRESS_ENV}
    env.update(TLCORE_CACHE_DIR=str(cache), PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])["ray_imported"]


def test_train_on_the_cluster_the_variable_names_matches_a_local_run(cluster, lite0_file, shared_cache, tmp_path,
                                                                    monkeypatch):
    data = make_image_folder(tmp_path / "data", n_per_class=8, seed=3)
    local, ray_imported = _local_train_in_a_process(_train_args(data, tmp_path / "local", lite0_file), shared_cache)
    assert local["executor"] == {"engine": "local"} and not ray_imported
    assert local["features"] == {"cache_hits": 0, "computed": 16}
    shutil.rmtree(shared_cache / "features")  # the cluster computes every vector again
    monkeypatch.setenv(RAY_ADDRESS_ENV, cluster)  # the variable alone names the cluster (the option: see below)
    code, out, err = run_cli(_train_args(data, tmp_path / "ray", lite0_file))
    assert code == 0, err
    result = last_json(out)
    executor = result["executor"]
    assert executor["engine"] == "ray" and executor["address"] == cluster
    assert executor["nodes"] == 2 and executor["workers"] >= 1
    assert result["features"] == {"cache_hits": 0, "computed": 16}
    assert result["val_accuracy"] == local["val_accuracy"] and result["test_accuracy"] == local["test_accuracy"]
    assert result["val"] == local["val"]
    saved = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    assert saved["executor"] == executor
    # --ray local overrides the variable: this machine, from the vectors the cluster put in the cache.
    code, out, err = run_cli([*_train_args(data, tmp_path / "again", lite0_file), "--ray", "local"])
    assert code == 0, err
    again = last_json(out)
    assert again["executor"] == {"engine": "local"} and again["features"] == {"cache_hits": 16, "computed": 0}
    assert again["val_accuracy"] == result["val_accuracy"]


@pytest.mark.parametrize("address, fragment", [("127.0.0.1:1", "the Ray cluster --ray='127.0.0.1:1' cannot be reached"),
                                               ("not an address", "--ray='not an address' is not a Ray cluster address")])
def test_a_bad_address_is_one_sentence(shared_cache, tmp_path, address, fragment):
    data = make_image_folder(tmp_path / "data", n_per_class=4)
    assert_user_error(*run_cli(_train_args(data, tmp_path / "run", "none") + ["--ray", address]), fragment)


def test_the_address_comes_from_the_option_then_the_variable(monkeypatch):
    from tlcore.training.ray_extract import ExecutorConfig, ray_address

    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    assert ray_address() is None and ray_address(ExecutorConfig("local")) is None
    assert ray_address(ExecutorConfig("ray://head:10001")) == "ray://head:10001"
    monkeypatch.setenv(RAY_ADDRESS_ENV, "auto")
    assert ray_address() == "auto" and ray_address(ExecutorConfig("10.0.0.5:6379")) == "10.0.0.5:6379"
    assert ray_address(ExecutorConfig("local")) is None  # this machine, whatever the environment says


def test_only_a_job_the_cluster_runs_borrows_spare_cpus_and_its_settings_are_checked(monkeypatch):
    from tlcore.io.errors import TLError
    from tlcore.jobs.ray_jobs import JOB_ENV
    from tlcore.training.ray_extract import ExecutorConfig, Spare, spare_rule

    monkeypatch.delenv(JOB_ENV, raising=False)
    assert spare_rule() is None  # a shell or a local job: --ray / the variable mean every photo on the cluster
    monkeypatch.setenv(JOB_ENV, "1")
    assert spare_rule() == Spare(2000, 20.0)
    assert spare_rule(ExecutorConfig(ray_spare_photos=50, ray_spare_wait=3)) == Spare(50, 3)
    assert spare_rule(ExecutorConfig("auto")) is None  # its own --ray: as asked
    with pytest.raises(TLError, match="ray spare photos must be a whole number of photos >= 1, got 0"):
        spare_rule(ExecutorConfig(ray_spare_photos=0))


def test_spare_cpus_taken_before_the_wait_ends_are_given_up_and_the_photos_embedded_here(cluster, lite0_file,
                                                                                        shared_cache, tmp_path,
                                                                                        monkeypatch):
    """The free CPUs counted are gone (every CPU of the cluster is held, though the count said two were free): the
    placement group is given up after its wait, not waited for, and the photos are embedded here, the same as a
    local run."""
    import ray

    from tests.core.cluster.test_ray_jobs import cpus_held
    from tlcore.jobs import ray_jobs
    from tlcore.training.ray_extract import Spare

    monkeypatch.setenv(RAY_ADDRESS_ENV, cluster)
    made = recipe(lite0_file)
    paths = sorted(str(p) for p in make_image_folder(tmp_path / "data", n_per_class=3).rglob("*.png"))
    run = RayExtraction(cluster, made, Spare(photos=2, wait=1.0))
    ray_jobs.connect(cluster)
    with cpus_held(tmp_path / "hold"):
        monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 2.0})
        got = run.extract(paths, made.backbone_key, made.encoder, SMALL_INPUT, FeatureCache(tmp_path / "c"))
    assert run.executor() == {"engine": "local", "reason": "the 2 free CPU(s) of the Ray cluster were taken before "
                                                           "1 s passed: embedded with the job's own CPUs"}
    assert all(g["state"] == "REMOVED" for g in ray.util.placement_group_table().values())
    local = extract_features(paths, made.backbone_key, made.encoder, SMALL_INPUT, FeatureCache(tmp_path / "l"))
    assert got.kept == local.kept
    np.testing.assert_array_equal(got.features, local.features)


def test_a_spare_rule_with_fewer_photos_than_it_asks_never_connects(lite0_file, shared_cache, tmp_path):
    from tlcore.training.ray_extract import Spare

    made = recipe(lite0_file)
    paths = sorted(str(p) for p in make_image_folder(tmp_path / "data", n_per_class=2).rglob("*.png"))
    run = RayExtraction("127.0.0.1:1", made, Spare(photos=100, wait=1.0))  # nothing listens there
    got = run.extract(paths, made.backbone_key, made.encoder, SMALL_INPUT, FeatureCache(tmp_path / "c"))
    assert got.computed == len(paths)
    assert run.executor()["engine"] == "local" and "fewer than 100 photos" in run.executor()["reason"]
