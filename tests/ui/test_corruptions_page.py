"""The Adversarial page's "Everyday corruptions" panel: a background job followed like the robustness one, its
chart, the model card's summary after it, the hardening toggle, and the panel in French."""
from __future__ import annotations

from tests.ui.conftest import copy_of_trained, open_page, wait_for_job
from tests.ui.test_french import _user_words, english_words
from tests.ui.visible import visible_texts
from tlcore.adversarial.corruptions import CORRUPTIONS
from tlcore.lab.workspace import Workspace
from tlcore.models.run_files import corruptions_result, read_run_json


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_corruptions_job_draws_accuracy_per_corruption_and_severity(trained, tmp_path):
    sid, job = copy_of_trained(trained, tmp_path)  # the shared session keeps no corruptions job
    ws = Workspace.for_session(sid)
    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    assert any(h.value == "Everyday corruptions" for h in at.subheader)
    _button(at, "Measure under everyday corruptions").click().run()
    assert not at.exception
    jobs = [j for j in ws.jobs_dir.iterdir() if j.name.startswith("corruptions-")]
    assert len(jobs) == 1
    status = wait_for_job(jobs[0])
    assert status["status"] == "done", status
    result = status["result"]
    assert len(result["results"]) == 3 * len(CORRUPTIONS) and 0 <= result["mean_accuracy"] <= 1
    run_dir = ws.jobs_dir / job.name / "run"
    assert corruptions_result(run_dir)["results"] == result["results"]  # the model card's source

    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    caption = next(c.value for c in at.caption if "on average under the corruptions" in c.value)
    assert caption.startswith(f"Accuracy on {result['n']} photos (")
    figure = _figure(at, "corruptions_")
    bars = [trace for trace in figure["data"] if trace["type"] == "bar"]
    assert [b["name"] for b in bars] == ["severity 1", "severity 2", "severity 3"]
    assert bars[0]["x"][0] == "blur" and len(bars[0]["x"]) == len(CORRUPTIONS)
    (line,) = [trace for trace in figure["data"] if trace["type"] == "scatter"]
    assert line["name"] == "intact photos" and set(line["y"]) == {result["clean_accuracy"]}

    # In French, the panel (words, chart) is French.
    ws.update_settings(language="fr")
    at = open_page("pages/8_Adversarial.py", sid)
    assert any(h.value == "Dégradations ordinaires" for h in at.subheader)
    assert [b["name"] for b in _figure(at, "corruptions_")["data"] if b["type"] == "bar"][0] == "niveau 1"
    # The page's style sheet (ui.frame.chrome: Streamlit's own widget words) is CSS, not text a reader sees.
    texts = [text for text in visible_texts(at) if not text.lstrip().startswith("<style>")]
    assert {text: words for text in texts if (words := english_words(text, ignore=_user_words(sid)))} == {}


def _figure(at, key_prefix: str) -> dict:
    import json

    (chart,) = [c for c in at.get("plotly_chart") if (c.proto.id or "") and key_prefix in c.proto.id]
    return json.loads(chart.proto.spec)


def test_hardening_can_mix_in_everyday_corruptions(trained, tmp_path):
    sid, job = copy_of_trained(trained, tmp_path)
    ws = Workspace.for_session(sid)
    at = open_page("pages/8_Adversarial.py", sid)
    toggle = next(t for t in at.toggle if t.label == "Also train on everyday corruptions")
    assert toggle.value is False  # HardenConfig's default
    toggle.set_value(True).run()
    _button(at, "Harden: adversarial training of the head").click().run()
    assert not at.exception
    (hardening,) = [j for j in ws.jobs_dir.iterdir() if j.name.startswith("harden-")]
    status = wait_for_job(hardening)
    assert status["status"] == "done", status
    assert read_run_json(hardening / "run", "config.json")["adversarial_training"]["corruption_augment"] is True
