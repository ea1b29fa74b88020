"""A model that runs in a browser: a folder of static files that classifies a photo (or the camera's picture)
without sending it anywhere.

The folder holds ``index.html`` and ``classify.js`` (templates/web), the ONNX
export (:mod:`tlcore.models.onnx_conversion`) as ``model.onnx``, ``labels.txt``,
and ONNX Runtime Web's files copied from the npm package the project installs
at a pinned version (``package-lock.json``; ``make`` runs ``npm ci``): nothing
is fetched from elsewhere when the page runs, so any static file server
(``python -m http.server``) serves it, offline. ``classify.js`` decodes and
resizes a photo the way training did (Pillow's bilinear resize, rewritten in
JavaScript), so the browser gives the probabilities the exported file gives.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

from ..io.atomic import staged_dir
from ..io.errors import TLError

__all__ = ["PAGE_FILES", "RUNTIME_FILES", "runtime_dir", "runtime_version", "missing_runtime", "copy_classifier",
           "write_web_folder"]

TEMPLATES = Path(__file__).with_name("templates") / "web"
PAGE_FILES = ("index.html", "classify.js")
# ONNX Runtime Web's WebAssembly build, as one ES module with its loader inside (no other script to fetch), and
# its WebAssembly binary. The module is copied with a .js name: every static server sends .js as JavaScript,
# which a browser requires of a module, while some send .mjs as plain bytes.
RUNTIME_FILES = {"ort.wasm.bundle.min.mjs": "ort.wasm.bundle.min.js",
                 "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm"}
_PACKAGE = "onnxruntime-web"
_CHECKOUT = Path(__file__).resolve().parents[2]  # where package.json and node_modules/ are


def runtime_dir() -> Path:
    """Where ONNX Runtime Web's ``dist`` files are: ``$TLCORE_ORT_WEB_DIR``, else the checkout's
    ``node_modules/onnxruntime-web/dist`` (``npm ci``)."""
    return Path(os.environ.get("TLCORE_ORT_WEB_DIR") or _CHECKOUT / "node_modules" / _PACKAGE / "dist")


def runtime_version() -> str | None:
    """The installed ONNX Runtime Web's version (its package.json beside ``dist``), or None."""
    try:
        return json.loads((runtime_dir().parent / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return None


def missing_runtime() -> str | None:
    """Why a web export cannot be written here (one sentence), or None when ONNX Runtime Web is installed."""
    folder = runtime_dir()
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        return (f"the web export needs ONNX Runtime Web, and {str(folder / missing[0])!r} is missing; install it "
                "with `make` (or `npm ci` in the project folder)")
    return None


def copy_classifier(folder: str | Path) -> Path:
    """Copy ``classify.js`` and ONNX Runtime Web's files into ``folder`` (which must exist): what a page needs to
    classify in the browser with ``import ... from "./classify.js"`` (the web export, the dashboard's live camera);
    a :class:`TLError` when the runtime is not installed."""
    reason = missing_runtime()
    if reason:
        raise TLError(reason)
    folder = Path(folder)
    shutil.copyfile(TEMPLATES / "classify.js", folder / "classify.js")
    for source, name in RUNTIME_FILES.items():
        shutil.copyfile(runtime_dir() / source, folder / name)
    return folder


def write_web_folder(target: str | Path, onnx: bytes, classes: Sequence[str]) -> Path:
    """Write the browser folder at ``target`` (replacing it whole, never half-written) around the ONNX bytes
    ``onnx`` of a model with ``classes``; returns ``target``."""
    reason = missing_runtime()
    if reason:
        raise TLError(reason)
    target = Path(target)
    with staged_dir(target) as tmp:
        shutil.copyfile(TEMPLATES / "index.html", tmp / "index.html")
        copy_classifier(tmp)
        (tmp / "model.onnx").write_bytes(onnx)
        (tmp / "labels.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    return target
