"""Cheap copies of photo folders: a hard link per file, a real copy where a link cannot be made.

A training job gets a frozen snapshot of its photos. Hard links make that
snapshot free in time and disk; it stays frozen as long as the original
files are only ever replaced or deleted, never written in place (the
workspace writes through :func:`tlcore.io.atomic.write_bytes_atomic`). A
link fails across devices, on file systems without hard links, or at the
link-count limit; a copy then gives the same snapshot at the price of the
bytes.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["link_or_copy", "link_tree"]


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to the file ``src``, or a copy of it (data and metadata) when linking fails.

    Raises :class:`OSError` only when the copy fails too (``dst`` existing
    already makes the link fail and the copy then overwrite it).
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: str | Path, dst: str | Path) -> Path:
    """Recreate the folder ``src`` as ``dst`` (which must not exist), each file through :func:`link_or_copy`.

    Folders are made anew; a symbolic link is followed, as :func:`shutil.copytree`
    does by default. Returns ``dst`` as a :class:`~pathlib.Path`.
    """
    shutil.copytree(src, dst, copy_function=link_or_copy)
    return Path(dst)
