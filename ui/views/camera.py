"""The camera on the Data page (issue 21): a live view and "hold to record", frames captured in the browser at a
chosen rate and added to a class as photos.

The recorder is a Streamlit component of this repository (``ui/components/camera_recorder``: one HTML file, no
build step, nothing fetched, so it works offline). What it sends back comes from a browser, so it is hostile until
:func:`read_recording` has checked its shape and sizes here; the frames are then photos like any upload, checked
by the workspace (decodable image, size caps, the session's disk cap).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import streamlit as st
import streamlit.components.v1 as components

from tlcore.io.settings import setting

from ui.frame.layout import t
from ui.views.components import component_folder

__all__ = ["RecordConfig", "Recording", "CAMERA_ERRORS", "RECORDER_TEXTS", "read_recording", "camera_recorder"]

_recorder = components.declare_component("camera_recorder", path=str(component_folder("camera_recorder")))

# What the browser may say instead of frames: no camera API outside localhost/HTTPS, permission refused, no
# camera, anything else.
CAMERA_ERRORS = ("insecure", "denied", "none", "other")
MAX_FRAME_BYTES = 2 * 1024 * 1024  # a recorded frame is a JPEG of at most RecordConfig.side pixels: far less
RECORDER_TEXTS = ("hold", "recording", "count", "hint", *(f"error_{kind}" for kind in CAMERA_ERRORS))


@dataclass(frozen=True)
class RecordConfig:
    """How the Data page's camera records."""

    frames_per_second: int = setting(8, "frames recorded per second while the button is held", minimum=1, maximum=15,
                                     offered=(2, 5, 8, 10, 15))
    max_frames: int = setting(60, "frames one recording keeps at most", minimum=1, maximum=200)
    side: int = setting(480, "longest side of a recorded frame", minimum=64, maximum=1280, unit="pixels")
    quality: float = setting(0.9, "JPEG quality of a recorded frame", minimum=0.5, maximum=1.0)


@dataclass(frozen=True)
class Recording:
    """What the recorder sent: a recording's ``batch`` id and its JPEG ``frames``, or the camera ``error``
    (one of :data:`CAMERA_ERRORS`), or ``bad`` when the value was not what the recorder sends."""

    batch: str = ""
    frames: list[bytes] = field(default_factory=list)
    error: str = ""
    bad: bool = False


def read_recording(value, config: RecordConfig = RecordConfig()) -> Recording | None:
    """The recorder's ``value`` checked: None when it sent nothing yet; a :class:`Recording` with ``bad`` set when
    the value is not a recording (wrong shape, too many or too big frames, not base64)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return Recording(bad=True)
    if "error" in value:
        return Recording(error=value["error"]) if value["error"] in CAMERA_ERRORS else Recording(bad=True)
    batch, frames = value.get("batch"), value.get("frames")
    if not (isinstance(batch, str) and 0 < len(batch) <= 64 and isinstance(frames, list)
            and 0 < len(frames) <= config.max_frames):
        return Recording(bad=True)
    decoded = []
    for frame in frames:
        if not isinstance(frame, str) or len(frame) > MAX_FRAME_BYTES * 4 // 3 + 4:
            return Recording(bad=True)
        try:
            decoded.append(base64.b64decode(frame, validate=True))
        except (binascii.Error, ValueError):
            return Recording(bad=True)
    return Recording(batch=batch, frames=decoded)


def camera_recorder(key: str, config: RecordConfig = RecordConfig()) -> Recording | None:
    """Draw the live camera and its "hold to record" button; the last recording (or camera error), checked."""
    value = _recorder(key=key, default=None, fps=config.frames_per_second, limit=config.max_frames,
                      side=config.side, quality=config.quality, texts={k: t(f"camera.{k}") for k in RECORDER_TEXTS})
    return read_recording(value, config)
