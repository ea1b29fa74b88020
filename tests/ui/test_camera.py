"""The Data page's camera (issue 21, item 1): what the recorder sends is checked (it comes from a browser), a
recording's frames join the chosen class once, and in a real Chromium with a fake camera, holding the button
records frames into the class."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import seed_lite0_engine
from tests.ui.conftest import open_page
from tests.ui.browser import FAKE_CAMERA, browser_page, dashboard, missing_browser_reason, record_class
from ui.views import camera
from ui.views.camera import CAMERA_ERRORS, RecordConfig, Recording, read_recording


def jpeg(colour=(200, 40, 40), size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), colour, np.uint8)).save(out, "JPEG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# What the recorder sends, checked ---------------------------------------------------------------------------

def test_a_recording_comes_back_as_its_frames():
    frames = [jpeg(), jpeg((10, 200, 10))]
    got = read_recording({"batch": "abc-1", "frames": [b64(f) for f in frames]})
    assert got == Recording(batch="abc-1", frames=frames)
    assert read_recording(None) is None  # nothing recorded yet


@pytest.mark.parametrize("kind", CAMERA_ERRORS)
def test_a_camera_error_is_named(kind):
    assert read_recording({"error": kind}) == Recording(error=kind)


@pytest.mark.parametrize("value", [
    "frames", 7, [], {"error": "<script>"}, {"frames": [b64(jpeg())]}, {"batch": "", "frames": [b64(jpeg())]},
    {"batch": "x" * 65, "frames": [b64(jpeg())]}, {"batch": "a", "frames": []}, {"batch": "a", "frames": "abc"},
    {"batch": "a", "frames": [3]}, {"batch": "a", "frames": ["not base64!"]},
    {"batch": "a", "frames": [b64(jpeg())] * (RecordConfig().max_frames + 1)},
    {"batch": "a", "frames": ["A" * (camera.MAX_FRAME_BYTES * 2)]},
], ids=lambda v: repr(v)[:40])
def test_anything_else_a_browser_sends_is_refused_whole(value):
    assert read_recording(value) == Recording(bad=True)


# The page: frames join the class once; errors are one sentence ----------------------------------------------

@pytest.fixture
def recorder(monkeypatch):
    """The recorder replaced by what a browser would have sent (the page imports it at each run)."""
    sent: dict = {"value": None}
    monkeypatch.setattr(camera, "camera_recorder", lambda key, config=RecordConfig(): read_recording(sent["value"]))
    return sent


def test_a_recording_joins_the_chosen_class_once_with_every_frame_checked(sid, workspace, recorder):
    workspace.add_class("red")
    workspace.add_class("blue")
    at = open_page("pages/1_Data.py", sid)
    at.selectbox(key="target_class").set_value("blue").run()
    recorder["value"] = {"batch": "s1-1", "frames": [b64(jpeg((30, 30, 220)))] * 5 + [b64(b"not a photo")]}
    at.run()
    assert not at.exception
    assert len(workspace.images("blue")) == 5 and not workspace.images("red")
    assert any("Added 5 photo" in s.value for s in at.success)
    assert at.warning  # the frame that is not a photo is listed, as for an upload
    at.run()  # the recorder still holds the same recording on the next run: not added again
    assert len(workspace.images("blue")) == 5
    recorder["value"] = {"batch": "s1-2", "frames": [b64(jpeg((30, 30, 220)))] * 3}
    at.run()
    assert len(workspace.images("blue")) == 8


def test_a_camera_the_browser_refuses_is_one_sentence_and_nothing_is_added(sid, workspace, recorder):
    workspace.add_class("red")
    recorder["value"] = {"error": "insecure"}
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert [w.value for w in at.warning] == [
        "The browser keeps the camera closed on this address: cameras open only on localhost or over HTTPS "
        "(see the README to serve the dashboard over HTTPS)."]
    recorder["value"] = {"batch": "a", "frames": ["%%%"]}
    at.run()
    assert [e.value for e in at.error] == ["The camera recording could not be read, so nothing was added."]
    assert not workspace.images("red")


# A real browser with a fake camera ----------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(missing_browser_reason() is not None, reason=f"browser test skipped: {missing_browser_reason()}")
def test_holding_the_button_records_the_fake_camera_into_the_class(tmp_path, tmp_path_factory, monkeypatch):
    """Chromium's fake camera: the live view plays, holding "Hold to record" counts frames as they come, and on
    release every one of them is in the class."""
    shots = Path(os.environ.get("TL_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(cache))
    seed_lite0_engine(tmp_path_factory)  # nothing for the server to prepare: this test starts no job
    with dashboard(cache, jobs=False) as base, browser_page(height=1500, extra_flags=FAKE_CAMERA) as page:
        got = record_class(page, base, "toy", 20, shots)
    assert got["counted"] >= 20
    assert got["added"] >= got["counted"] and got["listed"] == f"toy ({got['added']})"  # every frame, once
