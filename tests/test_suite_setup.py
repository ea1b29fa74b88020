"""The suite's own promises (docs/TESTING.md): deterministic on CI, its cost printed, shared between cores."""
from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]


def test_hypothesis_draws_the_same_examples_whenever_ci_is_set():
    current = settings.default
    if os.environ.get("CI"):
        assert current.derandomize and current.database is None
    else:
        assert not current.derandomize  # dev explores and remembers its failures
    assert current.deadline is None  # no timed check: it would fail by chance on a busy machine


def test_ci_sets_ci_and_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'^export CI="\$\{CI:-true\}"$', script, re.M)
    assert script.rstrip().endswith("make test")


def test_make_test_shares_the_suite_between_the_cores_and_prints_the_slowest_tests():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (recipe,) = re.findall(r"^test: .*\n\t(.+)$", makefile, re.M)
    assert "-m pytest -n auto --dist loadscope" in recipe and " -m \"" not in recipe  # every test, none left out
    (fast,) = re.findall(r"^test-fast: .*\n\t(.+)$", makefile, re.M)
    assert '-m "not slow and not browser"' in fast
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^addopts = ".*--durations=15.*"$', pyproject, re.M)


def test_each_file_is_one_worker_group_and_the_shared_export_readers_are_one():
    from tests.conftest import _module_group

    readers = ["test_export", "test_tflite_model", "test_bundle", "test_export_contract", "test_produced"]
    assert {_module_group(f"tests/core/{name}.py::test_x") for name in readers} == {"shared-export"}
    assert _module_group("tests/core/test_data.py::test_a[1]") == "tests/core/test_data.py"
    assert _module_group("tests/ui/test_pages.py::test_b") == "tests/ui/test_pages.py"
