"""One source for data advice: the Data page, its health report, the alarms and the remedies say the same tiers."""
from __future__ import annotations

import json

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page, shown
from tests.ui.test_pages import texts
from tlcore.analysis.diagnosis import REMEDIES
from tlcore.data.advice import TIERS
from tlcore.data.health import check_dataset
from ui.frame.i18n import catalog

# Advice to turn augmentation on, in either language: never given by the data advice (photos come first).
AUGMENT_ADVICE = ("turn augmentation on", "turn on augmentation", "activez l'augmentation")


def _tier_lines(at) -> list[int]:
    """The y of each dashed tier line of the Data page's counts chart."""
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return sorted(int(shape["y0"]) for shape in spec["layout"]["shapes"])


def test_the_sample_is_described_by_the_same_tiers_on_the_page_and_in_the_report(sid, workspace):
    at = open_page("pages/1_Data.py", sid)
    intro = f"{TIERS['start']} photos per class are enough to start, {TIERS['good']} are good and {TIERS['great']} great"
    assert intro in texts(at)
    next(b for b in at.button if "sample" in b.label).click().run()
    assert not at.exception

    report = check_dataset(workspace.data_dir, split=(0.8, 0.1, 0.1), seed=0)
    rec = report["recommended"]
    assert rec["tiers"] == TIERS and (rec["tier"], rec["photos"]) == ("start", 40)
    assert "too_few_images" not in {w["code"] for w in report["warnings"]}  # the sample is not "too small"
    page = texts(at)
    assert f"40 per class (enough to start)" in page
    assert f"The smallest class, {rec['class']}, has {rec['photos']} photos: enough to start. Next: good, " \
           f"from {TIERS['good']} photos per class." in page
    assert f"{TIERS['start']} are enough to start, {TIERS['good']} are good and {TIERS['great']} great" in page
    assert "fewer than the" not in page
    assert _tier_lines(at) == [TIERS["start"], TIERS["good"]]  # up to the next tier above the tallest class
    assert not any(advice in page.lower() for advice in AUGMENT_ADVICE)


def test_too_few_photos_are_warned_with_the_first_tier_in_french_too(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=8, size=40)
    workspace.update_settings(language="fr")
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    page = texts(at)
    assert f"2 classe(s) ont moins de photos que les {TIERS['start']} par classe qui suffisent pour commencer " \
           "(blue 8, red 8)" in page
    assert _tier_lines(at) == [TIERS["start"]]
    assert not any(advice in page.lower() for advice in AUGMENT_ADVICE)


def test_with_augmentation_on_the_train_page_asks_for_photos_not_augmentation(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=6, size=40)
    at = open_page("pages/3_Train.py", sid)
    next(c for c in at.checkbox if c.label.startswith("Augment")).check().run()
    assert not at.exception
    warnings = "\n".join(shown(w.value) for w in at.warning)
    assert f"fewer photos than the {TIERS['start']} per class that are enough to start" in warnings
    assert f"Fix: Add photos on the Data page: {TIERS['start']} per class are enough to start, {TIERS['good']} " \
           f"are good and {TIERS['great']} great." in warnings
    assert "Details: Class “blue”: 6 photo(s) in all." in warnings  # the alarm's numbers, in the page's language
    assert not any(advice in warnings.lower() for advice in AUGMENT_ADVICE)


def test_the_remedies_quote_the_tiers_in_every_language():
    # tlcore's English remedies are built from the tiers; a translation holds its numbers as text.
    assert f"{TIERS['start']} photos per class are enough to start" in REMEDIES["overfitting"][0]
    french = catalog("fr")
    overfitting = french["diag.overfitting.remedies"].split("\n")[0]
    assert all(str(n) in overfitting for n in TIERS.values()), overfitting
    assert str(TIERS["start"]) in french["diag.no_validation.remedies"].split("\n")[1]
    # Augmentation is advised on its own line, given only to a run that had it off (tlcore.analysis.diagnosis.Done).
    assert [line for line in REMEDIES["overfitting"] if "augmentation" in line] == [
        "Turn on augmentation (flips, brightness, contrast)."]
