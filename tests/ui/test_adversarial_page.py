"""The Adversarial page: one photo attacked in the page, robustness measured in a background job."""
from __future__ import annotations

from tests.ui.conftest import open_page, shown, wait_for_job
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
