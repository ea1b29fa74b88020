"""Screenshots of the data insights (issue 18) as a user sees them, in headless Chromium, on the shared ants/bees photos.

A new session uploads the training photos as a ZIP, trains with the defaults, then runs each panel from its page:
Check labels and the embedding map (Data), labelling help on a few validation photos (Data), the learning curve
(Train), everyday corruptions (Adversarial) and the map of the validation split (Evaluate). Each panel is saved in
``docs/screenshots`` (or the folder given) scrolled to its heading.

Usage: ``.venv/bin/python scripts/screenshots_insights.py [FOLDER]``. Skips, saying why, without the shared photos
or Chromium. Takes a few minutes (a training run and three jobs).
"""
from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ui.browser import browser_page, dashboard, missing_browser_reason, wait_idle  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
JOB_MS = 900_000  # a job's deadline: only a hang reaches it


def _training_zip(folder: Path) -> Path:
    target = folder / "ants_and_bees.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for photo in sorted((DATA / "train").glob("*/*")):
            zf.write(photo, f"photos/{photo.parent.name}/{photo.name}")
    return target


def _panel(page, heading: str, path: Path) -> None:
    """Scroll the page so that ``heading`` is at the top, and save what the window shows."""
    wait_idle(page, 1500)
    try:
        page.get_by_role("heading", name=heading).first.evaluate("h => h.scrollIntoView({block: 'start'})")
    except Exception as exc:  # noqa: BLE001 - the whole page instead, to see why, and on to the next panel
        failed = path.with_name(f"{path.stem}_failed.png")
        page.screenshot(path=str(failed), full_page=True)
        print(f"no heading {heading!r} ({type(exc).__name__}); the page is in {failed}", file=sys.stderr)
        return
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    print(f"saved {path}")


def _run_job(page, url: str, button: str, done: str) -> None:
    """Open ``url``, click ``button`` (which starts a job) and wait until the page shows ``done`` (a regex)."""
    page.goto(url)
    wait_idle(page)
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_selector(f"text=/{done}/", timeout=JOB_MS)


def main() -> None:
    shots = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    reason = missing_browser_reason() or (None if (DATA / "train").is_dir() else f"no shared photos at {DATA}")
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, dashboard(Path(tmp)) as base, browser_page() as page:
        photos = _training_zip(Path(tmp))
        page.goto(base)
        page.wait_for_url("**?s=**")
        sid = page.url.split("s=")[-1]

        page.goto(f"{base}/Data?s={sid}")
        page.locator("[data-testid=stFileUploader]").filter(has_text="ZIP").locator(
            "input[type=file]").set_input_files(str(photos))
        page.wait_for_selector("text=/Added \\d+ photo/", timeout=JOB_MS)

        _run_job(page, f"{base}/Train?s={sid}", "Train", "Done: validation accuracy")
        _run_job(page, f"{base}/Data?s={sid}", "Check labels", "look filed in the wrong class|No suspicious labels")
        _panel(page, "Check labels", shots / "1_data_check_labels.png")
        _panel(page, "Embedding map", shots / "1_data_embedding_map.png")

        unlabelled = sorted((DATA / "val" / "ants").glob("*"))[:6] + sorted((DATA / "val" / "bees").glob("*"))[:6]
        page.locator("[data-testid=stFileUploader]").filter(has_text="Unlabelled photos").locator(
            "input[type=file]").set_input_files([str(p) for p in unlabelled])
        page.wait_for_selector("text=/least sure first/", timeout=JOB_MS)
        _panel(page, "Labelling help", shots / "1_data_labelling_help.png")

        _run_job(page, f"{base}/Train?s={sid}", "Measure the learning curve", "With twice the photos")
        _panel(page, "Will more photos help?", shots / "3_train_learning_curve.png")

        page.goto(f"{base}/Evaluate?s={sid}")
        page.wait_for_selector("text=Per class", timeout=JOB_MS)
        _panel(page, "Embedding map", shots / "5_evaluate_embedding_map.png")

        _run_job(page, f"{base}/Adversarial?s={sid}", "Measure under everyday corruptions",
                 "on average under the corruptions")
        _panel(page, "Everyday corruptions", shots / "8_adversarial_corruptions.png")


if __name__ == "__main__":
    main()
