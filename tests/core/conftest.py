"""Fixtures shared by the core tests."""
from __future__ import annotations

import pytest

import tlcore.run as run_mod
from tests.core.test_finetune import lite0_standin


@pytest.fixture(scope="module")
def run_standin():
    """For a whole module: reloading a run builds the tiny Lite0-shaped stand-in, not the real backbone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_mod, "create_backbone", lite0_standin)
        yield
