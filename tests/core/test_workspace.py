"""A session's workspace: classes, checked uploads, zips, snapshots, settings, ids."""
from __future__ import annotations

import io
import os
import zipfile

import pytest

from tests.conftest import CLASS_COLOURS, make_image_folder, write_image
from tlcore.io.errors import TLError
from tlcore.lab.workspace import Workspace, new_session_id, valid_session_id


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def png_bytes(tmp_path, colour="red", name="x.png"):
    return write_image(tmp_path / name, CLASS_COLOURS[colour]).read_bytes()


def test_upload_keeps_images_and_lists_the_rest_with_reasons(ws, tmp_path):
    good = png_bytes(tmp_path)
    added, rejected = ws.add_files("cats", [("a.png", good), ("notes.jpg", b"hello, not an image"),
                                            ("empty.png", b""), ("b.png", good)])
    assert [p.name for p in added] == ["a.png", "b.png"]
    assert [r["name"] for r in rejected] == ["notes.jpg", "empty.png"]
    assert "not an image" in rejected[0]["reason"] and rejected[1]["reason"] == "empty file"
    assert ws.counts() == {"cats": 2}


def test_same_file_name_twice_is_kept_under_a_new_name(ws, tmp_path):
    data = png_bytes(tmp_path)
    first = ws.add_image("cats", "photo.png", data)
    second = ws.add_image("cats", "photo.png", data)
    assert first != second and first.exists() and second.exists()


def test_uploaded_names_cannot_escape_the_class_folder(ws, tmp_path):
    path = ws.add_image("cats", "../../evil name.png", png_bytes(tmp_path))
    assert path.parent == ws.data_dir / "cats" and " " not in path.name


@pytest.mark.parametrize("name", ["", "   ", "../up", "a/b", ".hidden", "x" * 61])
def test_bad_class_names_are_refused_with_the_name(ws, name):
    with pytest.raises(TLError, match="class name"):
        ws.add_class(name)
    assert ws.classes() == []


def test_zip_of_class_folders_is_merged_and_broken_files_reported(ws, tmp_path):
    folder = make_image_folder(tmp_path / "src", n_per_class=3, splits=["train", "val"])
    (folder / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(folder))
    added, rejected = ws.add_zip(buffer.getvalue())
    assert ws.counts() == {"blue": 6, "red": 6}
    assert len(added) == 12 and [r["name"] for r in rejected] == ["red/broken.jpg"]


def test_remove_image_and_class(ws, tmp_path):
    ws.add_files("cats", [("a.png", png_bytes(tmp_path)), ("b.png", png_bytes(tmp_path))])
    ws.remove_image("cats", "a.png")
    assert [p.name for p in ws.images("cats")] == ["b.png"]
    ws.remove_class("cats")
    assert ws.classes() == []


def test_sample_replaces_the_data(ws, tmp_path):
    ws.add_files("cats", [("a.png", png_bytes(tmp_path))])
    ws.load_sample(per_class=3)
    assert ws.counts() == {"circle": 3, "square": 3, "triangle": 3}


def test_snapshot_is_frozen_against_later_edits(ws, tmp_path):
    ws.load_sample(per_class=2)
    snap = ws.snapshot(tmp_path / "snap")
    ws.clear_data()
    assert sorted(p.name for p in snap.iterdir()) == ["circle", "square", "triangle"]
    assert sum(1 for _ in snap.rglob("*.png")) == 6


def test_settings_round_trip(ws):
    assert ws.settings() == {}
    ws.update_settings(language="fr")
    ws.update_settings(seed=3)
    assert Workspace(ws.root).settings() == {"language": "fr", "seed": 3}


def test_session_ids_are_validated_before_they_name_a_folder(tmp_path):
    sid = new_session_id()
    assert valid_session_id(sid) and not valid_session_id("../" + sid[3:]) and not valid_session_id(None)
    folder = sid.split(".")[0]  # a signed id names the folder of its random part (tlcore.lab.sessions)
    assert Workspace.for_session(sid, tmp_path).root == tmp_path / folder
    with pytest.raises(TLError, match="invalid session id"):
        Workspace.for_session("../../etc", tmp_path)
    assert os.listdir(tmp_path) == [folder]


def test_move_image_relabels_a_photo(ws, tmp_path):
    ws.add_files("cats", [("a.png", png_bytes(tmp_path))])
    ws.add_files("dogs", [("a.png", png_bytes(tmp_path))])
    moved = ws.move_image("cats", "a.png", "dogs")
    assert moved.name == "a_1.png" and [p.name for p in ws.images("dogs")] == ["a.png", "a_1.png"]
    assert ws.images("cats") == []


@pytest.mark.parametrize("klass, filename, to", [
    ("cats", "../dogs/a.png", "dogs"),  # a path, not a file name
    ("cats", "missing.png", "dogs"),
    ("../cats", "a.png", "dogs"),
    ("cats", "a.png", "birds"),  # no such class
    ("cats", "a.png", "../../x"),
])
def test_move_image_refuses_hostile_or_wrong_names(ws, tmp_path, klass, filename, to):
    ws.add_files("cats", [("a.png", png_bytes(tmp_path))])
    ws.add_class("dogs")
    with pytest.raises(TLError):
        ws.move_image(klass, filename, to)
    assert [p.name for p in ws.images("cats")] == ["a.png"]
