"""Drive the real dashboard in headless Chromium (Debian's package) with Playwright.

Used by the end-to-end test and by ``scripts/screenshots.py``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

from tests.core.test_warm import _cmdline
from tlcore.jobs.warm import ENV as WARM_ENV

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """Debian's Chromium, or None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser_reason() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(command: Callable[[int], list[str]], ready: Callable[[str], bool], log_path: Path, what: str,
                 timeout: float = 120, **popen):
    """Run ``command(port)`` on a free port of this machine until the block ends; yields its base URL once
    ``ready(base)`` is true (polled twice a second; an ``OSError`` or ``ValueError`` counts as not yet). Its
    output goes to ``log_path``; ``what`` names it when it does not start."""
    port = _free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT, **popen)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if ready(base):
                    break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{what} did not start; see {log.name}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _healthy(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
        return r.status == 200


@contextlib.contextmanager
def dashboard(cache_dir: Path, timeout: float = 120, jobs: bool = True):
    """Start ``streamlit run app.py`` on a free port; yields its base URL. ``jobs=False`` for a test that starts no
    job: the server starts no warm worker (seconds of CPU the other tests need; a test that does not want the
    default engine prepared either seeds it first, tests/conftest.py seed_lite0_engine)."""
    command = lambda port: [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),  # noqa: E731
                            "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "TLCORE_CACHE_DIR": str(cache_dir)}
    if not jobs:
        env[WARM_ENV] = "0"
    with local_server(command, _healthy, Path(cache_dir) / "streamlit.log", "the dashboard", timeout, cwd=ROOT,
                      env=env) as base:
        yield base


def warm_worker_of(base: str) -> int | None:
    """The pid of the warm worker (tlcore.jobs.warm) the dashboard at ``base`` started, or None."""
    port = base.rsplit(":", 1)[1]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if "tlcore.cli.warm_worker" in _cmdline(pid):
            try:
                parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            if "streamlit" in _cmdline(parent) and f"--server.port {port}" in _cmdline(parent):
                return int(pid)
    return None


@contextlib.contextmanager
def browser_page(width: int = 1300, height: int = 1000, extra_flags: tuple[str, ...] = ()):
    """A page of a fresh headless Chromium; ``extra_flags`` add to :data:`CHROMIUM_FLAGS` (a fake camera, say)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_FLAGS, *extra_flags])
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, reduced_motion="reduce")
            page.set_default_timeout(120_000)
            yield page
        finally:
            browser.close()


# What the app's root says once the server is connected and the script has finished: the attributes Streamlit's
# own browser tests wait on (``wait_for_app_run``), exact where the status widget's absence is not (it shows only
# once a run has lasted a moment).
_IDLE = "[data-testid=stApp][data-test-connection-state=CONNECTED][data-test-script-state=notRunning]"


def wait_idle(page, settle_ms: int = 200) -> None:
    """Wait until Streamlit has finished running the script, then ``settle_ms`` for the browser to draw it."""
    page.wait_for_timeout(250)  # a click has asked for a run that the page may not report as running yet
    page.wait_for_selector(_IDLE, timeout=120_000)
    page.wait_for_timeout(settle_ms)


def _visit(page, url: str, wait_text: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"text={wait_text}")


def _snap(page, shots: Path, name: str, settle_ms: int = 500) -> None:
    wait_idle(page, settle_ms)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def sample_train_evaluate(page, base: str, shots: Path, train_timeout_ms: int = 300_000,
                          leave_during_training: bool = True) -> dict:
    """The newcomer's path: sample data, train (leaving and refreshing meanwhile), evaluate.

    Saves a screenshot per page in ``shots``; returns facts the caller can check.
    ``leave_during_training=False`` stays on the Train page (for timing the run itself).
    """
    shots.mkdir(parents=True, exist_ok=True)
    facts = {}
    _visit(page, base, "Start with the Data page")
    wait_idle(page)
    sid = facts["session"] = page.url.split("s=")[-1]
    _snap(page, shots, "0_home")

    page.goto(f"{base}/Data?s={sid}")
    page.get_by_role("button", name="Load the sample dataset").click()
    page.wait_for_selector("text=Sample loaded")
    page.wait_for_selector(".js-plotly-plot")  # the counts chart comes last
    _snap(page, shots, "1_data", 1500)

    _visit(page, f"{base}/Backbone?s={sid}", "Chosen: efficientnet_lite0")
    _snap(page, shots, "2_backbone")

    page.goto(f"{base}/Train?s={sid}")
    page.get_by_role("button", name="Train", exact=True).click()
    clicked = time.time()
    page.wait_for_selector("text=Training runs in the background")
    if leave_during_training:
        # Leave for another page and come back with a refresh: the run must go on and be found again.
        _visit(page, f"{base}/Data?s={sid}", "Your classes")
        page.goto(f"{base}/Train?s={sid}")
        page.reload()
    page.wait_for_selector("text=Done: validation accuracy", timeout=train_timeout_ms)
    facts["train_seconds"] = time.time() - clicked
    wait_idle(page)
    facts["train_text"] = page.inner_text("[data-testid=stAlertContentSuccess]")
    _snap(page, shots, "3_train")

    _visit(page, f"{base}/Fine-tune?s={sid}", "layers with weights become trainable")
    _snap(page, shots, "4_fine_tune")

    _visit(page, f"{base}/Evaluate?s={sid}", "Per class")
    page.wait_for_selector(".js-plotly-plot")
    wait_idle(page, 500)
    facts["evaluate_text"] = page.inner_text("body")
    _snap(page, shots, "5_evaluate", 0)

    _visit(page, f"{base}/Predict?s={sid}", "Upload a photo")
    _snap(page, shots, "6_predict")

    # Export with the default formats (float32, float16, INT8), checked against Keras in the background.
    _visit(page, f"{base}/Export?s={sid}", "Export and verify")
    page.get_by_role("button", name="Export and verify").click()
    page.wait_for_selector("text=Checked on", timeout=train_timeout_ms)
    page.wait_for_selector(".js-plotly-plot")
    page.wait_for_selector("button:has-text('labels.txt')")  # the last download button: the page is complete
    wait_idle(page, 500)
    facts["export_text"] = page.inner_text("body")
    _snap(page, shots, "7_export", 0)
    return facts


# --- The whole flow, as issue 17 walked it -------------------------------------------------------------------


def _main_alerts(page, kind: str) -> list[str]:
    """The texts of the page's main-area alerts of ``kind`` (Warning, Error, Info, Success); the sidebar's
    checklist is advice about the project, not an alarm raised by what the user just did."""
    return page.locator(f"[data-testid=stMain] [data-testid=stAlertContent{kind}]").all_inner_texts()


def watch_job(page, done_text: str, timeout_s: float = 300, every_s: float = 0.25) -> list[tuple[float, str]]:
    """Read the page's progress text (the phase a job is in) every ``every_s`` until ``done_text`` shows:
    ``[(seconds since the start, text), ...]``, one entry per change of text."""
    seen: list[tuple[float, str]] = []
    start = time.time()
    while time.time() - start < timeout_s:
        if page.locator(f"text={done_text}").count():
            return seen
        # all_inner_texts reads what is there now: reading each bar with inner_text() waited the default 120 s
        # for a bar that the fragment's last redraw had removed (a walk that stalled two minutes after "Done").
        texts = page.locator("[data-testid=stMain] [data-testid=stProgress]").all_inner_texts()
        text = " | ".join(t for t in texts if t.strip())
        if text and (not seen or seen[-1][1] != text):
            seen.append((round(time.time() - start, 2), text))
        page.wait_for_timeout(int(every_s * 1000))
    raise TimeoutError(f"{done_text!r} did not show within {timeout_s:.0f} s; last progress: {seen[-3:]}")


def _slider_value(page, label: str) -> int:
    slider = page.locator("[data-testid=stSlider]").filter(has_text=label).locator("input[type=range]").first
    return int(float(slider.input_value()))


def _slider_to_lowest(page, label: str) -> None:
    thumb = page.locator("[data-testid=stSlider]").filter(has_text=label).locator("input[type=range]").first
    thumb.focus()
    page.keyboard.press("Home")
    wait_idle(page, 0)
    assert _slider_value(page, label) == int(float(thumb.get_attribute("min"))), label


def whole_flow(page, base: str, shots: Path, photos_zip: Path, photo: Path) -> dict:
    """A newcomer's whole path: upload a ZIP of class folders, train (leaving and refreshing meanwhile), fine-tune
    with the suggested layer count, evaluate (validation, then a look at the test split), predict a photo, export
    (the default formats, verified), compare on Runs. Saves a screenshot per page in ``shots``; returns what
    each step showed for the caller to check: ``progress`` (the phases each job was seen in), ``warnings`` (the
    main-area alarms after each step), ``layers`` (the fine-tuned layer count as each place says it)."""
    shots.mkdir(parents=True, exist_ok=True)
    facts: dict = {"progress": {}, "warnings": {}, "layers": {}}
    _visit(page, base, "Start with the Data page")
    wait_idle(page)
    sid = facts["session"] = page.url.split("s=")[-1]
    _snap(page, shots, "0_home", 0)

    page.goto(f"{base}/Data?s={sid}")
    uploader = page.locator("[data-testid=stFileUploader]").filter(has_text="ZIP")
    uploader.locator("input[type=file]").set_input_files(str(photos_zip))
    page.wait_for_selector("text=/Added \\d+ photo/")
    page.wait_for_selector(".js-plotly-plot")
    _snap(page, shots, "1_data", 1500)

    _visit(page, f"{base}/Backbone?s={sid}", "Chosen: efficientnet_lite0")
    _snap(page, shots, "2_backbone")

    page.goto(f"{base}/Train?s={sid}")
    wait_idle(page)
    facts["warnings"]["train settings"] = _main_alerts(page, "Warning")
    page.get_by_role("button", name="Train", exact=True).click()
    page.wait_for_selector("text=Training runs in the background")
    # Leave for another page and come back with a refresh: the run must go on and be found again.
    _visit(page, f"{base}/Data?s={sid}", "Your classes")
    page.goto(f"{base}/Train?s={sid}")
    page.reload()
    facts["progress"]["train"] = watch_job(page, "Done: validation accuracy")
    wait_idle(page)
    facts["warnings"]["train"] = _main_alerts(page, "Warning")
    _snap(page, shots, "3_train", 0)

    _visit(page, f"{base}/Fine-tune?s={sid}", "layers with weights become trainable")
    wait_idle(page)
    facts["layers"]["fine-tune slider"] = _slider_value(page, "Layers to fine-tune")
    caption = page.locator("text=/\\d+ layers with weights become trainable/").first.inner_text()
    facts["layers"]["fine-tune caption"] = int(caption.split()[0])
    facts["warnings"]["fine-tune settings"] = _main_alerts(page, "Warning")
    # One epoch, set from the keyboard as a user may: what the walk checks does not depend on how many.
    _slider_to_lowest(page, "Epochs")
    page.get_by_role("button", name="Fine-tune", exact=True).click()
    facts["progress"]["fine-tune"] = watch_job(page, "Done: validation accuracy")
    wait_idle(page)
    facts["warnings"]["fine-tune"] = _main_alerts(page, "Warning")
    _snap(page, shots, "4_fine_tune", 0)

    _visit(page, f"{base}/Evaluate?s={sid}", "Per class")
    page.wait_for_selector(".js-plotly-plot")
    wait_idle(page, 500)
    facts["warnings"]["evaluate validation"] = _main_alerts(page, "Warning")
    page.get_by_text("test (the final score").click()
    page.wait_for_selector("text=First run scored on this test set")
    wait_idle(page, 500)
    facts["warnings"]["evaluate test"] = _main_alerts(page, "Warning")
    facts["evaluate_text"] = page.inner_text("[data-testid=stMain]")
    _snap(page, shots, "5_evaluate", 0)

    _visit(page, f"{base}/Predict?s={sid}", "Upload a photo")
    page.locator("[data-testid=stFileUploader]").filter(has_text="Upload a photo").locator(
        "input[type=file]").set_input_files(str(photo))
    page.wait_for_selector(".js-plotly-plot")
    wait_idle(page, 500)
    _snap(page, shots, "6_predict", 0)

    # Export with the default formats (float32, float16, INT8), checked against Keras in the background.
    _visit(page, f"{base}/Export?s={sid}", "Export and verify")
    page.get_by_role("button", name="Export and verify").click()
    facts["progress"]["export"] = watch_job(page, "Checked on", timeout_s=400)
    page.wait_for_selector(".js-plotly-plot")
    page.wait_for_selector("button:has-text('labels.txt')")  # the last download button: the page is complete
    wait_idle(page, 500)
    facts["export_text"] = page.inner_text("[data-testid=stMain]")
    _snap(page, shots, "7_export", 0)

    _visit(page, f"{base}/Runs?s={sid}", "layers ×")
    wait_idle(page, 500)
    cell = page.locator("text=/\\d+ layers ×/").first.inner_text()
    facts["layers"]["runs"] = int(cell.split()[0])
    _snap(page, shots, "9_runs", 0)
    return facts


PAGES = ["", "Data", "Backbone", "Train", "Fine-tune", "Evaluate", "Predict", "Export", "Adversarial", "Runs"]


def page_texts_in(page, base: str, sid: str, language: str) -> dict[str, str]:
    """Switch the session to ``language`` (``fr``) from the sidebar and read every page's main area and sidebar:
    ``{page path: its visible text}``."""
    page.goto(f"{base}/Data?s={sid}")
    wait_idle(page)
    menu = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
    menu.click()
    page.get_by_role("option", name={"fr": "Français"}[language]).click()
    wait_idle(page, 500)
    # Loaded again once: the menu's click leaves its screen-reader announcement ("2 options available", the
    # selectbox component's own English) in the page until the app is loaded anew.
    page.goto(f"{base}/Data?s={sid}")
    wait_idle(page)
    texts = {}
    for name in PAGES:
        # From the sidebar's menu, as a reader goes: the app stays loaded (a new address loads it again, which cost
        # the browser about a second of CPU a page) and the session follows.
        page.locator(f"[data-testid=stSidebarNav] a[href='{base}/{name}']").click()
        page.wait_for_url(f"{base}/{name}?s={sid}")
        wait_idle(page)  # text, not charts: the script has finished
        texts[name or "home"] = page.evaluate(_READABLE_TEXT)
    return texts


# The page's text as a reader sees it: not the names of icons (Material Symbols are ligatures, words in the DOM
# that are hidden from screen readers and marked not to translate) nor Streamlit's own keyboard link.
_READABLE_TEXT = """() => {
  const hidden = Array.from(document.querySelectorAll(
      '[aria-hidden=true], [translate=no], [data-testid=stSkipToContent], [data-testid=stToolbar]'));
  const before = hidden.map(e => e.style.display);
  hidden.forEach(e => { e.style.display = 'none'; });
  const text = document.body.innerText;
  hidden.forEach((e, i) => { e.style.display = before[i]; });
  return text;
}"""


# Chromium's fake camera (issue 21): a green test pattern, or a video file with --use-file-for-fake-video-capture.
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


def record_class(page, base: str, name: str, frames: int, shots: Path | None = None) -> dict:
    """On a new session's Data page, make class ``name`` and hold "Hold to record" until the recorder counts
    ``frames`` frames, then release. Returns ``counted`` (frames counted at release), ``counted_s`` and ``added_s``
    (seconds from the press to the count, and to the page's "Added N photo(s)"), ``added`` (N) and ``listed`` (the
    class's line under "Your classes"). With ``shots``, screenshots while recording and after."""
    page.goto(base)
    page.wait_for_selector("text=Start with the Data page")
    wait_idle(page)
    sid = page.url.split("s=")[-1]
    page.goto(f"{base}/Data?s={sid}")
    wait_idle(page)
    page.get_by_label("New class name").fill(name)
    page.get_by_role("button", name="Add class").click()
    wait_idle(page)
    recorder = page.frame_locator("iframe[title*=camera_recorder]")
    recorder.locator("#hold").wait_for(state="visible")
    page.wait_for_function("() => !document.querySelector('iframe[title*=camera_recorder]')"
                           ".contentDocument.querySelector('#hold').disabled")  # the camera is open
    recorder.locator("#hold").hover()
    pressed = time.perf_counter()
    page.mouse.down()
    count, counted = recorder.locator("#count"), 0
    deadline = pressed + 60  # a busy machine slows the browser's timer: the count is waited for, not timed
    while counted < frames and time.perf_counter() < deadline:
        counted = int(count.inner_text().split()[0])
        page.wait_for_timeout(50)
    counted_s = time.perf_counter() - pressed
    if shots is not None:
        page.screenshot(path=str(shots / "1_data_camera_recording.png"))
    page.mouse.up()
    page.wait_for_selector("text=/Added \\d+ photo/")
    added_s = time.perf_counter() - pressed
    wait_idle(page, 500)
    added = int(page.locator("text=/Added \\d+ photo/").inner_text().split()[1])
    if shots is not None:
        page.screenshot(path=str(shots / "1_data_camera.png"), full_page=True)
    listed = page.locator(f"text=/^{name} \\(\\d+\\)$/").inner_text()
    return {"counted": counted, "counted_s": counted_s, "added": added, "added_s": added_s, "listed": listed}
