"""A model file uploaded on the Predict page: counted against the session's disk cap, kept in its workspace, opened
first in a separate, limited process (unless this server produced it), then loaded by tlcore's safe loader."""
from __future__ import annotations

import hashlib
import re
import shutil

import streamlit as st

from tlcore.io.errors import TLError
from tlcore.models.model_files import load_model_file

from ui.frame import state
from ui.frame.models import checked

__all__ = ["load_uploaded_model", "uploaded_model"]

_KEY = "tl_uploaded_model"
_FAILED = "tl_uploaded_model_failed"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def uploaded_model() -> dict | None:
    """The session's uploaded model that loaded: ``{"name", "path", "digest", "model"}``, or None."""
    return st.session_state.get(_KEY)


def _safe_name(name: str) -> str:
    # Only the last path component, in plain characters: the name comes from the browser.
    cleaned = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")[:100]
    return cleaned or "model"


def _size(folder) -> int:
    """Bytes of the files under ``folder`` (0 when it is gone)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def load_uploaded_model(name: str, data: bytes) -> bool:
    """Keep the upload under ``<workspace>/models/`` and load it with :func:`tlcore.models.model_files.load_model_file`.

    The upload must fit in the session's disk cap (the uploaded model it
    replaces excepted). Unless this server produced the file (an export
    brought back), it is opened first in a limited worker process
    (:func:`ui.frame.models.checked`), so a crafted file cannot crash, hang or
    exhaust the server process shared by every user. Returns True when a new
    model became the session's uploaded model, False when ``data`` is the one
    already loaded. A refused file raises
    :class:`TLError`, is deleted, and leaves the session's models exactly as
    they were; the refusal is remembered so reruns do not load it again.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    current = uploaded_model()
    if current is not None and current["digest"] == digest:
        return False
    failed = st.session_state.get(_FAILED)
    if failed is not None and failed[0] == digest:
        raise TLError(failed[1])
    workspace = state.workspace()
    # The upload that replaces the current one frees its room; refused before anything is written.
    freed = _size(current["path"].parent) if current is not None else 0
    workspace.check_room(len(data), _safe_name(name), freed=freed)
    # One folder per content: a labels.txt or a model from another upload is never beside this one.
    folder = workspace.root / "models" / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _safe_name(name)
    path.write_bytes(data)
    try:
        checked(path, path.name)
        model = load_model_file(path)
    except TLError as exc:
        st.session_state[_FAILED] = (digest, str(exc))
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if current is not None:  # one uploaded model per session keeps the workspace small
        shutil.rmtree(current["path"].parent, ignore_errors=True)
    st.session_state[_KEY] = {"name": path.name, "path": path, "digest": digest, "model": model}
    return True
