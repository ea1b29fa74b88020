"""Screenshots of TensorBoard on a run's logs (issue 19, item 4), in headless Chromium, on the shared ants/bees photos.

Trains with the defaults (a head on the frozen EfficientNet-Lite0 with its offline ImageNet weights), fine-tunes
that run for two epochs into a second run (whose log continues the first's), starts ``tensorboard --logdir`` on
both runs on a free port of 127.0.0.1 and saves, in ``docs/screenshots`` (or the folder given):

- ``10_tensorboard_scalars.png``: the fine-tuned run's curves, the head's epochs then fine-tuning's on one axis;
- ``10_tensorboard_hparams.png``: the two runs' settings and scores in the HParams table;
- ``10_tensorboard_projector.png``: the fine-tuned run's photos in the embedding projector, by label.

Usage: ``.venv/bin/python scripts/screenshots_tensorboard.py [FOLDER] [--runs DIR]`` (``--runs``: a folder where
this script trained before, to take the screenshots again without training). Skips, saying why, without the
shared photos or Chromium. Takes a few minutes (mostly the fine-tuning).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ui.browser import browser_page, local_server, missing_browser_reason  # noqa: E402
from tlcore.training.config import TrainConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
HEAD, TUNED = "head-only", "fine-tuned"


def _tlcore(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tlcore", *args], cwd=ROOT, check=True)


def _train(runs: Path) -> None:
    if not (runs / HEAD / "config.json").is_file():
        _tlcore("train", str(DATA), "--out", str(runs / HEAD))
    if not (runs / TUNED / "config.json").is_file():
        _tlcore("finetune", str(runs / HEAD), "--layers", "7", "--epochs", "2", "--out", str(runs / TUNED))


def _projector_listed(base: str) -> bool:
    # The projector's tab appears once TensorBoard has found a projector config (in a thread of its own).
    with urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=2) as r:
        return bool(json.load(r).get("projector", {}).get("enabled"))


def tensorboard(logdir: Path, log_path: Path):
    """``tensorboard --logdir logdir`` on a free port of 127.0.0.1, as a user starts it; yields its URL once
    its projector is listed."""
    script = Path(sys.executable).with_name("tensorboard")
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "tensorboard.main"]
    command = lambda port: [*argv, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)]  # noqa: E731
    return local_server(command, _projector_listed, log_path, "TensorBoard")


def _check(page, label: str, on: bool) -> None:
    """Set the checkbox named ``label`` (exactly) in TensorBoard's side panel, if it has one (at once: the page
    has drawn its panel already)."""
    boxes = page.get_by_role("checkbox", name=label, exact=True)
    if boxes.count() and boxes.first.is_checked() != on:
        boxes.first.click()


def _open(page, url: str, shown: str) -> None:
    """Open ``url`` and wait until it shows ``shown`` (a text or /regex/) and its charts have drawn."""
    page.goto(url)
    page.wait_for_selector(f"text={shown}", timeout=120_000)
    page.wait_for_timeout(3000)


def _save(page, path: Path) -> None:
    page.wait_for_timeout(3000)
    page.screenshot(path=str(path))
    print(f"saved {path}")


def _scalars(page, base: str, path: Path) -> None:
    """The fine-tuned run's curves, unsmoothed and wide, the learning rate on a log scale (it drops a hundredfold
    where fine-tuning starts, at epoch 21)."""
    page.set_viewport_size({"width": 1800, "height": 1950})
    _open(page, f"{base}/#scalars&_smoothingWeight=0&regexInput={TUNED}/", "epoch_loss")
    _check(page, "Ignore outliers in chart scaling", False)
    page.get_by_text("epoch_loss", exact=True).first.click()  # its group starts closed
    page.wait_for_timeout(3000)
    for button in page.locator("paper-icon-button[icon=fullscreen]").all():
        button.click()
    page.locator("paper-icon-button[title='Toggle y-axis log scale']").nth(1).click()  # the rate's chart
    # Clicking scrolled the charts; back to the top of the page.
    page.get_by_text("epoch_accuracy", exact=True).first.evaluate("e => e.scrollIntoView({block: 'end'})")
    _save(page, path)
    page.set_viewport_size({"width": 1800, "height": 900})


def _hparams(page, base: str, path: Path) -> None:
    """The runs' table: the settings a person compares first, and the validation scores."""
    _open(page, f"{base}/#hparams", "Trial ID")
    shown = ("backbone", "lr", "fine_tune_layers", "fine_tune_lr", "validation.epoch_accuracy",
             "validation.epoch_loss", "final/val_accuracy")
    # Every setting is an HParam (tlcore.training.tensorboard_log), and each split's curves a metric.
    names = [f.name for f in fields(TrainConfig)] + ["classes", "fine_tuned_layers"]
    names += [f"{split}.epoch_{m}" for split in ("train", "validation") for m in ("accuracy", "loss", "learning_rate")]
    for name in [*names, "final/val_accuracy"]:  # validation.epoch_learning_rate is none of them: no box
        _check(page, name, name in shown)
    _save(page, path)


def _projector(page, base: str, path: Path) -> None:
    """The fine-tuned run's photos as thumbnails, the bees picked out by their label."""
    page.goto(f"{base}/#projector")
    # The projector is drawn in a frame inside TensorBoard's frame for plugins; it says how many points it loaded.
    frame = page.frame_locator("iframe").first.frame_locator("iframe").first
    frame.locator("text=/Points: \\d+/").first.wait_for(timeout=120_000)
    frame.locator("paper-dropdown-menu").first.click()  # the run
    frame.locator("paper-item", has_text=f"{TUNED}/tensorboard").first.click()
    page.wait_for_timeout(3000)
    frame.locator("text=/Points: \\d+/").first.wait_for(timeout=120_000)
    # The photos labelled "bees" (by the metadata's label column) stand out; the ants are dimmed.
    search = frame.get_by_label("Search").filter(visible=True).first
    search.fill("bees")
    search.press("Enter")
    _save(page, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--runs", help="the runs' folder (kept; trained there unless already)")
    args = parser.parse_args()
    shots = Path(args.folder)
    reason = missing_browser_reason() or (None if (DATA / "train").is_dir() else f"no shared photos at {DATA}")
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return
    shots.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        runs = Path(args.runs) if args.runs else Path(stack.enter_context(tempfile.TemporaryDirectory())) / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        _train(runs)
        base = stack.enter_context(tensorboard(runs, Path(tempfile.gettempdir()) / "screenshots_tensorboard.log"))
        page = stack.enter_context(browser_page(1800, 900))
        _scalars(page, base, shots / "10_tensorboard_scalars.png")
        _hparams(page, base, shots / "10_tensorboard_hparams.png")
        _projector(page, base, shots / "10_tensorboard_projector.png")


if __name__ == "__main__":
    main()
