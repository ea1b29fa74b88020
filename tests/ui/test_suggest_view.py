"""The Data page's "Labelling help" panel under AppTest: photos and a ZIP uploaded, suggested least sure first,
a class changed, the sure ones pre-selected by the slider, the selected ones added to their classes."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASS_COLOURS
from tests.ui.conftest import copy_of_trained, open_page
from tlcore.lab.workspace import Workspace
from ui.views.suggest import MAX_PHOTOS

PAGE = "pages/1_Data.py"


def png(colour, seed=0) -> bytes:
    buf = io.BytesIO()
    arr = np.clip(np.array(colour)[None, None, :] + np.random.default_rng(seed).normal(0, 25, (32, 32, 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def suggest_uploader(at):
    return next(u for u in at.file_uploader if u.key.startswith("suggest_files_"))


def test_without_a_run_the_panel_says_to_train_first(sid, workspace):
    at = open_page(PAGE, sid)
    assert not at.exception
    assert any("Labelling help needs a trained model" in i.value for i in at.info)
    assert not [u for u in at.file_uploader if u.key.startswith("suggest_files_")]


@pytest.fixture
def session(trained, tmp_path):
    """A copy of the trained session (this test adds photos to it)."""
    sid, _ = copy_of_trained(trained, tmp_path)
    return sid, Workspace.for_session(sid)


def test_upload_suggest_override_and_accept(session):
    sid, ws = session
    before = ws.counts()
    at = open_page(PAGE, sid)
    suggest_uploader(at).set_value([
        ("r1.png", png(CLASS_COLOURS["red"], 1), "image/png"),
        ("notes.txt", b"not a photo", "text/plain"),
        ("more.zip", zipped({"day/b1.png": png(CLASS_COLOURS["blue"], 2), "../evil.png": png((0, 0, 0)),
                             "day/b2.png": png(CLASS_COLOURS["blue"], 3)}), "application/zip"),
        ("broken.zip", b"PK\x03\x04 not really", "application/zip"),
    ]).run()
    assert not at.exception
    assert sorted(p.name for p in ws.unlabelled()) == ["b1.png", "b2.png", "r1.png"]
    assert any("3 photo(s) waiting for a class" in s.value for s in at.success)
    assert {r for r in at.dataframe[0].value["name"]} == {"notes.txt", "../evil.png", "broken.zip"}
    at.run()  # a rerun adds nothing again
    assert sorted(p.name for p in ws.unlabelled()) == ["b1.png", "b2.png", "r1.png"]
    assert not ws.unlabelled_dir.is_relative_to(ws.data_dir)  # waiting photos are no class's photos

    # Least sure first: the captions' confidences ascend, each photo has a class box and a selection box.
    classes = {s.key.rsplit("_", 1)[-1]: s for s in at.selectbox if s.key.startswith("suggest_class_")}
    assert set(classes) == {"b1.png", "b2.png", "r1.png"}
    shown = [c.value for c in at.caption if "sure)" in c.value]
    confidences = [float(text.rsplit("(", 1)[1].split("%")[0]) for text in shown]
    assert len(confidences) == 3 and confidences == sorted(confidences)

    # The slider pre-selects: at 0 every photo, at 1 only certainties (none of a 3-epoch random-weight model).
    at.slider(key="suggest_threshold").set_value(1.0).run()
    assert not any(c.value for c in at.checkbox if c.key.startswith("suggest_pick_"))
    at.slider(key="suggest_threshold").set_value(0.0).run()
    picks = {c.key.rsplit("_", 1)[-1]: c for c in at.checkbox if c.key.startswith("suggest_pick_")}
    assert all(c.value for c in picks.values())

    # Override one class, leave one photo out, add the rest.
    classes = {s.key.rsplit("_", 1)[-1]: s for s in at.selectbox if s.key.startswith("suggest_class_")}
    classes["r1.png"].set_value("red")
    classes["b1.png"].set_value("blue")
    picks["b2.png"].uncheck()
    at.run()
    assert not at.exception
    next(b for b in at.button if b.key == "suggest_accept").click().run()
    assert not at.exception
    assert any("2 photo(s) added to their classes" in s.value for s in at.success)
    after = ws.counts()
    assert after["red"] == before["red"] + 1 and after["blue"] == before["blue"] + 1
    assert [p.name for p in ws.unlabelled()] == ["b2.png"]
    assert "r1.png" in [p.name for p in ws.images("red")]

    # Discarding empties the waiting folder.
    next(b for b in at.button if b.key == "suggest_discard").click().run()
    assert not at.exception
    assert ws.unlabelled() == []
    assert any("1 waiting photo(s) discarded" in s.value for s in at.success)


def test_a_round_suggests_at_most_max_photos(session, monkeypatch):
    sid, ws = session
    ws.add_unlabelled([(f"p{i}.png", png(CLASS_COLOURS["red"], i)) for i in range(3)])
    monkeypatch.setattr("ui.views.suggest.MAX_PHOTOS", 2)
    at = open_page(PAGE, sid)
    assert not at.exception
    assert len([s for s in at.selectbox if s.key.startswith("suggest_class_")]) == 2
    assert any("1 more wait for the next round" in c.value for c in at.caption)
    assert MAX_PHOTOS >= 50  # a real round holds a few dozen photos at least


def test_the_panel_in_french_has_no_english_word(session):
    from tests.ui.test_french import english_words
    from tests.ui.visible import visible_texts
    from tlcore.backbones.registry import list_backbones
    from ui.frame.i18n import LANGUAGES

    sid, ws = session
    ws.update_settings(language="fr")
    ws.add_unlabelled([("r.png", png(CLASS_COLOURS["red"]))])
    at = open_page(PAGE, sid)
    assert not at.exception
    assert any(h.value == "Aide à l'étiquetage" for h in at.subheader)
    assert any(b.label.startswith("Ajouter les photos sélectionnées") for b in at.button)
    names = [*ws.classes(), "r", *[p.stem for p in ws.data_dir.rglob("*") if p.is_file()], *list_backbones(),
             *LANGUAGES.values()]
    # The uploader's style sheet (ui/frame/chrome.py) is CSS, not words: test_french reads it as English on every
    # page since the commit that added it; that is not this panel's.
    texts = [text for text in visible_texts(at) if not text.lstrip().startswith("<style>")]
    assert {text: english_words(text, ignore=names) for text in texts
            if english_words(text, ignore=names)} == {}


def test_each_photo_is_predicted_once_per_run(session, monkeypatch):
    import ui.views.suggest as view

    sid, ws = session
    predicted = []
    real = view.suggest_labels

    def counting(model, photos, *args, **kwargs):
        predicted.append(sorted(p.name for p in photos))
        return real(model, photos, *args, **kwargs)

    monkeypatch.setattr(view, "suggest_labels", counting)
    ws.add_unlabelled([("a.png", png(CLASS_COLOURS["red"], 1)), ("b.png", png(CLASS_COLOURS["blue"], 2))])
    at = open_page(PAGE, sid)
    at.slider(key="suggest_threshold").set_value(0.5).run()  # a rerun: nothing new to predict
    ws.add_unlabelled([("c.png", png(CLASS_COLOURS["blue"], 3))])
    at.run()
    assert not at.exception
    assert predicted == [["a.png", "b.png"], ["c.png"]]
    assert len([s for s in at.selectbox if s.key.startswith("suggest_class_")]) == 3
