"""`python -m tlcore check DATA --labels`: suspicious labels in the report, and bad inputs as one line, exit 2."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.lab import label_check


def mean_colour(paths, *args, **kwargs):
    """A stand-in backbone: each photo's mean colour, which separates the generated classes cleanly."""
    return np.array([np.asarray(Image.open(p).convert("RGB"), np.float32).mean(axis=(0, 1)) for p in paths])


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setattr(label_check, "embed_photos", mean_colour)


def misfiled(root, n=12, wrong=2):
    """Three colour classes of ``n`` photos; the first ``wrong`` red photos filed under blue."""
    data = make_image_folder(root, n_per_class=n, classes=("red", "green", "blue"), size=16)
    moved = []
    for i in range(wrong):
        src = data / "red" / f"red_{i}.png"
        dest = data / "blue" / f"moved_{i}.png"
        src.rename(dest)
        moved.append(dest.name)
    return data, moved


def test_labels_rank_the_misfiled_photos_first(tmp_path, standin):
    data, moved = misfiled(tmp_path / "data")
    code, out, err = run_cli(["check", data, "--labels", "--json"])
    assert code == 0, err
    issues = last_json(out)["label_issues"]
    assert sorted(i["path"].rsplit("/", 1)[1] for i in issues[:2]) == moved
    assert all(set(i) == {"path", "given", "suggested", "confidence"} for i in issues)
    assert [(i["given"], i["suggested"]) for i in issues[:2]] == [("blue", "red")] * 2


def test_map_adds_one_point_per_photo(tmp_path, standin):
    data, _ = misfiled(tmp_path / "data")
    code, out, err = run_cli(["check", data, "--labels", "--map", "--json"])
    assert code == 0, err
    points = last_json(out)["embedding_map"]
    assert len(points) == 36 and {p["label"] for p in points} == {"red", "green", "blue"}
    assert set(points[0]) == {"path", "label", "x", "y"}


def test_without_labels_the_report_has_no_label_issues(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=6, size=16)
    code, out, _ = run_cli(["check", data, "--json"])
    assert code == 0 and "label_issues" not in last_json(out)


def test_table_lists_the_suspects(tmp_path, standin):
    data, _ = misfiled(tmp_path / "data")
    code, out, _ = run_cli(["check", data, "--labels"])
    assert code == 0
    assert "photo(s) whose label is probably wrong, most suspicious first:" in out
    assert "labelled blue, looks like red" in out


def test_one_class_is_one_line(tmp_path, standin):
    data = make_image_folder(tmp_path / "data", n_per_class=8, classes=("red",), size=16)
    assert_user_error(*run_cli(["check", data, "--labels"]), "at least two class")


def test_too_few_photos_for_the_folds_is_one_line(tmp_path, standin):
    data = make_image_folder(tmp_path / "data", n_per_class=8, size=16)
    for i in range(5):
        (data / "blue" / f"blue_{i}.png").unlink()
    assert_user_error(*run_cli(["check", data, "--labels"]), "class 'blue' has only 3 photo(s)", "5 per class")


@pytest.mark.slow
def test_unreadable_photo_is_one_line(tmp_path):
    # The real path through the encoder (random weights, small input): the damaged file is named.
    data = make_image_folder(tmp_path / "data", n_per_class=6, size=16)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really")
    code, out, err = run_cli(["check", data, "--labels", "--json", "--weights", "none", "--input-size", "32"])
    assert_user_error(code, out, err, "broken.png", "cannot be read")
