"""Shared fixtures: generated tiny images, an isolated cache, a seed, the shared photos; Hypothesis profiles."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# Property tests set their own number of examples (their strength); the profile decides how they are drawn.
# `ci` (whenever CI is set, as .ci/run does): derandomized, so every run tries the same examples and a
# failure is a real one that reproduces; nothing kept between runs. `dev`: new random examples each run,
# failures remembered in .hypothesis/ and replayed first. Neither has a time limit per example: a timed
# check fails by chance on a busy machine (speed lives in `make bench`).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# The input side of the random-weight Lite0 that unit tests train: which layers train, what is saved and what the
# pages show do not depend on the size, and 64 pixels cost about a twelfth of the default 224. The default size
# runs in the tests of the real backbone (ImageNet weights, the shared photos, the browser test).
SMALL_INPUT = 64

# Distinct colours make the classes learnable even from a random-weight backbone.
CLASS_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220)}


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """A cache for what runs before ``isolated_cache`` (module fixtures that train or save a run record its
    model under the cache): never the real ``~/.cache/tlcore`` of whoever runs the tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(tmp_path_factory.mktemp("session-cache")))
        # Every test runs as on a CPU without int8 dot products, whatever this machine has, so results and times
        # do not depend on it; tests of INT8 extraction name the flags they want (tests/core/test_int8_choice.py).
        mp.setenv("TLCORE_CPU_FLAGS", "")
        yield


@pytest.fixture(scope="session", autouse=True)
def warm_worker(session_cache):
    """Each test process starts its warm worker (tlcore.jobs.warm) at once, as the dashboard does when it starts:
    its jobs then fork from it instead of importing TensorFlow each (a job started before it is ready starts its
    own process, as on a server; tests/core/test_warm.py tests both)."""
    from tlcore.jobs.warm import warm_up

    warm_up()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own feature/zip cache and log folder."""
    cache = tmp_path_factory.mktemp("tlcore-cache")
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def seed():
    """A fixed seed for NumPy and Keras."""
    import keras

    keras.utils.set_random_seed(1234)
    return 1234


def write_image(path: Path, colour, size=32, rng=None, fmt=None):
    """A noisy solid-colour image: unique content, clear class signal."""
    rng = rng or np.random.default_rng(0)
    arr = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def make_image_folder(root: Path, n_per_class=8, classes=("red", "blue"), size=32, splits=None, seed=0):
    """Write ``root/[split/]class/i.png``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split in splits or [None]:
        for name in classes:
            for i in range(n_per_class):
                folder = root / split / name if split else root / name
                write_image(folder / f"{name}_{i}.png", CLASS_COLOURS[name], size, rng)
    return root


@pytest.fixture
def image_folder(tmp_path):
    """A folder of two class folders (red, blue) with 8 tiny PNGs each."""
    return make_image_folder(tmp_path / "data")


@pytest.fixture
def hymenoptera():
    """The shared ants/bees photos, or a skip when they are absent."""
    path = SHARED_DATASETS / "hymenoptera"
    if not path.is_dir():
        pytest.skip(f"shared photos not found at {path} (see ../shared/datasets/README.md)")
    return path


@pytest.fixture
def lite0_engine_cached(tmp_path_factory, isolated_cache):
    """This test's cache starts with Lite0's ImageNet engine (tlcore.training.engine), as a server's does after its
    first run: for tests of what comes after extraction, the bench command's included. Tests of the conversion
    itself (test_engine, the second-run test of test_train) do without it."""
    return seed_lite0_engine(tmp_path_factory)


def seed_lite0_engine(tmp_path_factory) -> Path:
    """Put Lite0's ImageNet engine in the cache ``$TLCORE_CACHE_DIR`` names; returns its path. Converted
    once for all workers (about 11 s here) under a lock."""
    import fcntl
    import shutil

    from tlcore.training.engine import convert_backbone, engine_path
    from tlcore.backbones.registry import DEFAULT_BACKBONE, create_backbone, get_spec
    from tlcore.training.frozen import weights_key

    spec = get_spec(DEFAULT_BACKBONE)
    # The workers of one xdist run share the parent of their temporary folders; a plain run has its own.
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    shared = root / "lite0-imagenet-engine.tflite"
    with open(root / "lite0-imagenet-engine.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.is_file():
            part = shared.with_suffix(".part")
            part.write_bytes(convert_backbone(create_backbone(spec.name, weights="imagenet")))
            part.replace(shared)
    target = engine_path(weights_key(spec.name, "imagenet"), spec.input_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared, target)
    return target


_GROUPS: dict[str, str] = {}  # test file -> its worker group
RAY_TESTS = "tests/core/cluster/"


def _module_group(nodeid: str) -> str:
    """The worker group of a test: its file; "shared-export" for the files that read the session's shared export
    (test_export.shared_exports), so that it is built once; "ray-cluster" for the folder of the Ray tests, which
    share one cluster (tests/core/cluster/conftest.py)."""
    path = nodeid.split("::", 1)[0]
    if path not in _GROUPS:
        try:
            text = (Path(__file__).resolve().parents[1] / path).read_text(encoding="utf-8")
        except OSError:
            text = ""
        _GROUPS[path] = ("shared-export" if "shared_exports" in text else
                         "ray-cluster" if path.startswith(RAY_TESTS) else path)
    return _GROUPS[path]


def pytest_xdist_make_scheduler(config, log):
    """`make test` (pytest-xdist, one worker per core): each group runs whole on one worker, so module
    fixtures are built once, in the order of :func:`pytest_collection_modifyitems`. (xdist's own
    `--dist loadgroup` reads marks that pytest 9 no longer carries in the test ids, so the groups are
    decided here; its "reorder" would hand out the groups with the most tests first, not the longest.)"""
    if config.getvalue("dist") not in ("loadscope", "loadgroup"):
        return None  # xdist's own choice (load, loadfile, each, ...)
    from xdist.scheduler import LoadScopeScheduling

    class ByModuleGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return _module_group(nodeid)

    config.option.loadscopereorder = False
    return ByModuleGroup(config, log)


# Seconds per worker group, measured by scripts/test_durations.py on a `make test` run; only the order
# of the groups depends on them (longest first), never a result. A group missing here is estimated.
_DURATIONS = Path(__file__).with_name("durations.json")


def _estimated_cost(items) -> float:
    """Seconds a group not yet measured may take: its marks say most of it."""
    return sum(100.0 if it.get_closest_marker("browser") else 20.0 if it.get_closest_marker("slow") else 0.5
               for it in items)


def pytest_collection_modifyitems(config, items):
    """The longest groups first, so that no worker is left alone with a long one at the end (the longest
    processing time rule); each group's tests together and in their usual order."""
    try:
        measured = json.loads(_DURATIONS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        measured = {}
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(_module_group(item.nodeid), []).append(item)
    cost = {g: float(measured[g]) if isinstance(measured.get(g), (int, float)) else _estimated_cost(members)
            for g, members in groups.items()}
    order = sorted(groups, key=lambda g: -cost[g])  # stable: ties keep the collection order
    items[:] = [item for g in order for item in groups[g]]


def pytest_collection_finish(session):
    """Once every test module (and so TensorFlow) is imported: freeze what is loaded out of the garbage
    collector, so that its full collections walk only what the tests make (they took about a tenth of the
    unit tests' CPU time walking TensorFlow's modules). Garbage made before is collected first."""
    import gc

    gc.collect()
    gc.freeze()
