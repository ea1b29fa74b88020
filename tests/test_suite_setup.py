"""The suite's own promises (docs/TESTING.md): deterministic on CI, its cost printed, shared between cores."""
from __future__ import annotations

import json
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
    (pytest_command,) = re.findall(r"^PYTEST := (.+)$", makefile, re.M)
    makefile = makefile.replace("$(PYTEST)", pytest_command)
    assert pytest_command.startswith("PYTHONDONTWRITEBYTECODE= ")  # compiled test modules are kept between runs
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
    # The Ray tests share the cluster of their folder (package-scoped: stopped when the worker leaves the folder).
    ray_files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "core" / "cluster").glob("test_*.py"))
    assert len(ray_files) == 2 and {_module_group(f"{f}::test_x") for f in ray_files} == {"ray-cluster"}
    assert _module_group("tests/ui/test_waiting_and_errors.py::test_c") == "tests/ui/test_waiting_and_errors.py"


class _Item:
    def __init__(self, nodeid, mark=None):
        self.nodeid, self._mark = nodeid, mark

    def get_closest_marker(self, name):
        return object() if name == self._mark else None


def test_the_longest_groups_start_first_measured_or_estimated(tmp_path, monkeypatch):
    import tests.conftest as suite

    durations = tmp_path / "durations.json"
    durations.write_text(json.dumps({"tests/core/test_a.py": 5.0, "tests/core/test_b.py": 50.0}), encoding="utf-8")
    monkeypatch.setattr(suite, "_DURATIONS", durations)
    items = [_Item("tests/core/test_a.py::one"), _Item("tests/core/test_c.py::slow", "slow"),
             _Item("tests/core/test_a.py::two"), _Item("tests/core/test_b.py::one"),
             _Item("tests/ui/test_d.py::browser", "browser")]
    suite.pytest_collection_modifyitems(None, items)
    # test_d (not measured, a browser test: estimated 100 s), test_b (50 s), test_c (slow: 20 s), test_a (5 s)
    assert [it.nodeid for it in items] == ["tests/ui/test_d.py::browser", "tests/core/test_b.py::one",
                                           "tests/core/test_c.py::slow", "tests/core/test_a.py::one",
                                           "tests/core/test_a.py::two"]
    durations.write_text("not json", encoding="utf-8")  # a damaged file: the estimates alone (half a second a test)
    suite.pytest_collection_modifyitems(None, items)
    assert [it.nodeid.split("::")[0] for it in items] == ["tests/ui/test_d.py", "tests/core/test_c.py",
                                                          "tests/core/test_a.py", "tests/core/test_a.py",
                                                          "tests/core/test_b.py"]


def test_every_measured_group_is_a_group_of_the_suite():
    from tests.conftest import _DURATIONS, _module_group

    measured = json.loads(_DURATIONS.read_text(encoding="utf-8"))
    files = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")}
    groups = {_module_group(f"{f}::x") for f in files}
    assert set(measured) <= groups, "rerun scripts/test_durations.py after renaming a test file"
