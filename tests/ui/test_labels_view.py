"""The Data page's "Check labels" panel and the embedding map (Data and Evaluate pages)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page, wait_for_job
from tests.ui.test_pages import texts
from ui.charts.figures import embedding_map_figure

LABELS = {"class": "class", "file": "file", "suspect": "suspicious label", "mistake": "mistake"}


def _finished_check(workspace, issues, points=()):
    """A label check job as its worker leaves it once done (job.json and result.json), on a snapshot of the
    workspace's photos as the page takes one."""
    job = workspace.jobs_dir / "labels-test"
    data = workspace.snapshot(job / "data")
    pid = 999_999_999  # no such process; result.json says the job ended
    (job / "job.json").write_text(json.dumps({"kind": "labels", "pid": pid, "started": time.time(),
                                              "parent": str(workspace.data_dir)}))
    result = {"counts": {}, "warnings": [],
              "label_issues": [{"path": str(data / given / name), "given": given, "suggested": suggested,
                                "confidence": 0.9} for given, name, suggested in issues],
              "embedding_map": [{"path": str(data / p[0] / p[1]), "label": p[0], "x": float(i), "y": float(i % 3)}
                                for i, p in enumerate(points)]}
    (job / "result.json").write_text(json.dumps({"exit_code": 0, "pid": pid, "result": result}))
    return job


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_suspects_are_listed_and_move_relabels_the_photo(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=6, size=16)
    _finished_check(workspace, [("red", "red_0.png", "blue"), ("blue", "blue_1.png", "red")],
                    points=[("red", "red_0.png"), ("blue", "blue_1.png"), ("red", "red_2.png")])
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    page = texts(at)
    assert "2 photo(s) look filed in the wrong class" in page
    assert "Filed as red, looks like blue (90%)" in page.replace("*", "")
    assert len(at.get("plotly_chart")) >= 2  # the health counts and the embedding map
    _button(at, "Move to blue").click()
    at.run()
    assert not at.exception
    assert "red_0.png" in {p.name for p in workspace.images("blue")}
    assert "red_0.png" not in {p.name for p in workspace.images("red")}
    assert "1 photo(s) look filed in the wrong class" in texts(at)  # the moved one left the list


def test_remove_deletes_the_suspect(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=6, size=16)
    _finished_check(workspace, [("red", "red_0.png", "blue")])
    at = open_page("pages/1_Data.py", sid)
    next(b for b in at.button if b.key == "lbl_rm_red_red_0.png").click()
    at.run()
    assert not at.exception
    assert "red_0.png" not in {p.name for p in workspace.images("red")}
    assert "No suspicious labels" in texts(at)


def test_a_hostile_issue_path_touches_nothing_outside(sid, workspace, tmp_path):
    # A result naming a photo outside the workspace (a tampered job folder) is not listed: only photos present in
    # their class are, by file name.
    make_image_folder(workspace.data_dir, n_per_class=6, size=16)
    job = _finished_check(workspace, [])
    record = json.loads((job / "result.json").read_text())
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    record["result"]["label_issues"] = [{"path": str(outside), "given": "../..", "suggested": "red", "confidence": 1}]
    (job / "result.json").write_text(json.dumps(record))
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception and outside.exists()
    assert "No suspicious labels" in texts(at)


def test_one_class_asks_for_a_second(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=6, classes=("red",), size=16)
    at = open_page("pages/1_Data.py", sid)
    assert "Add photos to at least two classes to check their labels." in texts(at)
    assert not any(b.label == "Check labels" for b in at.button)


@pytest.mark.slow
def test_check_labels_runs_a_job_and_lists_what_it_found(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=6, size=16)
    at = open_page("pages/1_Data.py", sid)
    _button(at, "Check labels").click()
    at.run()
    job = next(workspace.jobs_dir.glob("labels-*"))
    status = wait_for_job(job)
    assert status["status"] == "done", status
    assert {"label_issues", "embedding_map"} <= set(status["result"])
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert "Embedding map" in texts(at)


def test_map_figure_colours_classes_and_rings_the_marked():
    points = [{"path": f"/d/{c}/{c}_{i}.png", "label": c, "x": i, "y": 0.0} for c in ("ant", "bee") for i in range(3)]
    fig = embedding_map_figure(points, LABELS, suspects=["/d/ant/ant_1.png"], mistakes=["/d/bee/bee_0.png"])
    names = [trace.name for trace in fig.data]
    assert names == ["ant", "bee", "suspicious label", "mistake"]
    assert sum(len(trace.x) for trace in fig.data[:2]) == 6  # one dot per photo
    assert list(fig.data[0].customdata[1]) == ["ant", "ant_1.png"]  # class and file name on hover
    assert "file: %{customdata[1]}" in fig.data[0].hovertemplate


def _map_view(points):
    from pathlib import Path

    from ui.views.embedding_map import show_embedding_map

    show_embedding_map(points, key="map_test", root=Path("/d"), mistakes=[points[0]["path"]])


def test_a_click_on_the_map_names_the_photo_behind_the_dot_and_nothing_else():
    from ui.charts.figures import embedding_map_point

    points = [{"path": f"/d/{c}/{c}_{i}.png", "label": c, "x": i, "y": 0.0} for c in ("bee", "ant") for i in range(3)]
    fig = embedding_map_figure(points, LABELS, suspects=["/d/ant/ant_1.png"])
    for curve, trace in enumerate(fig.data[:2]):  # each class's trace, dot by dot, is the photo it draws
        for index, (x, data) in enumerate(zip(trace.x, trace.customdata)):
            chosen = embedding_map_point(points, curve, index)
            assert (chosen["label"], chosen["x"], Path(chosen["path"]).name) == (trace.name, x, data[1])
    # The rings' trace, a dot past the end, or a damaged event: no photo.
    assert embedding_map_point(points, 2, 0) is None
    assert embedding_map_point(points, 0, 3) is None
    assert embedding_map_point(points, None, None) is None and embedding_map_point(points, -1, 0) is None


def test_map_view_draws_title_and_figure():
    points = [{"path": f"/d/x{i}.png", "label": "ab"[i % 2], "x": i, "y": -i} for i in range(4)]
    at = AppTest.from_function(_map_view, args=(points,), default_timeout=30).run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["Embedding map"]
    assert len(at.get("plotly_chart")) == 1
    assert "Click a dot to see its photo." in [c.value for c in at.caption]


def test_evaluate_says_when_the_map_needs_cached_embeddings(trained):
    sid, _ = trained
    at = open_page("pages/5_Evaluate.py", sid)
    assert not at.exception
    # The shared run has random weights: nothing is cached for them, so the map says why it is absent.
    assert "The map appears when this run's photos are in the embedding cache" in texts(at)


def test_data_page_draws_the_map_once_the_photos_are_cached(sid, workspace, tmp_path, monkeypatch):
    # Embeddings put in the feature cache as a training run puts them (the Data page never builds a backbone).
    # A feature cache of its own: it is keyed by content, and other tests embed the same generated photos.
    monkeypatch.setattr("tlcore.training.features.default_cache_dir", lambda: tmp_path / "cache")

    from tlcore.lab.label_check import feature_key
    from tlcore.training.features import FeatureCache, extract_features

    make_image_folder(workspace.data_dir, n_per_class=6, size=16)
    at = open_page("pages/1_Data.py", sid)
    assert "Embedding map" not in texts(at)  # nothing cached yet
    paths = [str(p) for c in workspace.classes() for p in workspace.images(c)]
    key, size = feature_key()
    extract_features(paths, key, lambda: (lambda batch: batch.reshape(len(batch), -1, 3).mean(axis=1)),
                     size, FeatureCache())
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert "Embedding map" in texts(at)
    assert len(at.get("plotly_chart")) >= 2  # the health counts and the map


def test_suspects_and_map_are_free_of_english_in_french(sid, workspace):
    from tests.ui.test_french import _user_words, english_words
    from tests.ui.visible import visible_texts

    make_image_folder(workspace.data_dir, n_per_class=6, size=16)
    workspace.update_settings(language="fr")
    _finished_check(workspace, [("red", "red_0.png", "blue")], points=[("red", "red_0.png"), ("blue", "blue_1.png")])
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert "Déplacer vers blue" in [b.label for b in at.button]
    # The page's style sheet (ui/frame/chrome.py) is code, not words: only what the panel and the map say is read.
    found = {text: english_words(text, ignore=_user_words(sid)) for text in visible_texts(at)
             if not text.lstrip().startswith("<style>")}
    assert {text: words for text, words in found.items() if words} == {}


def _run_map(run_dir, rows):
    import streamlit as st

    from ui.views.embedding_map import run_map_points, show_embedding_map

    points = run_map_points(run_dir, rows)
    if points is None:
        st.caption("none")
    else:
        show_embedding_map(points, key="run_map", root=run_dir.parent, mistakes=[rows[0]["path"]])
        st.caption(f"{len(points)} points")


def test_a_runs_map_comes_from_the_embeddings_training_cached(tmp_path, monkeypatch):
    from tlcore.lab.label_check import feature_key
    from tlcore.training.features import FeatureCache, extract_features

    monkeypatch.setattr("tlcore.training.features.default_cache_dir", lambda: tmp_path / "cache")
    data = make_image_folder(tmp_path / "data", n_per_class=5, size=16)
    rows = [{"path": str(p), "label": p.parent.name} for p in sorted(data.rglob("*.png"))]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"backbone": "efficientnet_lite0", "weights": "imagenet",
                                                     "input_size": 224}))
    at = AppTest.from_function(_run_map, args=(run_dir, rows), default_timeout=30).run()
    assert [c.value for c in at.caption] == ["none"]  # nothing cached yet: no map, no error
    key, size = feature_key()
    extract_features([r["path"] for r in rows], key,
                     lambda: (lambda batch: batch.reshape(len(batch), -1, 3).mean(axis=1)), size, FeatureCache())
    at = AppTest.from_function(_run_map, args=(run_dir, rows), default_timeout=30).run()
    assert not at.exception
    assert at.caption[-1].value == "10 points" and len(at.get("plotly_chart")) == 1
