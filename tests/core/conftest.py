"""Fixtures shared by the core tests."""
from __future__ import annotations

import contextlib

import pytest

import tlcore.models.run as run_mod
from tests.core.test_export import make_export_run
from tests.core.test_finetune import lite0_standin, wide_lite0_standin


def _runs_reload_as(build):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_mod, "create_backbone", build)
        yield


@pytest.fixture(scope="module")
def run_standin():
    """For a whole module: reloading a run builds the tiny Lite0-shaped stand-in, not the real backbone."""
    yield from _runs_reload_as(lite0_standin)


@pytest.fixture(scope="module")
def shared_export_standin():
    """For the modules that read test_export.shared_exports: its run reloads as the stand-in it was made of."""
    yield from _runs_reload_as(wide_lite0_standin)


@contextlib.contextmanager
def standin_export_run(tmp_path_factory, name: str):
    """``(root, built)``: a tiny stand-in run made by ``make_export_run`` in a fresh folder, with the
    cache inside it for as long as the block lasts (module fixtures run outside the autouse one)."""
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
        yield root, make_export_run(root, backbone=lite0_standin)
