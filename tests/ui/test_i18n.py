"""The language files (ui/locales/*.json) agree with English and with the code, and a language is one file.

English is en.json plus the texts the dashboard shows as tlcore returns them (the diagnosis remedies);
every other language translates both (ui/frame/i18n.py says why).
"""
from __future__ import annotations

import json
import re
import shutil
import string
from pathlib import Path
from types import SimpleNamespace

import pytest

from tlcore.adversarial.attacks import METHODS
from tlcore.adversarial.corruptions import CORRUPTIONS
from tlcore.analysis.diagnosis import CODES, REMEDIES
from tlcore.data.datasets import SPLITS
from tlcore.data.advice import TIER_NAMES
from tlcore.data.resample import RESAMPLE_MODES
from tlcore.export.formats import FORMATS
from tlcore.jobs.events import PHASES
from tlcore.training.config import LOOPS
from ui.frame import access, i18n
from ui.frame.chrome import WIDGET_TEXTS
from ui.frame.i18n import LANGUAGES, catalog, translate
from ui.views.camera import CAMERA_ERRORS, RECORDER_TEXTS
from ui.views.live import LIVE_TEXTS

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "ui" / "locales"
OTHERS = [code for code in LANGUAGES if code != "en"]
SOURCES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")),
           *sorted(p for p in (ROOT / "ui").rglob("*.py") if p.name != "i18n.py")]

# A key written out where the code asks for a text: t("data.title"), translate("sidebar.language", lang),
# setup("ft.title"), choose_run("ft.base"), _section("checklist.training", ...).
_CALLED = re.compile(r"""\b(?:t|translate|setup|choose_run|_section)\(\s*(["'])([^"'\n]+)\1\s*[,)]""")
# Any other literal shaped like a key of one of the catalog's groups, e.g. a key a helper returns
# (calibration_view._direction); file names such as "job.json" aside.
_SHAPED = re.compile(r"""(?<![\w])(["'])([a-z_]+(?:\.[a-z0-9_]+)+)\1""")
_FILE_NAMES = (".json", ".jsonl", ".txt", ".py", ".js", ".css", ".tflite", ".keras", ".h5", ".zip", ".log", ".csv", ".png", ".jpg")
# A key built at run time: t(f"diag.{code}.evidence", ...).
_BUILT = re.compile(r"""\b(?:t|translate)\(\s*f(["'])(.*?)\1""")

# What each built key's gap can hold: tlcore's own lists where it has one, else the values the code passes.
EXPANSIONS = {
    "diag.{}": CODES,
    "diag.{}.evidence": CODES,
    "alarm.resample.{}": RESAMPLE_MODES,
    "alarm.class_weights.{}": ("auto", "balanced", "none"),  # pages/3_Train.py's choices (TrainConfig.class_weights)
    "fewshot.loop.{}": LOOPS,
    "export.format.{}": FORMATS,
    "phase.{}": PHASES,  # ui.views.follow.phase_progress: every phase of a job's events
    "eval.split.{}": ("test", "val"),
    "widget.{}": WIDGET_TEXTS,  # the Streamlit widget texts ui.frame.chrome replaces
    "eval.col.{}": ("precision", "recall", "f1", "n"),  # pages/5_Evaluate.py's per-class table
    "export.source.{}": ("test", "val"),  # ui.views.export: the held-out split an export was verified on
    "health.split_{}": SPLITS,
    "health.kind_{}": ("exact", "near"),  # duplicate kinds
    "tier.{}": TIER_NAMES,  # the data tiers (tlcore.data.advice)
    "health.bias_{}": ("size", "format", "camera", "jpeg_quality"),  # tlcore.data.health's bias features
    "runs.kind.{}": ("train", "finetune", "harden", "export", "robustness", "corruptions", "ideal",
                     "leaderboard"),  # pages' jobs
    "backbone.lb_where.{}": ("val", "split"),  # the leaderboard's held_out
    "chart.{}": ("loss", "accuracy", "train", "val", "epoch", "fine_tune_start"),  # ui.views.follow.curve_labels
    "calib.chart.{}": ("perfect", "accuracy", "confidence", "range", "count"),
    "adv.source.{}": ("data", "upload"),
    "adv.method.{}": METHODS,
    "adv.corrupt.{}": CORRUPTIONS,  # ui.views.adversarial.corruption_labels: each corruption's name on the chart
    "{}.fix": (),  # ui.views.advice asks for an alarm's fix only when the catalog has one
    "{}.details": (),  # ...and for its details likewise (tests/ui/test_alarms_view.py checks them against tlcore)
    "camera.error_{}": CAMERA_ERRORS,  # what the browser says instead of frames (ui.views.camera)
    "camera.{}": RECORDER_TEXTS,  # the texts the camera recorder draws in its frame
    "live.{}": LIVE_TEXTS,  # the texts the live camera draws in its frame
}


def _load(path: Path) -> dict:
    """A language file, failing on a key written twice (json.loads would keep the last one silently)."""
    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        assert not repeated, f"{path.name} repeats {repeated}"
        return dict(pairs)
    return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_repeats)


def english(folder: Path = LOCALES) -> dict[str, str]:
    """Every English text by key: en.json's, then tlcore's remedies as a translation holds them (one per line)."""
    remedies = {f"diag.{code}.remedies": "\n".join(lines) for code, lines in REMEDIES.items()}
    return {**_load(folder / "en.json"), **remedies}


def differences(lang: str, folder: Path = LOCALES) -> tuple[list[str], list[str]]:
    """(English keys that ``lang``'s file lacks, keys it has that English does not)."""
    reference, other = english(folder), _load(folder / f"{lang}.json")
    return [k for k in reference if k not in other], [k for k in other if k not in reference]


def fields(text: str) -> set[str]:
    """The names of ``text``'s ``{placeholders}`` (``{n}``, ``{p:.1%}``, ``{name!r}`` give n, p, name)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def used_keys() -> set[str]:
    """The keys written out in the dashboard's code (app.py, pages/, ui/)."""
    groups = {key.split(".")[0] for key in catalog("en")}
    keys = set()
    for path in SOURCES:
        source = path.read_text(encoding="utf-8")
        keys |= {m.group(2) for m in _CALLED.finditer(source)}
        keys |= {m.group(2) for m in _SHAPED.finditer(source)
                 if m.group(2).split(".")[0] in groups and not m.group(2).endswith(_FILE_NAMES)}
    return keys


def built_templates() -> dict[str, list[str]]:
    """Each key the code builds at run time, its gaps as ``{}``, with the files that build it."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for m in _BUILT.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(re.sub(r"\{[^{}]*\}", "{}", m.group(2)), []).append(path.name)
    return found


def test_there_is_english_and_at_least_one_other_language():
    assert list(LANGUAGES)[0] == "en" and LANGUAGES["en"] == "English"
    assert sorted(LANGUAGES) == sorted(p.stem for p in LOCALES.glob("*.json"))
    assert OTHERS and LANGUAGES["fr"] == "Français"


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_a_language_file_is_one_flat_object_of_texts(lang):
    texts = _load(LOCALES / f"{lang}.json")
    assert texts and all(isinstance(v, str) and v.strip() for v in texts.values())
    assert texts["language.name"] == LANGUAGES[lang]


def test_english_texts_have_one_home():
    # tlcore's remedies are not repeated in en.json; the dashboard shows tlcore's own in English.
    assert set(REMEDIES) == set(CODES)
    repeated = [key for key in catalog("en") if re.fullmatch(r"diag\.\w+\.remedies", key)]
    assert not repeated, f"en.json repeats tlcore's remedies: {repeated}"


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_has_exactly_the_keys_of_english(lang):
    missing, extra = differences(lang)
    assert not missing, f"ui/locales/{lang}.json lacks {len(missing)} key(s) of English: {missing}"
    assert not extra, f"ui/locales/{lang}.json has {len(extra)} key(s) English does not: {extra}"


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_translates_each_of_tlcores_remedies(lang):
    texts = catalog(lang)
    for code, lines in REMEDIES.items():
        translated = texts[f"diag.{code}.remedies"].split("\n")
        assert len(translated) == len(lines) and all(line.strip() for line in translated), (lang, code, translated)


@pytest.mark.parametrize("lang", OTHERS)
def test_every_text_takes_the_same_placeholders_as_english(lang):
    reference, other = english(), catalog(lang)
    wrong = {key: (sorted(fields(reference[key])), sorted(fields(other[key])))
             for key in reference if key in other and fields(reference[key]) != fields(other[key])}
    assert not wrong, f"ui/locales/{lang}.json: placeholders differ from English (en, {lang}): {wrong}"


def test_placeholders_are_named():
    # translate() formats with keyword values only: "{}" or "{0}" would raise IndexError on the page.
    for lang in LANGUAGES:
        positional = [k for k, text in catalog(lang).items() if any(f == "" or f.isdigit() for f in fields(text))]
        assert not positional, (lang, positional)


def test_every_key_the_code_writes_out_exists():
    used = used_keys()
    # The scan works: a t() key, setup()'s, a bare one, a returned one, _section()'s, choose_run()'s.
    assert {"app.title", "data.title", "no_data", "calib.well", "checklist.training", "ft.base"} <= used
    missing = sorted(key for key in used if key not in catalog("en"))
    assert not missing, f"keys used in the code but not in ui/locales/en.json: {missing}"


def test_every_key_the_code_builds_is_listed_and_exists():
    built = built_templates()
    assert "diag.{}.evidence" in built and "export.format.{}" in built  # the scan works
    unlisted = {template: files for template, files in built.items() if template not in EXPANSIONS}
    assert not unlisted, f"keys built at run time without their expansions in EXPANSIONS: {unlisted}"
    stale = set(EXPANSIONS) - set(built)
    assert not stale, f"EXPANSIONS lists keys the code no longer builds: {stale}"
    missing = sorted(template.format(value) for template, values in EXPANSIONS.items() for value in values
                     if template.format(value) not in catalog("en"))
    assert not missing, f"built keys missing from ui/locales/en.json: {missing}"


def test_translate_falls_back_to_english_then_to_the_key():
    assert translate("sidebar.language") == "Language"
    assert translate("sidebar.language", "fr") == "Langue"
    assert translate("sidebar.language", "xx") == "Language"  # a language without a file
    assert translate("no.such.key", "fr") == "no.such.key"
    assert translate("data.added", "fr", n=3) == "3 photo(s) ajoutée(s)."
    # Without values nothing is formatted, so the placeholders stay as written.
    assert translate("data.added") == "Added {n} photo(s)."


def test_each_file_is_read_once():
    assert catalog("fr") is catalog("fr")
    with pytest.raises(TypeError):
        catalog("fr")["sidebar.language"] = "changed"  # shared by every session: read-only


def _third_language(folder: Path, drop: str = "") -> None:
    """``folder`` holding English, French and German (German with ``drop`` left out)."""
    for path in LOCALES.glob("*.json"):
        shutil.copy(path, folder / path.name)
    german = {**english(), "language.name": "Deutsch", "sidebar.language": "Sprache",
              "data.added": "{n} Foto(s) hinzugefügt."}
    german.pop(drop, None)
    (folder / "de.json").write_text(json.dumps(german, ensure_ascii=False, indent=2), encoding="utf-8")


def test_adding_a_language_is_adding_one_file(tmp_path, monkeypatch):
    _third_language(tmp_path)
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    assert dict(LANGUAGES) == {"en": "English", "de": "Deutsch", "fr": "Français"}
    assert list(LANGUAGES)[0] == "en"
    assert translate("sidebar.language", "de") == "Sprache"
    assert translate("data.added", "de", n=2) == "2 Foto(s) hinzugefügt."
    assert translate("sidebar.language", "fr") == "Langue"
    assert differences("de", tmp_path) == ([], [])


def test_the_gate_speaks_the_browsers_language_when_there_is_a_file_for_it(tmp_path, monkeypatch):
    _third_language(tmp_path)
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    for locale, lang in (("de-AT", "de"), ("fr-FR", "fr"), ("fr", "fr"), ("en-GB", "en"), ("pt-BR", "en"),
                         (None, "en")):
        monkeypatch.setattr(access, "st", SimpleNamespace(context=SimpleNamespace(locale=locale)))
        assert access.gate_language() == lang, locale


def test_a_language_file_lacking_a_key_is_listed_and_falls_back_to_english(tmp_path, monkeypatch):
    _third_language(tmp_path, drop="data.title")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    assert differences("de", tmp_path) == (["data.title"], [])
    assert translate("data.title", "de") == "1 · Data"


def test_a_broken_language_file_is_one_sentence(tmp_path, monkeypatch):
    (tmp_path / "en.json").write_text('{"a": "A",}', encoding="utf-8")
    (tmp_path / "xx.json").write_text('["not", "an", "object"]', encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    with pytest.raises(ValueError, match=r"^The language file .*en\.json cannot be read as JSON \(.*\)\.$"):
        translate("a")
    with pytest.raises(ValueError, match=r"^The language file .*xx\.json must be one JSON object whose values are all "
                                         r"texts\.$"):
        catalog("xx")
