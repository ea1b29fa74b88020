"""The Backbone page's leaderboard: a background job on a snapshot of the session's photos, then a scatter."""
from __future__ import annotations

import json
import math
import time

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page, wait_for_job
from tlcore.jobs.runner import request_stop


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _finished_job(workspace, rows, skipped=(), stopped=False):
    """A leaderboard job directory as a worker leaves it once done (job.json and result.json)."""
    job = workspace.jobs_dir / "leaderboard-test"
    job.mkdir(parents=True)
    pid = 999_999_999  # no such process; result.json says the job ended
    (job / "job.json").write_text(json.dumps({"kind": "leaderboard", "argv": [], "pid": pid, "started": time.time(),
                                              "parent": str(workspace.data_dir)}))
    result = {"rows": rows, "skipped": list(skipped), "classes": ["blue", "red"], "n_train": 16, "n_val": 4,
              "held_out": "split", "seed": 0, "epochs": 50, "stopped": stopped, "files_skipped": [], "seconds": 3.0}
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": result}))
    return job


def _row(name, accuracy, size_mb, speed):
    return {"name": name, "accuracy": accuracy, "size_mb": size_mb, "params": 3_500_000, "images_per_s": speed,
            "speed_source": "embedding", "feature_dim": 1280, "input_size": 224, "imagenet_top1": 0.7,
            "cache_hits": 0, "computed": 20, "seconds": 1.0}


def test_compare_needs_data_first(sid):
    at = open_page("pages/2_Backbone.py", sid)
    assert not at.exception
    assert _button(at, "Compare on my photos").disabled
    assert any("at least two classes" in c.value for c in at.caption)


def test_compare_starts_a_leaderboard_job_on_a_snapshot_of_the_photos(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=8)
    at = open_page("pages/2_Backbone.py", sid)
    _button(at, "Compare on my photos").click().run()
    assert not at.exception
    jobs = [j for j in workspace.jobs_dir.iterdir() if j.name.startswith("leaderboard-")]
    assert len(jobs) == 1
    job = jobs[0]
    request_stop(job)  # the job's kind and arguments are what matters here, not a full run
    meta = json.loads((job / "job.json").read_text())
    assert meta["kind"] == "leaderboard" and meta["parent"] == str(workspace.data_dir)
    assert "argv" not in meta  # no command line is kept on disk (issue 14, item 2)
    assert sorted(p.name for p in (job / "data").iterdir()) == ["blue", "red"]
    status = wait_for_job(job)
    assert status["status"] in ("stopped", "done"), status
    at = open_page("pages/2_Backbone.py", sid)  # a stopped job is drawn without an error
    assert not at.exception and not at.error


def test_a_finished_leaderboard_draws_the_scatter_and_table_with_the_choice_highlighted(sid, workspace):
    rows = [_row("mobilenet_v2", 0.95, 14, 40.0), _row("efficientnet_lite0", 0.9, 18.8, None)]
    _finished_job(workspace, rows, skipped=[{"name": "vgg16", "reason": "its ImageNet weights are not downloaded"}])
    at = open_page("pages/2_Backbone.py", sid)
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    chosen = [tr for tr in figure["data"] if tr["name"] == "chosen"]
    assert chosen and all(tr["text"] == ["efficientnet_lite0"] for tr in chosen)
    assert len(chosen) == 1  # lite0's speed is unknown: it is only on the size panel
    assert len(at.dataframe) == 2  # the specs, then the leaderboard
    board = at.dataframe[1].value
    assert list(board["backbone"]) == ["mobilenet_v2", "efficientnet_lite0"]
    assert list(board["chosen"]) == ["", "✓"]
    assert any("Accuracy on 4 held-out photos" in c.value for c in at.caption)
    assert any("Speed unknown for efficientnet_lite0" in c.value for c in at.caption)
    assert any("mobilenet_v2 is the most accurate" in s.value for s in at.success)
    assert any("1 backbone(s) not compared" in e.label for e in at.expander)

    _button(at, "Use mobilenet_v2").click().run()
    assert not at.exception
    assert workspace.settings()["backbone"] == "mobilenet_v2"
    assert at.selectbox(key="backbone_select").value == "mobilenet_v2"
    assert not any(b.label == "Use mobilenet_v2" for b in at.button)


def test_a_stopped_leaderboard_says_so_in_french(sid, workspace):
    workspace.update_settings(language="fr")
    _finished_job(workspace, [_row("efficientnet_lite0", 0.9, 18.8, 15.0)], stopped=True)
    at = open_page("pages/2_Backbone.py", sid)
    assert not at.exception
    assert any(s.value == "Classement sur vos photos" for s in at.subheader)
    assert any(w.value.startswith("Arrêté") for w in at.warning)
    assert len(at.get("plotly_chart")) == 1


def test_a_speed_never_measured_reads_not_measured_yet_and_a_measured_one_one_decimal(sid, tmp_path, monkeypatch):
    """Issue 17, item 4: the specs table wrote "None" for every backbone until one was measured."""
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path))
    (tmp_path / "speeds.json").write_text(json.dumps({"mobilenet_v2": 41.26}))  # as measure_speed leaves it
    at = open_page("pages/2_Backbone.py", sid)
    assert not at.exception
    table = at.dataframe[0]
    speeds = dict(zip(table.value["backbone"], table.value["images/s here"]))
    assert speeds.pop("mobilenet_v2") == 41.26
    assert speeds and all(math.isnan(v) for v in speeds.values())  # the others: missing, not a made-up number
    # What the reader sees of them: the table's text for a missing value, and numbers written with one decimal.
    assert table.proto.placeholder == "not measured yet"
    assert json.loads(table.proto.columns)["images/s here"]["type_config"]["format"] == "%.1f"


def test_the_leaderboard_table_says_not_measured_yet_too(sid, workspace):
    _finished_job(workspace, [_row("mobilenet_v2", 0.95, 14, 40.0), _row("efficientnet_lite0", 0.9, 18.8, None)])
    at = open_page("pages/2_Backbone.py", sid)
    board = at.dataframe[1]
    speeds = list(board.value["images/s here"])
    assert speeds[0] == 40.0 and math.isnan(speeds[1])
    assert board.proto.placeholder == "not measured yet"
