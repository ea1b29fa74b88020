"""End to end in a real browser: a newcomer's whole flow (upload a ZIP, train, fine-tune, evaluate, predict, export,
compare), then every page in French. Screenshots are saved (TL_SCREENSHOTS=docs/screenshots refreshes the docs')."""
from __future__ import annotations

import io
import os
import re
import string
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tlcore.jobs.runner import read_events

from tests.conftest import seed_lite0_engine, write_image
from tests.core.test_events import assert_each_phase_announced
from tests.ui.browser import (browser_page, dashboard, missing_browser_reason, page_texts_in, warm_worker_of,
                              whole_flow)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Two classes of 50 photos each: above the "good" data tier, and with the default 80/10/10 split, ten validation
# and ten test photos, so the data raises no alarm of its own and any alarm seen is the flow's.
CLASSES = {"alpha": (200, 60, 40), "beta": (40, 90, 210)}
PER_CLASS = 50


def _phase_texts() -> list[re.Pattern]:
    """What the progress bar may say, from the catalog: a phase (phase.*) or an epoch of the head (train.epoch),
    its numbers and names as any text, and a phase without a count followed by its seconds (phase.elapsed)."""
    from ui.frame.i18n import catalog

    def pattern(text: str) -> str:
        return "".join(re.escape(literal) + (".+?" if name is not None else "")
                       for literal, name, _, _ in string.Formatter().parse(text))

    english = catalog("en")
    texts = [v for k, v in english.items() if k.startswith("phase.") and k != "phase.elapsed"] + [english["train.epoch"]]
    return [re.compile(pattern(text) + r"(?: \(\d+ s\))?") for text in texts]


def _photos_zip(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, colour in CLASSES.items():
            for i in range(PER_CLASS):
                path = write_image(folder / name / f"{name}_{i}.jpg", colour, size=96, rng=rng, fmt="JPEG")
                zf.write(path, f"photos/{name}/{path.name}")
    target = folder / "photos.zip"
    target.write_bytes(buffer.getvalue())
    return target


@pytest.mark.skipif(missing_browser_reason() is not None, reason=f"browser test skipped: {missing_browser_reason()}")
def test_the_whole_flow_speaks_with_one_voice_in_english_and_in_french(tmp_path, tmp_path_factory, monkeypatch):
    from tests.ui.test_french import english_words

    shots = Path(os.environ.get("TL_SCREENSHOTS", tmp_path / "screenshots"))
    cache = tmp_path / "cache"
    cache.mkdir()
    # The server's cache holds Lite0's engine, as after its first run (converting it is tested in test_engine).
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(cache))
    seed_lite0_engine(tmp_path_factory)
    photos = _photos_zip(tmp_path / "photos")
    with dashboard(cache) as base, browser_page() as page:
        facts = whole_flow(page, base, shots, photos, tmp_path / "photos" / "beta" / "beta_0.jpg")
        french = page_texts_in(page, base, facts["session"], "fr")
        # The server started its warm worker (tlcore.jobs.warm) with its first page: jobs start without an import.
        assert warm_worker_of(base) is not None

    # 1. The guided flow raises no alarm of its own: not after training, fine-tuning or a first look at the test set.
    assert all(not alarms for alarms in facts["warnings"].values()), facts["warnings"]
    folder = facts["session"].split(".")[0]  # a session id names the folder of its random part (tlcore.lab.sessions)
    # 2. No silent wait: the page always names the phase a job is in (with its count, or the seconds it has taken),
    # and the text moves as the job goes; the worker's side is read from its events alone (no clock): each job
    # said its phase before each piece of work. A warm train job can end in about two seconds, before the page is
    # back from the walk's detour, so the text is seen to move on the two long jobs (fine-tune, export) only.
    phases = _phase_texts()
    assert len(facts["progress"]["fine-tune"]) >= 2 and len(facts["progress"]["export"]) >= 2, facts["progress"]
    for job, seen in facts["progress"].items():
        unnamed = [text for _, text in seen for part in text.split(" | ") if not any(p.fullmatch(part) for p in phases)]
        assert not unnamed, (job, unnamed)
    jobs = sorted((cache / "sessions" / folder / "jobs").iterdir())
    assert sorted(j.name.split("-")[0] for j in jobs) == ["export", "finetune", "run"]  # pages/3_Train.py names its jobs run-*
    for job in jobs:
        assert_each_phase_announced(read_events(job))
    # 3. One number of fine-tuned layers: the slider, its caption, the Runs page and the model card.
    layers = facts["layers"]
    bundle = next((cache / "sessions" / folder / "jobs").glob("export-*/transfer-lab-model.zip"))
    with zipfile.ZipFile(bundle) as zf:
        card = zf.read("MODEL_CARD.md").decode("utf-8")
    layers["model card"] = int(card.split("fine-tuned ")[1].split()[0])
    assert len(set(layers.values())) == 1, layers
    assert "model_int8.tflite" in facts["export_text"] and "Download the bundle" in facts["export_text"]
    for name in ("1_data", "3_train", "4_fine_tune", "5_evaluate", "7_export", "9_runs"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    # 4. French is French: no English word the catalog does not translate, on any page.
    from tlcore.backbones.registry import list_backbones

    names = [*CLASSES, *list_backbones(), "English", "photos.zip"]  # names, not words (see test_french)
    found = {name: english_words(text, ignore=names) for name, text in french.items()}
    assert not any(found.values()), {name: words for name, words in found.items() if words}
