"""End to end in a real browser: sample data, train, evaluate (screenshots saved)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import seed_lite0_engine
from tests.ui.browser import browser_page, dashboard, missing_browser_reason, sample_train_evaluate

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.skipif(missing_browser_reason() is not None, reason=f"browser test skipped: {missing_browser_reason()}")
def test_newcomer_trains_on_the_sample_reads_the_confusion_matrix_and_exports(tmp_path, tmp_path_factory,
                                                                           monkeypatch):
    shots = Path(os.environ.get("TL_SCREENSHOTS", tmp_path / "screenshots"))
    cache = tmp_path / "cache"
    cache.mkdir()
    # The server's cache holds Lite0's engine, as after its first run (converting it is tested in test_engine).
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(cache))
    seed_lite0_engine(tmp_path_factory)
    with dashboard(cache) as base, browser_page() as page:
        facts = sample_train_evaluate(page, base, shots)
    assert "Done: validation accuracy" in facts["train_text"]
    assert "Accuracy" in facts["evaluate_text"] and "Per class" in facts["evaluate_text"]
    assert "model_int8.tflite" in facts["export_text"] and "Download the bundle" in facts["export_text"]
    for name in ("1_data", "3_train", "5_evaluate", "7_export"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    # The run survived leaving the page and a refresh: exactly one run, finished, in this session's workspace.
    folder = facts["session"].split(".")[0]  # a session id names the folder of its random part (tlcore.lab.sessions)
    runs = [j for j in (cache / "sessions" / folder / "jobs").iterdir() if not j.name.startswith("export-")]
    assert len(runs) == 1 and (runs[0] / "run" / "model.weights.h5").is_file()
