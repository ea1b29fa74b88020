"""Writes that either complete or leave the previous state in place (temporary name, fsync, rename).

A folder is replaced in two renames (old aside, new in place); a crash
between them leaves the target missing but its previous version beside it
under a ``.NAME.old-*`` name, which :func:`recover_dir` puts back.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["write_bytes_atomic", "fsync_tree", "replace_dir", "recover_dir", "staged_dir"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under ``folder`` and the folders themselves to disk (before renaming it into place)."""
    folder = Path(folder)
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


def _old_versions(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)


def recover_dir(target: str | Path) -> Path:
    """Put back the previous version of ``target`` when a crash left it aside mid-replacement."""
    target = Path(target)
    if not target.exists():
        old = _old_versions(target)
        if old:
            old[0].rename(target)
    return target


def replace_dir(tmp: str | Path, target: str | Path) -> Path:
    """Move the finished folder ``tmp`` to ``target`` (flushed to disk first), replacing any previous ``target``."""
    tmp, target = Path(tmp), Path(target)
    fsync_tree(tmp)
    recover_dir(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{tmp.name}")
        target.rename(old)
    tmp.rename(target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in _old_versions(target):  # left by an earlier crash after its new version landed
        shutil.rmtree(stale, ignore_errors=True)
    return target


@contextlib.contextmanager
def staged_dir(target: str | Path):
    """Yield an empty temporary folder beside ``target``; when the block ends normally, it replaces ``target``.

    If the block raises, the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
