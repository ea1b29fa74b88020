"""The one gate for paths from user-supplied files: inside the root or refused, symbolic links resolved."""
from __future__ import annotations

import os

import pytest

from tlcore.io.confine import confine, confined_or_none, relative_to
from tlcore.io.errors import TLError


@pytest.fixture
def root(tmp_path):
    (tmp_path / "ws" / "jobs" / "run-1").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "secret.txt").write_text("not yours")
    return tmp_path / "ws"


def test_relative_and_absolute_paths_inside_are_kept(root):
    assert confine(root, "jobs/run-1") == (root / "jobs" / "run-1").resolve()
    assert confine(root, str(root / "jobs" / "run-1" / "x.png")) == (root / "jobs" / "run-1" / "x.png").resolve()
    assert confine(root, ".") == root.resolve()


@pytest.mark.parametrize("value", ["/etc/passwd", "../other/secret.txt", "jobs/../../other", "jobs/run-1/../../..",
                                   "", "a\x00b"])
def test_paths_leading_outside_are_refused(root, value):
    with pytest.raises(TLError, match="outside this workspace|is not a path"):
        confine(root, value)
    assert confined_or_none(root, value) is None


@pytest.mark.parametrize("value", [None, 3, ["jobs"], {"path": "jobs"}])
def test_values_that_are_not_paths_are_refused(root, value):
    with pytest.raises(TLError, match="is not a path"):
        confine(root, value)


def test_a_symbolic_link_out_of_the_root_is_refused(root):
    os.symlink(root.parent / "other", root / "jobs" / "link")
    with pytest.raises(TLError, match="outside this workspace"):
        confine(root, "jobs/link/secret.txt")


def test_a_root_reached_through_a_link_still_holds_its_own_paths(root, tmp_path):
    os.symlink(root, tmp_path / "alias")
    assert confine(tmp_path / "alias", str(tmp_path / "alias" / "jobs")) == (root / "jobs").resolve()


def test_relative_to_strips_the_root_and_leaves_other_paths(root):
    assert relative_to(root, str(root / "jobs" / "run-1" / "run")) == "jobs/run-1/run"
    assert relative_to(root, str(root)) == "."
    assert relative_to(root, "/etc/passwd") == "/etc/passwd"
    assert relative_to(root, str(root) + "-other/x") == str(root) + "-other/x"
