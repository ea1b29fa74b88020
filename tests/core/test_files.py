"""Hard link or copy (tlcore.io.files): a link where the file system allows one, else a faithful copy."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

import tlcore.io.files as files_mod
from tlcore.io.files import link_or_copy, link_tree


def write(path: Path, data: bytes, mtime: int = 1_600_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def refuse_links(monkeypatch, only=None):
    """Make os.link fail as it does across devices (for every file, or only those named ``only``)."""
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        if only is None or Path(src).name in only:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(files_mod.os, "link", link)


def assert_copy_of(copy: Path, original: Path) -> None:
    assert not os.path.samefile(copy, original)
    assert copy.read_bytes() == original.read_bytes()
    assert copy.stat().st_mtime == original.stat().st_mtime  # copy2 keeps the metadata


def test_link_or_copy_makes_a_hard_link_on_one_file_system(tmp_path):
    src = write(tmp_path / "a.png", b"pixels")
    link_or_copy(src, tmp_path / "b.png")
    assert os.path.samefile(src, tmp_path / "b.png") and src.stat().st_nlink == 2


def test_link_or_copy_copies_when_the_link_fails(tmp_path, monkeypatch):
    refuse_links(monkeypatch)
    src = write(tmp_path / "a.png", b"pixels")
    link_or_copy(src, tmp_path / "b.png")
    assert_copy_of(tmp_path / "b.png", src)
    (tmp_path / "b.png").write_bytes(b"changed")  # the copy is its own file
    assert src.read_bytes() == b"pixels" and src.stat().st_nlink == 1


def test_link_or_copy_copies_across_devices(tmp_path):
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second writable file system to link across")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        src = write(Path(other) / "a.png", b"pixels")
        link_or_copy(src, tmp_path / "b.png")
        assert_copy_of(tmp_path / "b.png", src)


def test_link_or_copy_raises_when_the_copy_fails_too(tmp_path):
    with pytest.raises(FileNotFoundError):
        link_or_copy(tmp_path / "missing.png", tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_link_tree_links_every_file_and_copies_only_those_it_cannot_link(tmp_path, monkeypatch):
    src = tmp_path / "data"
    cat = write(src / "cats" / "a.png", b"cat")
    dog = write(src / "dogs" / "b.png", b"dog")
    (src / "empty").mkdir()
    refuse_links(monkeypatch, only={"b.png"})
    dst = link_tree(src, tmp_path / "snap")
    assert dst == tmp_path / "snap"
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == [
        "cats", "cats/a.png", "dogs", "dogs/b.png", "empty"]
    assert os.path.samefile(dst / "cats" / "a.png", cat)
    assert_copy_of(dst / "dogs" / "b.png", dog)


def test_link_tree_refuses_an_existing_destination(tmp_path):
    write(tmp_path / "data" / "cats" / "a.png", b"cat")
    (tmp_path / "snap").mkdir()
    with pytest.raises(FileExistsError):
        link_tree(tmp_path / "data", tmp_path / "snap")
