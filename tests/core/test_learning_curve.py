"""Will more photos help? The learning curve's fit, its heads on synthetic embeddings, its bad inputs and its CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.analysis.learning_curve import CONSTANT, LOG_LINEAR, POWER_LAW, fit_learning_curve
from tlcore.io.errors import TLError
from tlcore.jobs.events import LEARNING_CURVE
from tlcore.training.learning_curve import (LearningCurveConfig, curve_from_features, learning_curve,
                                            learning_curve_args, stratified_subsets)


# The fit -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,c", [(0.95, 0.6, 0.5), (0.8, 0.3, 1.2), (1.0, 0.5, 0.3)])
def test_the_fit_recovers_a_known_power_law(a, b, c):
    n = np.array([2, 5, 10, 20, 40, 80], float)
    fit = fit_learning_curve(n, a - b * n ** -c)
    assert fit.method == POWER_LAW
    assert fit.a == pytest.approx(a, abs=0.005)
    assert fit.b == pytest.approx(b, rel=0.02)
    assert fit.c == pytest.approx(c, rel=0.02)
    assert fit.predict(160) == pytest.approx(a - b * 160 ** -c, abs=0.003)


def test_the_fit_with_noise_stays_close_and_bounded():
    rng = np.random.default_rng(0)
    n = np.repeat([3, 6, 12, 24, 48], 3).astype(float)
    acc = 0.9 - 0.5 * n ** -0.7 + rng.normal(0, 0.01, len(n))
    fit = fit_learning_curve(n, acc)
    assert fit.predict(96) == pytest.approx(0.9 - 0.5 * 96 ** -0.7, abs=0.03)
    assert 0.0 <= fit.predict(1e9) <= 1.0


def test_the_ceiling_never_passes_one():
    n = np.array([2, 4, 8, 16], float)
    fit = fit_learning_curve(n, [0.7, 0.9, 0.99, 1.0])
    assert fit.a <= 1.0
    assert all(0.0 <= v <= 1.0 for v in fit.predict(np.array([1, 100, 1e6])))


def test_falling_points_give_a_flat_curve_not_a_falling_one():
    fit = fit_learning_curve([2, 4, 8, 16], [0.9, 0.85, 0.8, 0.75])
    assert fit.b == 0.0
    assert fit.predict(32) == pytest.approx(np.mean([0.9, 0.85, 0.8, 0.75]))


def test_the_fit_falls_back_when_points_cannot_carry_three_parameters():
    two = fit_learning_curve([5, 10, 5, 10], [0.6, 0.7, 0.62, 0.72])
    assert two.method == LOG_LINEAR and two.b > 0
    assert 0.7 < two.predict(20) <= 1.0
    one = fit_learning_curve([5, 5], [0.6, 0.8])
    assert one.method == CONSTANT and one.predict(100) == pytest.approx(0.7)
    empty = fit_learning_curve([], [])
    assert empty.method == CONSTANT
    nan = fit_learning_curve([2, 4, 8, np.nan], [0.5, 0.6, 0.7, 0.9])
    assert nan.method == POWER_LAW


# The subsets ---------------------------------------------------------------------------------------------

def test_subsets_are_stratified_and_nested():
    y = np.array([0] * 40 + [1] * 20)
    subsets = stratified_subsets(y, 2, (0.1, 0.5, 1.0), np.random.default_rng(3))
    assert [list(np.bincount(y[s], minlength=2)) for s in subsets] == [[4, 2], [20, 10], [40, 20]]
    assert set(subsets[0]) <= set(subsets[1]) <= set(subsets[2])


# Heads on synthetic embeddings ---------------------------------------------------------------------------

def synthetic(n_per_class=60, n_val=40, classes=3, dim=32, spread=(1.0, 1.0, 1.0), seed=0, apart=0.0):
    """Gaussian classes in ``dim`` dimensions, close enough that a head needs many examples to separate them;
    ``spread`` widens a class, ``apart`` moves the first class that far away from the others on every axis (a head
    then tells it apart from the first photos: it has nothing to gain)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 0.6, (classes, dim))
    means[0] += apart
    xs, ys = [], []
    for k in range(classes):
        m = n_per_class + n_val
        xs.append(means[k] + rng.normal(0, spread[k], (m, dim)))
        ys.append(np.full(m, k))
    x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    val = np.concatenate([np.arange(k * (n_per_class + n_val) + n_per_class, (k + 1) * (n_per_class + n_val))
                          for k in range(classes)])
    train = np.setdiff1d(np.arange(len(y)), val)
    return x, y, train, val


@pytest.fixture(scope="module")
def curve():
    x, y, train, val = synthetic(spread=(0.8, 1.0, 1.6), apart=3.0)
    phases = []
    result = curve_from_features(x, y, train, val, ["a", "b", "c"], LearningCurveConfig(repeats=3, epochs=60),
                                 on_phase=lambda phase, **counts: phases.append((phase, counts)))
    return result, phases


def test_points_grow_in_photos_per_class_and_accuracy_rises(curve):
    result, _ = curve
    points = result["points"]
    assert [p["fraction"] for p in points] == [0.1, 0.25, 0.5, 0.75, 1.0]
    assert [p["photos_per_class"] for p in points] == [6, 15, 30, 45, 60]
    assert points[-1]["val_accuracy"] > points[0]["val_accuracy"] + 0.05
    assert all(0 <= p["val_accuracy"] <= 1 and p["std"] >= 0 and len(p["runs"]) == 3 for p in points)
    assert points[-1]["runs"] != points[0]["runs"]


def test_each_class_has_its_curve_and_extrapolation(curve):
    result, _ = curve
    assert set(result["per_class"]) == {"a", "b", "c"}
    for entry in result["per_class"].values():
        assert [p["photos"] for p in entry["points"]] == [6, 15, 30, 45, 60]
        assert entry["n_val"] == 40
        assert 0 <= entry["extrapolation"]["expected_accuracy"] <= 1
    x = result["extrapolation"]
    assert x["photos_per_class"] == 60 and x["more_photos_per_class"] == 120
    assert 0.0 <= x["expected_accuracy"] <= 1.0
    assert x["expected_accuracy"] >= x["accuracy"]
    assert x["gain"] == pytest.approx(x["expected_accuracy"] - x["accuracy"], abs=1e-4)
    assert x["method"] == POWER_LAW


def test_the_class_gaining_most_is_named_and_never_the_one_already_perfect(curve):
    result, _ = curve
    x = result["extrapolation"]
    separate = result["per_class"]["a"]
    assert [p["val_accuracy"] for p in separate["points"]] == [1.0] * 5
    assert separate["extrapolation"]["gain"] == 0.0
    assert x["class_gaining_most"] in ("b", "c")
    gains = {c: e["extrapolation"]["gain"] for c, e in result["per_class"].items()}
    assert x["class_gaining_most"] == max(gains, key=gains.get)
    assert x["class_gain"] == gains[x["class_gaining_most"]]


def test_each_head_is_announced_before_it_trains(curve):
    _, phases = curve
    counts = [c for p, c in phases if p == LEARNING_CURVE]
    assert counts[0] == {"done": 0, "total": 15} and counts[-1] == {"done": 15, "total": 15}
    assert [c["done"] for c in counts] == list(range(16))


def test_the_same_seed_gives_the_same_curve():
    x, y, train, val = synthetic(n_per_class=20, n_val=10, seed=1)
    config = LearningCurveConfig(fractions=(0.25, 0.5, 1.0), repeats=2, epochs=3)
    first = curve_from_features(x, y, train, val, ["a", "b", "c"], config)
    again = curve_from_features(x, y, train, val, ["a", "b", "c"], config)
    assert first == again


def test_a_stop_keeps_the_shares_already_measured():
    x, y, train, val = synthetic(n_per_class=20, n_val=10, seed=1)
    asked = iter([False, False, True])
    result = curve_from_features(x, y, train, val, ["a", "b", "c"],
                                 LearningCurveConfig(fractions=(0.25, 0.5, 1.0), repeats=1, epochs=2),
                                 should_stop=lambda: next(asked, True))
    assert result["stopped"] and [p["fraction"] for p in result["points"]] == [0.25, 0.5]


# Bad inputs: one sentence each ----------------------------------------------------------------------------

def test_too_few_photos_for_the_smallest_share_says_how_many_are_needed():
    x, y, train, val = synthetic(n_per_class=8, n_val=4)
    with pytest.raises(TLError, match=r"class 'a' has 8 training photo\(s\), too few for the smallest share "
                                      r"\(10%\) to hold one; add photos to reach 10"):
        curve_from_features(x, y, train, val, ["a", "b", "c"])


def test_no_validation_photos_is_refused():
    x, y, train, _ = synthetic(n_per_class=20, n_val=0)
    with pytest.raises(TLError, match="no validation photos"):
        curve_from_features(x, y, train, np.array([], int), ["a", "b", "c"])


@pytest.mark.parametrize("fractions,words", [((0.5,), "at least two fractions"), ((0, 0.5), "must be above 0"),
                                             ((0.5, 1.5), "must be above 0 and at most 1"),
                                             ((0.5, 0.5, 1.0), "repeat a value")])
def test_bad_fractions_are_refused(fractions, words):
    with pytest.raises(TLError, match=words):
        learning_curve_args(LearningCurveConfig(fractions=fractions), "data")


def test_one_class_is_refused_before_anything_is_embedded(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("red",))
    with pytest.raises(TLError, match="needs at least two class folders"):
        learning_curve(data, LearningCurveConfig(weights=None, input_size=32))


def test_job_arguments_round_trip_through_the_parser():
    from tlcore.cli.main import build_parser

    config = LearningCurveConfig(fractions=(0.2, 0.6, 1.0), repeats=2, epochs=5, weights=None, input_size=48)
    args = build_parser().parse_args(learning_curve_args(config, "data"))
    assert args.command == "learning-curve"
    assert (args.fractions, args.repeats, args.epochs, args.weights, args.input_size) == ((0.2, 0.6, 1.0), 2, 5,
                                                                                          None, 48)


# The command line, on tiny photos ---------------------------------------------------------------------------

CLI_FAST = ["--weights", "none", "--input-size", "32", "--repeats", "2", "--epochs", "3"]


def test_cli_json_has_points_per_class_and_extrapolation(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=12, splits=["train", "val"])
    (data / "train" / "red" / "broken.png").write_bytes(b"not an image")
    code, out, err = run_cli(["learning-curve", data, "--json", *CLI_FAST])
    assert code == 0, err
    result = last_json(out)
    assert [p["fraction"] for p in result["points"]] == [0.1, 0.25, 0.5, 0.75, 1.0]
    assert {"fraction", "photos_per_class", "val_accuracy", "std"} <= set(result["points"][0])
    photos = [p["photos_per_class"] for p in result["points"]]
    assert photos == sorted(photos)
    assert set(result["per_class"]) == {"red", "blue"}
    assert 0.0 <= result["extrapolation"]["expected_accuracy"] <= 1.0
    assert [s["path"].endswith("broken.png") for s in result["skipped"]] == [True]
    json.dumps(result)


def test_cli_without_json_prints_the_table_and_the_promise(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=12, splits=["train", "val"])
    code, out, err = run_cli(["learning-curve", data, *CLI_FAST, "--fractions", "0.25,0.5,1"])
    assert code == 0, err
    assert "photos/class" in out and "with twice the photos (24 per class), expect about" in out


@pytest.mark.parametrize("make,words", [
    (lambda root: make_image_folder(root, classes=("red",)), "needs at least two class folders"),
    (lambda root: make_image_folder(root, n_per_class=6, splits=["train", "val"]),
     "too few for the smallest share (10%) to hold one"),
    (lambda root: make_image_folder(root, n_per_class=1), "no validation photos"),
])
def test_cli_bad_data_is_one_sentence_with_status_2(tmp_path, monkeypatch, make, words):
    import tlcore.training.frozen as frozen

    def never(*args, **kwargs):
        raise AssertionError("the backbone was built for data no curve can be measured on")

    monkeypatch.setattr(frozen, "create_backbone", never)  # refused before any photo is embedded
    data = tmp_path / "data"
    make(data)
    code, out, err = run_cli(["learning-curve", data, "--json", *CLI_FAST])
    assert_user_error(code, out, err, words)
    assert words in err


def test_cli_unreadable_class_is_one_sentence(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=12)
    for path in (data / "blue").iterdir():
        path.write_bytes(b"not an image")
    code, out, err = run_cli(["learning-curve", data, "--json", *CLI_FAST])
    assert_user_error(code, out, err)
    assert "class 'blue' has no usable images" in err


def test_cli_bad_fractions_are_one_sentence(tmp_path):
    code, out, err = run_cli(["learning-curve", tmp_path, "--fractions", "0.5,abc"])
    assert_user_error(code, out, err)
    assert "must be numbers separated by commas" in err
