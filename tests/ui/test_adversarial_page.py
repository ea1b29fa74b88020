"""The Adversarial page: one photo attacked in the page, robustness measured in a background job."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from tests.ui.conftest import copy_of_trained, open_page, shown, wait_for_job
from tests.ui.test_pages import png
from tlcore.lab.workspace import Workspace


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_adversarial_page_needs_a_run(sid):
    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    assert any("No finished training yet" in shown(w.value) for w in at.warning)


def test_attack_on_a_held_out_photo_shows_three_images_bars_and_a_download(trained):
    sid, _ = trained
    at = open_page("pages/8_Adversarial.py", sid, timeout=120)
    assert not at.exception
    at.radio[1].set_value("fgsm").run()
    at.slider[0].set_value(0.05).run()
    _button(at, "Attack").click().run()
    assert not at.exception
    captions = [c for img in at.get("image") for c in img.captions]
    assert any(c.startswith("Original:") for c in captions)
    assert any(c.startswith("Perturbation, amplified (L-inf") for c in captions)
    # The L-infinity change shown never exceeds the chosen epsilon.
    linf = float(next(c for c in captions if c.startswith("Perturbation")).split("L-inf ")[1].rstrip(")"))
    assert 0 < linf <= 0.05
    assert len(at.get("plotly_chart")) == 2
    assert any(b.proto.label == "Download the adversarial image (PNG)" for b in at.get("download_button"))
    assert at.success or at.error  # resisted or fooled: said in one sentence either way


def test_attack_on_an_upload_that_is_not_an_image_is_one_sentence(trained):
    sid, _ = trained
    at = open_page("pages/8_Adversarial.py", sid, timeout=120)
    at.radio[0].set_value("upload").run()
    at.file_uploader[0].set_value(("notes.png", b"hello", "image/png")).run()
    _button(at, "Attack").click().run()
    assert not at.exception
    assert any("notes.png" in shown(e.value) and "not an image" in shown(e.value) for e in at.error)
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    _button(at, "Attack").click().run()
    assert not at.exception and not at.error or any(e.value.startswith("Fooled") for e in at.error)


def test_robustness_job_draws_accuracy_against_epsilon(trained):
    sid, job = trained
    at = open_page("pages/8_Adversarial.py", sid)
    _button(at, "Measure robustness").click().run()
    assert not at.exception
    jobs = [j for j in Workspace.for_session(sid).jobs_dir.iterdir() if j.name.startswith("robustness-")]
    assert len(jobs) == 1
    status = wait_for_job(jobs[0])
    assert status["status"] == "done", status
    curve = status["result"]
    assert curve["epsilons"][0] == 0 and len(curve["fgsm"]) == len(curve["pgd"]) == len(curve["epsilons"])
    assert curve["pgd"][-1] <= curve["pgd"][0]  # a stronger attack never helps the model
    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    assert any(c.value.startswith("Accuracy on") for c in at.caption)
    assert len(at.get("plotly_chart")) >= 1


def test_ideal_class_job_shows_the_image_and_how_it_grew(trained):
    sid, _ = trained
    at = open_page("pages/8_Adversarial.py", sid)
    chosen = next(s for s in at.selectbox if s.label == "Class").value
    next(s for s in at.slider if s.label == "Steps").set_value(20).run()
    _button(at, "Generate the ideal image").click().run()
    assert not at.exception
    jobs = [j for j in Workspace.for_session(sid).jobs_dir.iterdir() if j.name.startswith("ideal-")]
    assert len(jobs) == 1
    status = wait_for_job(jobs[0])
    assert status["status"] == "done", status
    assert status["result"]["class"] == chosen and len(status["result"]["snapshots"]) == 3  # steps 0, 10, 20
    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    captions = [c for img in at.get("image") for c in img.captions]
    assert any(c.startswith(f"Ideal {chosen}: the model gives it") for c in captions)
    assert ["0", "10", "20"] == [c for c in captions if c.isdigit()]


@pytest.fixture
def served(monkeypatch):
    """What the next page runs serve to the browser: ``served(url_or_deferred_id) -> bytes`` (the images it draws,
    the files its download buttons give)."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.media_file_manager import MediaFileManager

    managers = []

    class Recording(MediaFileManager):
        def __init__(self, storage):
            super().__init__(storage)
            managers.append((self, storage))

    monkeypatch.setattr(app_test, "MediaFileManager", Recording)

    def fetch(ref: str) -> bytes:
        manager, storage = managers[-1]
        if ref.startswith("/"):
            return storage.get_file(ref.rsplit("/", 1)[1]).content
        # A download made on click: what the click would run (Streamlit keeps no public way to read it back).
        return manager._deferred_callables[ref]["callable"]()

    return fetch


def _ideal_job(jobs_dir, run_dir, image: np.ndarray, frames: dict[int, np.ndarray]):
    """An ideal-class job folder as a finished worker leaves it (tlcore.cli.adversarial._ideal)."""
    job = jobs_dir / "ideal-test"
    (job / "frames").mkdir(parents=True)
    final = job / "frames" / "ideal.png"
    Image.fromarray(image).save(final)
    events = []
    for step, frame in frames.items():
        Image.fromarray(frame).save(job / "frames" / f"step_{step:04d}.png")
        events.append({"type": "ideal", "step": step, "total": max(frames), "image": str(job / "frames" / f"step_{step:04d}.png")})
    (job / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    pid = 999_999_999  # no such process; result.json says the job ended
    (job / "job.json").write_text(json.dumps({"kind": "ideal", "pid": pid, "started": time.time(),
                                              "parent": str(run_dir)}))
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": {
        "class": "red", "image": str(final), "probability": 0.9, "snapshots": [], "steps": max(frames)}}))
    return final


def _spread(png_or_jpeg: bytes) -> np.ndarray:
    """Each channel's 1st-99th percentile range of an image file."""
    pixels = np.asarray(Image.open(io.BytesIO(png_or_jpeg)).convert("RGB"), np.float32).reshape(-1, 3)
    low, high = np.percentile(pixels, [1, 99], axis=0)
    return high - low


def test_the_ideal_image_is_shown_stretched_and_downloaded_as_made(trained, tmp_path, served):
    """Issue 17, item 6: the grown image is grey and low-contrast; the page stretches it for the eye and says so,
    and the download is the image as generated."""
    sid, job = copy_of_trained(trained, tmp_path)  # the shared session keeps no ideal job
    ws = Workspace.for_session(sid)
    rng = np.random.default_rng(0)
    faint = np.clip(128 + rng.normal(0, 6, (64, 64, 3)), 0, 255).astype(np.uint8)  # about 128 +- 14
    grey = np.full((64, 64, 3), 128, np.uint8)
    final = _ideal_job(ws.jobs_dir, ws.jobs_dir / job.name / "run", faint, {0: grey, 10: faint})

    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    (shown,) = [im for im in at.get("image") if any(c.startswith("Ideal red") for c in im.captions)]
    assert (_spread(final.read_bytes()) < 40).all()
    assert (_spread(served(shown.proto.imgs[0].url)) > 200).all()  # spread over (nearly) the full range
    assert any(c.value.startswith("Contrast stretched for display") for c in at.caption)
    (download,) = [b for b in at.get("download_button") if b.proto.label == "Download the image as generated (PNG)"]
    assert served(download.proto.deferred_file_id) == final.read_bytes()
    # The steps are stretched alike (by the final image's range): the grey start stays grey, the last is spread.
    (steps,) = [im for im in at.get("image") if list(im.captions) == ["0", "10"]]
    start, last = (served(img.url) for img in steps.proto.imgs)
    assert (_spread(start) < 10).all() and (_spread(last) > 200).all()
