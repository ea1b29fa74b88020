"""The sidebar checklists under AppTest: an empty session, ticked data items, a finished run, a failure."""
from __future__ import annotations

import json

import pytest

from tests.conftest import make_image_folder
from tests.core.test_checklist import epochs
from tests.ui.conftest import open_page
from tlcore.data.advice import TIERS
from tlcore.lab.checklist import Facts, Item, deployment_checklist, training_checklist
from tlcore.analysis.diagnosis import CODES, diagnose
from ui.views.checklist import item_line
from ui.frame.i18n import catalog

OK, TODO, WARN = ":material/check_circle:", ":material/radio_button_unchecked:", ":material/warning:"


def line(at, name: str):
    """The sidebar's Markdown line of the checklist item called ``name``."""
    return next(m for m in at.sidebar.markdown if name in m.value)


def test_an_empty_workspace_ticks_nothing(sid):
    at = open_page("app.py", sid)
    assert not at.exception
    # nothing ticked before there are photos; the frozen backbone does not apply before a run
    assert "**Before training** · 0/4" in [m.value for m in at.sidebar.markdown]
    assert "**Before deployment** · 0/3" in [m.value for m in at.sidebar.markdown]
    assert not [m.value for m in at.sidebar.markdown if OK in m.value]
    assert TODO in line(at, "Three separate splits").value
    assert line(at, "Three separate splits").proto.help.startswith("Checked once there are photos")
    assert TODO in line(at, "Enough photos per class").value
    assert line(at, "Enough photos per class").proto.help == \
        f"Add photos on the Data page: {TIERS['start']} per class are enough to start."
    assert TODO in line(at, "Classes balanced or compensated").value
    assert "at least two classes" in line(at, "Classes balanced or compensated").proto.help
    assert TODO in line(at, "Photos at the backbone's size").value
    for name in ("Curves checked", "Test-set evaluation done", "Export verified"):
        assert TODO in line(at, name).value
        assert line(at, name).proto.help == "Train a model first."


def test_balanced_data_and_an_80_10_10_split_are_ticked(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=8)
    workspace.update_settings(split=[80, 10, 10])
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert OK in line(at, "Classes balanced or compensated").value
    assert "has 1 times the photos" in line(at, "Classes balanced or compensated").proto.help
    assert OK in line(at, "Three separate splits").value
    assert line(at, "Three separate splits").proto.help == "Training 80%, validation 10%, test 10%."
    # 32-pixel photos are never ticked: smaller than every backbone (or unknown until Keras is loaded)
    assert OK not in line(at, "Photos at the backbone's size").value


def test_loading_the_sample_ticks_the_data_items_at_once(sid):
    # The sidebar is drawn before the page's button acts: the page reruns so it shows the new photos.
    at = open_page("pages/1_Data.py", sid)
    assert TODO in line(at, "Classes balanced or compensated").value
    next(b for b in at.button if "sample" in b.label).click().run()
    assert not at.exception
    assert "Sample loaded: 120 images in 3 classes, 40 per class (enough to start)." in [s.value for s in at.success]
    assert OK in line(at, "Classes balanced or compensated").value
    assert OK in line(at, "Three separate splits").value
    assert OK in line(at, "Enough photos per class").value
    assert line(at, "Enough photos per class").proto.help.endswith(
        f"has 40 photos: enough to start. {TIERS['good']} per class is good, {TIERS['great']} great.")


def test_a_split_without_test_photos_is_flagged(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=8)
    workspace.update_settings(split=[90, 10, 0])
    at = open_page("app.py", sid)
    assert WARN in line(at, "Three separate splits").value
    assert "test 0%" in line(at, "Three separate splits").proto.help


def test_the_run_items_follow_the_finished_run(trained):
    sid, job = trained
    metrics = json.loads((job / "run" / "metrics.json").read_text())
    at = open_page("app.py", sid)
    assert not at.exception
    assert OK in line(at, "Backbone frozen for phase 1").value
    assert line(at, "Backbone frozen for phase 1").proto.help.startswith("3 head epoch(s)")
    test_line = line(at, "Test-set evaluation done")  # training is no look at the test split
    assert TODO in test_line.value
    assert f"The {metrics['n_test']} test photos are kept back" in test_line.proto.help
    expected = OK if diagnose(metrics["history"])["code"] == "good_fit" else WARN
    assert expected in line(at, "Curves checked").value
    assert TODO in line(at, "Export verified").value
    assert line(at, "Export verified").proto.help == "Export the run on the Export page."
    assert "run-test" in line(at, "Before deployment").proto.help


def test_the_checklists_speak_french(sid):
    at = open_page("app.py", sid)
    at.selectbox(key="language_select").select("fr").run()
    assert any(m.value.startswith("**Avant le déploiement**") for m in at.sidebar.markdown)


def test_a_failing_checklist_leaves_the_page_whole(sid, monkeypatch, caplog):
    import ui.views.checklist

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ui.views.checklist, "gather_facts", broken)
    at = open_page("app.py", sid)
    assert not at.exception and not at.error
    assert at.title[0].value == "Transfer Lab"
    assert not any("Before training" in m.value for m in at.sidebar.markdown)
    assert "sidebar checklist failed" in caplog.text


CASES = [Facts(), Facts(counts={"a": 10, "b": 10}, image_sides=(300,), input_size=224, run="r/run",
                        history=tuple(epochs("head", 8)), n_test=3, test_accuracy=0.5, exported=True)]
CASES += [Facts(counts={"a": 30, "b": 10}, class_weights=w, resample=r) for w, r in
          (("auto", "none"), ("none", "oversample"), ("none", "none"))]
CASES += [Facts(counts={"a": 2, "b": 10}, split=s, split_folders=f, image_sides=(100,), input_size=i)
          for s, f, i in (((90, 10, 0), False, 224), ((80, 10, 10), False, None), ((100, 0, 0), True, 64))]
CASES += [Facts(run="r/run", history=tuple(epochs("fine_tune", 3)), exported=True, verified=True, int8_drop=d)
          for d in (None, 0.01, 0.05)]
CASES += [Facts(run="r/run", history=({"epoch": 1, "phase": "head", "loss": 1.0},))]
CASES += [Facts(counts={"a": n, "b": n}) for n in TIERS.values()]  # each data tier
CASES += [Facts(run="r/run", n_test=3, test_accuracy=0.5, test_scored=True)]  # its test split looked at


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_every_item_is_worded_in_both_languages(lang):
    seen = set()
    for facts in CASES:
        for item in training_checklist(facts) + deployment_checklist(facts):
            seen.add((item.key, item.reason))
            line, why = item_line(item, lang)
            assert f"checklist.{item.key}.{item.reason}" in catalog(lang) and "{" not in why and why
    # the cases reach every worded reason; the curves' verdicts come from the diagnosis, each worded too
    worded = {tuple(k.split(".")[1:]) for k in catalog(lang) if k.startswith("checklist.") and k.count(".") == 2}
    verdicts = {("curves", code) for code in CODES}
    assert verdicts <= worded and worded - verdicts == seen - verdicts


def test_a_verdict_unknown_to_the_catalog_shows_the_diagnosis_message():
    item = Item("curves", "warn", "wobbly", {"message": "the curves wobble"})
    assert item_line(item)[1] == "the curves wobble"


def test_the_train_pages_choices_count_while_it_is_open(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=16, classes=("red",))
    make_image_folder(workspace.data_dir, n_per_class=4, classes=("blue",))
    at = open_page("pages/3_Train.py", sid)
    assert OK in line(at, "Classes balanced or compensated").value  # auto class weights, the default
    at.selectbox(key="class_weights").select("none").run()
    assert WARN in line(at, "Classes balanced or compensated").value
    at.selectbox(key="resample").select("oversample").run()
    assert OK in line(at, "Classes balanced or compensated").value
    assert "resampling (oversample)" in line(at, "Classes balanced or compensated").proto.help
