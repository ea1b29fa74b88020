"""The folders Streamlit serves this repository's components from (``ui/components``): each component's page beside
``camera.js`` and ``camera.css``, which the camera components share, and for a page that classifies in the browser, beside
``classify.js`` and ONNX Runtime Web's files too. Assembled once per server in the cache (a component's folder is
all Streamlit serves it from), never half-written."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tlcore.export.web import copy_classifier, runtime_version
from tlcore.io.atomic import staged_dir
from tlcore.io.errors import TLError
from tlcore.io.paths import default_cache_dir

__all__ = ["component_folder"]

log = logging.getLogger("tlcore.ui")

SOURCES = Path(__file__).resolve().parents[1] / "components"
SHARED = ("camera.js", "camera.css")


def component_folder(name: str, classifier: bool = False) -> Path:
    """The served folder of component ``name``: its ``index.html`` and the shared files, and with ``classifier``
    the browser's classifier when ONNX Runtime Web is installed (without it the page is told by a failed import)."""
    files = [SOURCES / name / "index.html", *(SOURCES / shared for shared in SHARED)]
    identity = b"".join(f.read_bytes() for f in files) + (runtime_version() or "none").encode() * classifier
    folder = default_cache_dir() / "components" / f"{name}-{hashlib.sha256(identity).hexdigest()[:12]}"
    if not (folder / "index.html").is_file():
        with staged_dir(folder) as tmp:
            for source in files:
                (tmp / source.name).write_bytes(source.read_bytes())
            if classifier:
                try:
                    copy_classifier(tmp)
                except TLError as exc:
                    log.warning("%s without ONNX Runtime Web (%s): it classifies on the server", name, exc)
    return folder
