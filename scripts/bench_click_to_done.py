"""Click Train to "Done" on a freshly started dashboard, with about 400 real photos (issue 20, item 5).

Starts the dashboard on an empty cache (no backbone engine, no embeddings), opens its first page (which starts the
warm worker and the default backbone's engine preparation, as for the first user of a new server), waits until
both are ready and says how long that took, uploads the shared ants/bees photos as one ZIP of class folders, and
times the click on Train to the "Done" message in headless Chromium, with the job's own phases from its events.
Writes its section of docs/BENCHMARKS.md. Usage: ``python scripts/bench_click_to_done.py`` (part of ``make bench``).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchdoc import cpu_description, replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
TARGET_S = 10.0


def photos_zip(out: Path) -> int:
    """The shared photos (train and val together) as class folders in one ZIP; returns how many."""
    n = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(DATA.glob("*/*/*")):
            if path.is_file():
                zf.write(path, f"{path.parent.name}/{path.parent.parent.name}_{path.name}")
                n += 1
    return n


def _wait_for(check, what: str, timeout: float = 300, every: float = 0.2) -> float:
    start = time.time()
    while not check():
        if time.time() - start > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(every)
    return time.time() - start


def _phases(job: Path, clicked: float) -> str:
    """The job's phases and when each began, in seconds after the click (from its events file)."""
    marks, last = [], None
    for line in (job / "events.jsonl").read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        kind = event.get("type")
        name = {"phase": event.get("phase"), "extract": "embedding", "epoch": "training"}.get(kind, kind)
        if name != last and "time" in event and kind in ("start", "phase", "extract", "epoch", "done"):
            marks.append(f"{name} {event['time'] - clicked:.1f}")
        last = name
    return ", ".join(marks)


def measure() -> dict:
    from tests.ui.browser import browser_page, dashboard, wait_idle, warm_worker_of

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        archive = Path(tmp) / "photos.zip"
        n = photos_zip(archive)
        with dashboard(cache) as base, browser_page() as page:
            opened = time.time()
            page.goto(base)
            page.wait_for_selector("text=Start with the Data page")
            sid = page.url.split("s=")[-1]
            engines = cache / "engines"
            _wait_for(lambda: warm_worker_of(base) is not None and any(engines.glob("*.tflite")),
                      "the warm worker and the engine preparation")
            ready_s = time.time() - opened
            page.goto(f"{base}/Data?s={sid}")
            page.locator("[data-testid=stFileUploader]").filter(has_text="ZIP").locator(
                "input[type=file]").set_input_files(str(archive))
            page.wait_for_selector("text=/Added \\d+ photo/", timeout=300_000)
            page.goto(f"{base}/Train?s={sid}")
            wait_idle(page)
            page.get_by_role("button", name="Train", exact=True).click()
            clicked = time.time()
            page.wait_for_selector("text=Done: validation accuracy", timeout=300_000)
            seconds = time.time() - clicked
            done_text = page.inner_text("[data-testid=stAlertContentSuccess]")
            job = next((cache / "sessions").glob("*/jobs/run-*"))
            return {"photos": n, "ready_s": ready_s, "click_to_done_s": seconds, "done_text": done_text,
                    "phases": _phases(job, clicked)}


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"the shared photos are not at {DATA}; see ../shared/datasets/README")
    r = measure()
    verdict = "within" if r["click_to_done_s"] <= TARGET_S else "over"
    body = f"""## Dashboard: click Train to "Done" after a server start, {r['photos']} photos

{r['click_to_done_s']:.1f} s from the click on Train to the "Done" message ({verdict} the {TARGET_S:.0f} s target),
{r['photos']} ants/bees photos (`../shared/datasets/hymenoptera`, train and val uploaded together as one ZIP of
class folders), default settings (EfficientNet-Lite0, 20 epochs of the head), cold embedding cache; measured in
headless Chromium by `scripts/bench_click_to_done.py`. The dashboard started on an empty cache: its first page
started the warm worker and the default backbone's engine preparation, both ready {r['ready_s']:.1f} s after that
first page was requested (a user arriving earlier waits for the preparation instead of converting again).
The job's phases, in seconds after the click: {r['phases']}. Result: {r['done_text']}

- CPU: {cpu_description()}
"""
    replace_section("click_to_done", body)
    print(body)


if __name__ == "__main__":
    main()
