"""The live camera (issue 21, item 2): the camera classified continuously, the top classes as moving bars.

In the browser where it can: the component (``ui/components/camera_live``) runs the run's ONNX export with ONNX
Runtime Web and the web export's own preprocessing (``classify.js``), so ten people demoing at once put no load
on the server. The component's folder is assembled once per server in the cache: its page beside
``classify.js`` and the runtime's files (:func:`ui.views.components.component_folder`). The ONNX file is handed to
this session's browser as a Streamlit media file (the way ``st.image`` hands over a photo: an address made from
the file's digest, dropped when the session no longer shows it). Where the browser cannot (no ONNX export, no
WebAssembly, no runtime on the server), the page classifies frames the component sends, at a reduced rate; what
a browser sends is checked here before it is decoded.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from tlcore.data.images import ImageDecodeError, decode_image
from tlcore.io.settings import setting

from ui.frame.layout import t
from ui.views.camera import CAMERA_ERRORS, MAX_FRAME_BYTES
from ui.views.components import component_folder

__all__ = ["LiveConfig", "LIVE_TEXTS", "live_camera", "read_frame", "server_answer"]

LIVE_TEXTS = ("fps_browser", "fps_server")


@dataclass(frozen=True)
class LiveConfig:
    """How the live camera classifies."""

    server_fps: float = setting(2.0, "frames a second the server classifies where the browser cannot",
                                minimum=0.2, maximum=10)
    side: int = setting(320, "longest side of a frame sent to the server", minimum=64, maximum=1280, unit="pixels")
    top: int = setting(3, "classes shown as bars", minimum=1, maximum=10)


_live = components.declare_component("camera_live", path=str(component_folder("camera_live", classifier=True)))


def read_frame(value, last: int) -> tuple[int, bytes] | None:
    """A new frame the component sent: ``(n, JPEG bytes)`` when ``value`` carries frame number ``n`` above
    ``last``; None for anything else (nothing sent, an old frame, a camera error, a value of another shape)."""
    if not isinstance(value, dict) or not isinstance(value.get("frame"), str) or not isinstance(value.get("n"), int):
        return None
    if value["n"] <= last or len(value["frame"]) > MAX_FRAME_BYTES * 4 // 3 + 4:
        return None
    try:
        return value["n"], base64.b64decode(value["frame"], validate=True)
    except (binascii.Error, ValueError):
        return None


def server_answer(value, last: dict | None, model, n_classes: int) -> dict | None:
    """The server's answer to the component's ``value``: ``{"n", "probabilities"}`` for a new frame (zeros for a
    frame that is not a readable photo), else the ``last`` answer unchanged."""
    frame = read_frame(value, last["n"] if last else 0)
    if frame is None or model is None:
        return last
    n, data = frame
    try:
        probabilities = model.predict_batch(decode_image(data, model.input_size)[None])[0]
    except ImageDecodeError:
        return {"n": n, "probabilities": [0.0] * n_classes}  # an unreadable frame: the next one may do
    return {"n": n, "probabilities": [float(p) for p in probabilities]}


def _media_url(path: Path) -> str | None:
    """An address this session's browser can fetch ``path`` at (a Streamlit media file), or None outside a
    server (a test's script runner)."""
    from streamlit import runtime

    if not runtime.exists():
        return None
    return runtime.get_instance().media_file_mgr.add(str(path), "application/octet-stream", "tl-live-model")


def live_camera(key: str, classes: list[str], onnx: Path | None, model, config: LiveConfig = LiveConfig(),
                large: bool = False) -> str | None:
    """Draw the live camera classified by ``onnx`` in the browser, or by ``model`` (anything with
    ``predict_batch`` and ``input_size``) on the server at ``config.server_fps`` when there is no ONNX file or the
    browser cannot run it; returns the camera error the browser reported (one of :data:`CAMERA_ERRORS`), if any."""
    value = st.session_state.get(key)  # the frame the component sent, before it is drawn again with the answer
    answer = st.session_state[f"{key}_answer"] = server_answer(value, st.session_state.get(f"{key}_answer"), model,
                                                               len(classes))
    url = _media_url(onnx) if onnx is not None else None
    _live(key=key, default=None, mode="browser" if url else "server", model_url=url, labels=list(classes),
          server_fps=config.server_fps, side=config.side, top=min(config.top, len(classes)), large=large,
          server_result=answer, texts={**{k: t(f"live.{k}") for k in LIVE_TEXTS},
                                       **{f"error_{k}": t(f"camera.error_{k}") for k in CAMERA_ERRORS}})
    error = value.get("error") if isinstance(value, dict) else None
    return error if error in CAMERA_ERRORS else None
