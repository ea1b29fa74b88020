"""French is French: every page, rendered in French on a trained session, shows no English word the catalog does
not translate.

What counts as English is learned from the catalogs themselves, so that the test grows with them: a word of an
English text (en.json and tlcore's remedies) that no French text uses. Words both languages use ("validation",
"photos", "INT8", "Grad-CAM") are not English here, and the user's own words (class names, file names) are taken
out of a page's texts before it is read. ``english_words`` is shared with the real-browser walk
(tests/ui/test_browser.py), which reads the same pages as Chromium shows them.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SMALL_INPUT
from tests.ui.conftest import copy_of_trained, open_page, wait_for_job
from tests.ui.test_adversarial_page import _ideal_job
from tests.ui.test_i18n import LOCALES, ROOT, _load, english
from tests.ui.visible import visible_texts
from tlcore.jobs.runner import job_meta
from tlcore.lab.workspace import Workspace

__all__ = ["english_words", "PAGES"]

PAGES = ["app.py", "pages/1_Data.py", "pages/2_Backbone.py", "pages/3_Train.py", "pages/4_Fine-tune.py",
         "pages/5_Evaluate.py", "pages/6_Predict.py", "pages/7_Export.py", "pages/8_Adversarial.py",
         "pages/9_Runs.py"]

# A token: letters, digits, underscores, inner apostrophes and hyphens. Tokens with a digit or an underscore are
# names of things (efficientnet_lite0, block14_project_conv, INT8), not words of a language.
_TOKEN = re.compile(r"[\w]+(?:['’-][\w]+)*")
_NAME = re.compile(r"[\d_]")
# Words shorter than this are too often shared or abbreviations; the short English words below are read anyway.
_SHORTEST = 3
_SHORT_ENGLISH = frozenset({"of", "to", "is", "it", "in", "on", "at", "by", "or", "an", "be", "as", "no", "we", "if"})
# English as this project writes it, beyond the catalog: its documentation and the texts in tlcore's code (errors,
# reports and column names a page might show as tlcore returns them).
_ENGLISH_SOURCES = ("README.md", "docs/*.md", "tlcore/**/*.py")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _TOKEN.findall(text) if not _NAME.search(w)}


def _python_strings(path: Path) -> list[str]:
    return [node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


@functools.lru_cache(maxsize=None)
def _vocabularies() -> tuple[frozenset[str], frozenset[str]]:
    """(words of English texts that no French text uses, words the French texts use)."""
    french = set()
    for text in _load(LOCALES / "fr.json").values():
        french |= _words(text)
    texts = list(english().values())
    for pattern in _ENGLISH_SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            texts += _python_strings(path) if path.suffix == ".py" else [path.read_text(encoding="utf-8")]
    english_only = set()
    for text in texts:
        english_only |= _words(text)
    return frozenset(english_only - french), frozenset(french)


def english_words(text: str, ignore=()) -> list[str]:
    """The English words of ``text``, a page shown in French, in order of appearance, once each.

    ``ignore``: names of the user's (class names, file names), left out wherever they appear."""
    english_only, french = _vocabularies()
    skip = set().union(*(_words(str(name)) for name in ignore)) if ignore else set()
    found = []
    for word in _TOKEN.findall(text):
        lower = word.lower()
        if _NAME.search(lower) or lower in skip or lower in french or lower in found:
            continue
        parts = lower.replace("’", "'").split("-")
        if lower in english_only or all(part in english_only for part in parts):
            if len(lower) >= _SHORTEST or lower in _SHORT_ENGLISH:
                found.append(lower)
    return found


def test_the_detector_finds_english_and_leaves_french_and_shared_words_alone():
    assert english_words("The model was fine-tuned on the validation photos") != []
    assert "the" in english_words("the accuracy of the model")
    french = "Le modèle a été affiné sur les photos de validation (INT8, Grad-CAM)."
    assert english_words(french) == []
    # The user's words are theirs: a class named "bees" is no English on a French page.
    assert english_words("classe vraie : bees", ignore=["bees"]) == []


def _button(at, label):
    return next(b for b in at.button if b.label == label)


@pytest.fixture(scope="module")
def story(trained, tmp_path_factory) -> str:
    """A copy of the trained session after what a newcomer does next, in English (the labels the pages are
    clicked by): fine-tune the run, export it and measure its robustness (real worker processes, each the page's
    own job), and a class's ideal image. Then French is chosen."""
    sid, _ = copy_of_trained(trained, tmp_path_factory.mktemp("french"))
    ws = Workspace.for_session(sid)
    at = open_page("pages/4_Fine-tune.py", sid)
    at.slider[0].set_value(3).run()
    next(s for s in at.slider if s.label == "Epochs").set_value(1).run()  # what the pages say needs no more
    _button(at, "Fine-tune").click().run()
    assert not at.exception, at.exception
    tuned = max((j for j in ws.jobs_dir.iterdir() if j.name.startswith("finetune")), key=lambda j: j.stat().st_mtime)
    assert wait_for_job(tuned)["status"] == "done"
    at = open_page("pages/7_Export.py", sid)
    at.multiselect[0].set_value(["tflite-int8"]).run()  # one conversion; INT8 adds its calibration and warning
    _button(at, "Export and verify").click().run()
    assert not at.exception, at.exception
    export = next(j for j in ws.jobs_dir.iterdir() if j.name.startswith("export-"))
    assert wait_for_job(export)["status"] == "done"
    at = open_page("pages/8_Adversarial.py", sid, timeout=120)
    _button(at, "Measure robustness").click().run()
    assert not at.exception, at.exception
    robustness = next(j for j in ws.jobs_dir.iterdir() if j.name.startswith("robustness-"))
    assert wait_for_job(robustness)["status"] == "done"
    # The ideal image as its worker leaves it (its job is tested in test_adversarial_page): what the page says of
    # it is the same, and the suite spares a TensorFlow process.
    image = np.full((SMALL_INPUT, SMALL_INPUT, 3), 120, np.uint8)
    _ideal_job(ws.jobs_dir, Path(job_meta(robustness)["parent"]), image, {10: image, 20: image})
    ws.update_settings(language="fr")
    return sid


def _user_words(sid: str) -> list[str]:
    """Names, not words of a language: the user's (class folders, photo files), the backbones', and the
    languages' in the language menu (each written in its own language)."""
    from tlcore.backbones.registry import list_backbones
    from ui.frame.i18n import LANGUAGES

    ws = Workspace.for_session(sid)
    files = [p.stem for p in ws.data_dir.rglob("*") if p.is_file()]
    return [p.name for p in ws.data_dir.iterdir()] + files + list(list_backbones()) + list(LANGUAGES.values())


def _english_on(at, sid) -> str:
    """The English words of the page ``at`` shows, each with the text it was found in; empty when none."""
    assert not at.exception, at.exception
    found = {t: english_words(t, ignore=_user_words(sid)) for t in visible_texts(at)}
    return "\n".join(f"{', '.join(words)}  <-  {text[:200]!r}" for text, words in found.items() if words)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_is_free_of_english_in_french(story, page):
    at = open_page(page, story, timeout=120)
    assert _english_on(at, story) == ""


def test_the_test_split_and_an_attack_are_free_of_english_in_french(story, monkeypatch):
    from ui.frame import state

    # AppTest formats a radio's options between runs, outside the page, where no session says its language.
    monkeypatch.setattr(state, "language", lambda: "fr")
    at = open_page("pages/5_Evaluate.py", story, timeout=120)
    next(r for r in at.radio if r.value == "val").set_value("test").run()
    assert "rappel" in at.dataframe[0].value.columns  # the per-class table is there, in French
    assert _english_on(at, story) == ""
    at = open_page("pages/8_Adversarial.py", story, timeout=120)
    assert at.get("image"), "the ideal image is shown"  # before any attack, the only image on the page
    at.radio[1].set_value("fgsm").run()
    at.button[0].click().run()
    assert {"adv_before", "adv_after"} <= {c.key for c in at.get("plotly_chart")}  # the attack's bars are shown
    assert _english_on(at, story) == ""
