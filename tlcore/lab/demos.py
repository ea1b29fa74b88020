"""Demo links (issue 21, item 3): an address that shows one run's live camera and nothing else, for a phone or a
screen in the room.

A link carries a random token; ``demos/<token>.json`` in the cache names the session and the run it shows (and
the run's ONNX export, which the browser runs). This module owns that format: :func:`find_demo` checks a token
(its shape, its file, its age, the run and the ONNX file inside their session's workspace) before a page uses
it. Whoever holds a link can classify the camera with that run's model, and nothing else: not the session's
photos, not its other runs, not the session itself, whose id is never in the link. A link lasts
:data:`DEMO_HOURS` hours, or until its session ends it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..io.atomic import write_bytes_atomic
from ..io.paths import default_cache_dir
from ..models.run_files import is_run
from .workspace import Workspace

__all__ = ["DEMO_HOURS", "Demo", "create_demo", "find_demo", "end_demo"]

DEMO_HOURS = 12
_TOKEN = re.compile(r"[0-9a-f]{32}")
_MAX_BYTES = 4096  # a link's file is a few lines; anything larger was not written here


@dataclass(frozen=True)
class Demo:
    """What a valid link shows: the run, its ONNX export (None: the server classifies), whose session, until when."""

    token: str
    session: str
    run_dir: Path
    onnx: Path | None
    expires: float


def _folder() -> Path:
    return default_cache_dir() / "demos"


def _inside(root: Path, relative) -> Path | None:
    """``root / relative`` when ``relative`` is a relative path that stays inside ``root``, else None."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        return None
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def create_demo(workspace: Workspace, session: str, run_dir: Path, onnx: Path | None = None,
                now: float | None = None) -> str:
    """A new link's token for ``run_dir`` of ``workspace`` (the session ``session``), with the run's ``onnx``
    export when it has one; ValueError when either is not inside the workspace."""
    root = workspace.root.resolve()
    run = Path(run_dir).resolve()
    if not run.is_relative_to(root) or not is_run(run):
        raise ValueError(f"{str(run_dir)!r} is not a run of this session")
    if onnx is not None and not (Path(onnx).resolve().is_relative_to(root) and Path(onnx).suffix == ".onnx"):
        raise ValueError(f"{str(onnx)!r} is not an ONNX export of this session")
    token = secrets.token_hex(16)
    now = time.time() if now is None else now
    record = {"session": session, "run": str(run.relative_to(root)),
              "onnx": str(Path(onnx).resolve().relative_to(root)) if onnx is not None else None,
              "created": now, "expires": now + DEMO_HOURS * 3600}
    write_bytes_atomic(_folder() / f"{token}.json", json.dumps(record).encode())
    return token


def find_demo(token, now: float | None = None) -> Demo | None:
    """The demo ``token`` links to, or None when it is not a token, unknown, expired, or what it named is gone
    or lies outside its session's workspace."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    path = _folder() / f"{token}.json"
    try:
        if path.is_symlink() or path.stat().st_size > _MAX_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("expires"), (int, float)):
        return None
    if (time.time() if now is None else now) > record["expires"]:
        end_demo(token)
        return None
    session = record.get("session")
    workspace = Workspace.existing(session)
    if workspace is None:
        return None
    run = _inside(workspace.root, record.get("run"))
    if run is None or not is_run(run):
        return None
    onnx = _inside(workspace.root, record["onnx"]) if record.get("onnx") is not None else None
    if onnx is not None and not (onnx.suffix == ".onnx" and onnx.is_file()):
        onnx = None
    return Demo(token, session, run, onnx, float(record["expires"]))


def end_demo(token: str) -> None:
    """The link ``token`` stops working (nothing happens for a token that is not one)."""
    if isinstance(token, str) and _TOKEN.fullmatch(token):
        (_folder() / f"{token}.json").unlink(missing_ok=True)
