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
def dashboard(cache_dir: Path, timeout: float = 120):
    """Start ``streamlit run app.py`` on a free port; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "TLCORE_CACHE_DIR": str(cache_dir)}
    log = open(Path(cache_dir) / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the dashboard did not start; see {log.name}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def browser_page(width: int = 1300, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(120_000)
            yield page
        finally:
            browser.close()


def wait_idle(page, settle_ms: int = 800) -> None:
    """Wait until Streamlit has finished running the script (its status widget is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=120_000)
    page.wait_for_timeout(settle_ms)


def _visit(page, url: str, wait_text: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"text={wait_text}")


def _snap(page, shots: Path, name: str, settle_ms: int = 800) -> None:
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
    wait_idle(page, 1500)
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
    wait_idle(page, 1500)
    facts["export_text"] = page.inner_text("body")
    _snap(page, shots, "7_export", 0)
    return facts
