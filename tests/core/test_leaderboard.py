"""leaderboard(): stand-in backbones of known quality, the feature cache, skipped backbones, the CLI.

The registry seen by :mod:`tlcore.lab.leaderboard` is swapped for three tiny stand-ins: ``good``
(mean colour, which separates the colour classes), ``poor`` (constant features, chance at best)
and ``remote`` (weights neither offline nor downloaded).
"""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import keras
import numpy as np
import pytest

import tlcore.lab.leaderboard as lb
from tests.conftest import make_image_folder
from tests.core.test_events import assert_each_phase_announced, phase_story
from tlcore.cli import main
from tlcore.io.errors import TLError
from tlcore.training.features import FeatureCache
from tlcore.backbones.registry import BackboneSpec


def _spec(name, offline=True, size_mb=10.0, params=1_000_000):
    return BackboneSpec(name=name, input_size=32, preprocessing="none", feature_dim=48, params=params,
                        size_mb=size_mb, imagenet_top1=0.7, weights_source="test", offline=offline)


SPECS = {"good": _spec("good", size_mb=20.0), "poor": _spec("poor", size_mb=5.0), "remote": _spec("remote", offline=False)}


def good_backbone(input_shape):
    """Mean RGB in 0..1, repeated 16 times: features that separate the colour classes."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Concatenate()([x] * 16), name="good")


def poor_backbone(input_shape):
    """The same 48 numbers for every image: nothing to learn from."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(0.0, offset=0.5)(inputs))
    return keras.Model(inputs, keras.layers.Concatenate()([x] * 16), name="poor")


class Builds:
    """Stands in for ``create_backbone``; records every build."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, weights="imagenet", input_shape=None, pooling="avg"):
        self.calls.append((name, weights))
        shape = input_shape or (SPECS[name].input_size,) * 2 + (3,)
        return {"good": good_backbone, "poor": poor_backbone}[name](shape)


@pytest.fixture
def standins(monkeypatch, tmp_path):
    builds = Builds()
    monkeypatch.setattr(lb, "list_backbones", lambda: list(SPECS))

    def get_spec(name):
        if name not in SPECS:
            raise TLError(f"unknown backbone {name!r}; choose one of {', '.join(SPECS)}")
        return SPECS[name]

    monkeypatch.setattr(lb, "get_spec", get_spec)
    monkeypatch.setattr(lb, "create_backbone", builds)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # nothing downloaded
    return builds


@pytest.fixture
def data(tmp_path):
    return make_image_folder(tmp_path / "data", n_per_class=10)


def test_available_backbones_are_offline_or_already_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert lb.available_backbones() == ["efficientnet_lite0"]
    assert not lb.weights_cached("mobilenet_v2")
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / lb.KERAS_WEIGHT_FILES["mobilenet_v2"]).write_bytes(b"weights")
    assert lb.weights_cached("mobilenet_v2")
    assert lb.available_backbones() == ["efficientnet_lite0", "mobilenet_v2"]


def test_every_keras_application_has_its_weights_file_name():
    from tlcore.backbones.keras_apps import KERAS_APPLICATIONS

    assert set(lb.KERAS_WEIGHT_FILES) == set(KERAS_APPLICATIONS)


def test_the_better_backbone_ranks_higher_with_size_and_speed(standins, data):
    events = []
    result = lb.leaderboard(data, on_progress=events.append)
    assert [r["name"] for r in result["rows"]] == ["good", "poor"]
    good, poor = result["rows"]
    assert good["accuracy"] == 1.0 and poor["accuracy"] <= 0.5
    assert good["size_mb"] == 20.0 and good["params"] == 1_000_000 and good["feature_dim"] == 48
    assert good["images_per_s"] > 0 and good["speed_source"] == "embedding"
    assert good["computed"] == 20 and good["cache_hits"] == 0
    # A stratified 80/20 split of 10 photos per class.
    assert (result["n_train"], result["n_val"], result["held_out"]) == (16, 4, "split")
    assert result["classes"] == ["blue", "red"] and result["stopped"] is False
    assert json.loads(json.dumps(result)) == result
    stages = {e["stage"] for e in events}
    assert stages == {"embed", "scored", "skipped"}
    assert all(e["count"] == 3 for e in events)
    assert [e["backbone"] for e in events if e["stage"] == "scored"] == ["good", "poor"]


def test_a_backbone_without_its_weights_is_skipped_with_the_reason(standins, data):
    result = lb.leaderboard(data)
    assert [s["name"] for s in result["skipped"]] == ["remote"]
    assert "not downloaded" in result["skipped"][0]["reason"] or "not available" in result["skipped"][0]["reason"]
    assert ("remote", "imagenet") not in standins.calls


def test_a_backbone_that_fails_to_build_is_skipped_and_the_others_scored(standins, data, monkeypatch):
    def build(name, weights="imagenet", input_shape=None, pooling="avg"):
        if name == "poor":
            raise TLError("cannot download the ImageNet weights for poor (no network access?)")
        return standins(name, weights, input_shape, pooling)

    monkeypatch.setattr(lb, "create_backbone", build)
    result = lb.leaderboard(data, ["good", "poor"])
    assert [r["name"] for r in result["rows"]] == ["good"]
    assert result["skipped"] == [{"name": "poor", "reason": "cannot download the ImageNet weights for poor (no network access?)"}]


def test_cached_embeddings_are_reused_without_building_the_backbone(standins, data, tmp_path):
    cache = FeatureCache(tmp_path / "features")
    first = lb.leaderboard(data, ["good", "poor"], cache=cache)
    assert len(standins.calls) == 2
    second = lb.leaderboard(data, ["good", "poor"], cache=cache)
    assert len(standins.calls) == 2  # no backbone built the second time
    assert [r["accuracy"] for r in second["rows"]] == [r["accuracy"] for r in first["rows"]]
    assert all(r["cache_hits"] == 20 and r["computed"] == 0 for r in second["rows"])
    assert all(r["speed_source"] in ("earlier", None) for r in second["rows"])


def test_the_data_own_validation_split_is_the_held_out_set(standins, tmp_path):
    data = make_image_folder(tmp_path / "split", n_per_class=4, splits=["train", "val"])
    result = lb.leaderboard(data, ["good"])
    assert (result["n_train"], result["n_val"], result["held_out"]) == (8, 8, "val")
    assert result["rows"][0]["accuracy"] == 1.0


def test_a_stop_keeps_the_rows_scored_so_far(standins, data):
    scored = []

    def on_progress(event):
        if event["stage"] == "scored":
            scored.append(event["backbone"])

    result = lb.leaderboard(data, ["good", "poor"], on_progress=on_progress, should_stop=lambda: bool(scored))
    assert result["stopped"] is True
    assert [r["name"] for r in result["rows"]] == ["good"]


def test_too_few_photos_to_hold_out_is_one_sentence(standins, tmp_path):
    data = make_image_folder(tmp_path / "tiny", n_per_class=2)
    with pytest.raises(TLError, match="at least 3 per class"):
        lb.leaderboard(data, ["good"])


def test_cli_json_and_progress_events(standins, data, tmp_path):
    progress = tmp_path / "events.jsonl"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["leaderboard", str(data), "--backbones", "poor,good", "--json", "--progress", str(progress)])
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert [r["name"] for r in result["rows"]] == ["good", "poor"]
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    assert_each_phase_announced(events)
    # Each backbone is built (after its first embed event at 0), then its quick head scores it.
    assert phase_story(events) == ["starting", "loading", "loading", "scoring", "loading", "scoring"]
    assert [(e["phase"], e.get("name")) for e in events if e["type"] == "phase"][2:] == [
        ("loading", "poor"), ("scoring", "poor"), ("loading", "good"), ("scoring", "good")]
    embeds = [e for e in events if e["type"] == "leaderboard" and e["stage"] == "embed"]
    assert embeds[0]["done"] == 0 and embeds[0]["backbone"] == "poor"
    assert any(e["type"] == "leaderboard" and e["stage"] == "scored" for e in events)
    assert events[-1]["type"] == "done" and events[-1]["result"] == result


def test_cli_unknown_backbone_is_a_user_error(standins, data):
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["leaderboard", str(data), "--backbones", "nope", "--json"])
    assert code == 2 and "unknown backbone 'nope'" in err.getvalue()


def test_cli_table_for_people(standins, data):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["leaderboard", str(data)])
    assert code == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("accuracy on 4 held-out images")
    assert lines[2].split()[0] == "good" and lines[3].split()[0] == "poor"
    assert "skipped remote:" in err.getvalue()
    assert np.isfinite(float(lines[2].split()[1]))
