"""The command line, in-process through tlcore.cli.main, plus one real `python -m tlcore` subprocess."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_events import assert_each_phase_announced, phase_story
from tlcore.cli import main
from tlcore.cli.progress import PHASE_LINES

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def run_cli(argv, tty=False):
    """Run ``main(argv)`` capturing its output; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), (FakeTerminal() if tty else io.StringIO())
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def last_json(stdout):
    lines = stdout.strip().splitlines()
    assert lines, "nothing on stdout"
    return json.loads(lines[-1])


def assert_user_error(code, stdout, stderr, *fragments):
    """Exit 2, exactly one non-empty line on stderr, no traceback, nothing on stdout."""
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    assert stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_standin):
    """One `train --json` run shared by the tests below, of the Lite0-named stand-in (the real Lite0 is
    trained by the CLI in test_jobs' and the dashboard's worker processes); reloaded as one too."""
    import tlcore.training.frozen as frozen_mod
    from tests.core.test_finetune import lite0_standin

    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))  # module scope: outside the autouse fixture
        mp.setattr(frozen_mod, "create_backbone", lite0_standin)
        code, stdout, stderr = run_cli(["train", data, "--out", root / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                        "--epochs", "2", "--json"])
    return SimpleNamespace(code=code, stdout=stdout, stderr=stderr, data=data, run=root / "run",
                           images=sorted(str(p) for p in data.rglob("*.png")))


# backbones ------------------------------------------------------------------------------------

def test_backbones_json():
    code, stdout, stderr = run_cli(["backbones", "--json"])
    assert code == 0, stderr
    rows = last_json(stdout)
    assert isinstance(rows, list) and len(rows) >= 2
    for row in rows:
        assert isinstance(row["name"], str) and row["name"]
        assert isinstance(row["input_size"], int) and row["input_size"] > 0
        assert isinstance(row["feature_dim"], int) and row["feature_dim"] > 0
        assert isinstance(row["params"], int) and row["params"] > 0
        assert isinstance(row["offline"], bool)
    by_name = {row["name"]: row for row in rows}
    assert len(by_name) == len(rows)
    assert rows[0]["name"] == "efficientnet_lite0"  # the default comes first
    assert by_name["efficientnet_lite0"]["offline"] is True
    assert by_name["efficientnet_lite0"]["input_size"] == 224


def test_backbones_table_lists_every_backbone():
    _, stdout, _ = run_cli(["backbones", "--json"])
    names = [row["name"] for row in last_json(stdout)]
    code, table, _ = run_cli(["backbones"])
    assert code == 0
    lines = table.strip().splitlines()
    assert len(lines) == len(names) + 1  # a header, then one row per backbone
    assert [line.split()[0] for line in lines[1:]] == names
    assert "offline" in lines[1]


# train / evaluate / predict --------------------------------------------------------------------

def test_train_json(trained):
    assert trained.code == 0, trained.stderr
    assert trained.stderr == ""  # --json is quiet
    summary = last_json(trained.stdout)
    for key in ("classes", "n_train", "n_val", "n_test", "val_accuracy", "test_accuracy", "history",
                "seconds", "skipped", "warnings"):
        assert key in summary, key
    assert summary["classes"] == ["blue", "red"]
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == len(trained.images)
    assert len(summary["history"]) == 2
    assert {"extract", "train", "total"} <= set(summary["seconds"])
    assert summary["skipped"] == []
    assert "random_weights" in [w["code"] for w in summary["warnings"]]
    assert summary["run_dir"] == str(trained.run)
    assert (trained.run / "model.weights.h5").is_file()
    assert (trained.run / "labels.txt").read_text().splitlines() == summary["classes"]


def test_evaluate_and_predict_json(trained):
    code, stdout, stderr = run_cli(["evaluate", trained.run, trained.data, "--json"])
    assert code == 0, stderr
    evaluated = last_json(stdout)
    assert evaluated["classes"] == ["blue", "red"]
    assert evaluated["n"] == len(trained.images)
    confusion = np.array(evaluated["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == len(trained.images)
    assert confusion.sum(axis=1).tolist() == [8, 8]  # rows are the true classes
    assert evaluated["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert set(evaluated["per_class"]) == {"blue", "red"}
    assert [evaluated["per_class"][c]["support"] for c in ("blue", "red")] == [8, 8]
    assert evaluated["skipped"] == []

    code, stdout, stderr = run_cli(["predict", trained.run, *trained.images, "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    predictions = result["predictions"]
    assert [p["path"] for p in predictions] == trained.images  # one prediction per image, in order
    for p in predictions:
        assert p["label"] in result["classes"]
        probs = [t["probability"] for t in p["top_k"]]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)  # two classes: top 3 is all of them
        assert probs == sorted(probs, reverse=True)
        assert p["label"] == p["top_k"][0]["label"] and p["confidence"] == pytest.approx(probs[0])
    # evaluate lists the data's samples in the same (sorted) order: both commands agree.
    assert [p["label"] for p in predictions] == [evaluated["classes"][i] for i in evaluated["predictions"]]


def test_predict_skips_unreadable_images(trained, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code, stdout, stderr = run_cli(["predict", trained.run, trained.images[0], bad, "--top-k", "1", "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert [p["path"] for p in result["predictions"]] == [trained.images[0]]
    assert len(result["predictions"][0]["top_k"]) == 1
    assert [s["path"] for s in result["skipped"]] == [str(bad)]


def test_predict_human_readable(trained, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    code, stdout, stderr = run_cli(["predict", trained.run, trained.images[0], bad])
    assert code == 0
    assert stdout.strip().splitlines()[0].startswith(f"{trained.images[0]}: ")
    assert stderr.strip().splitlines() == [f"skipped {bad}: not an image file Pillow can read"]


def test_train_human_readable_reports_progress(image_folder, tmp_path):
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "2"])
    assert code == 0, stderr
    assert "features 16/16" in stderr
    assert [line.split()[:3] for line in stderr.splitlines() if line.startswith("head")] == [
        ["head", "epoch", "1"], ["head", "epoch", "2"]]
    assert "warning: the backbone starts from random weights" in stderr
    (summary_line,) = stdout.strip().splitlines()
    assert summary_line.startswith("classes blue, red;") and str(tmp_path / "run") in summary_line


def test_train_on_a_terminal_says_each_phase_in_one_line(image_folder, tmp_path):
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none",
                                    "--input-size", str(SMALL_INPUT), "--epochs", "1"], tty=True)
    assert code == 0, stderr
    # What stays on the screen: each line as its last redraw left it (\r starts a redraw, \r\033[K erases).
    shown = [line.split("\r")[-1] for line in stderr.replace("\r\033[K", "\r").split("\n")]
    phases = [line for line in shown if line in PHASE_LINES.values()]
    assert phases == ["loading the model", "training the head", "saving"], shown
    assert shown.index("loading the model") < shown.index("features 16/16") < shown.index("training the head")
    # Scoring the held-out photos is counted on its own line, redrawn to the last count.
    assert any(line.startswith("scoring the held-out photos ") and line.endswith("/4") for line in shown), shown
    # So are the photos of the TensorBoard projector (every photo of the run).
    assert any(line == "writing the TensorBoard logs: photos 16/16" for line in shown), shown


# user errors: exit 2, one line --------------------------------------------------------------------

def test_train_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    assert_user_error(*run_cli(["train", missing, "--out", tmp_path / "run", "--json"]), str(missing))
    assert not (tmp_path / "run").exists()


def test_train_single_class_folder(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=3, classes=("red",))
    assert_user_error(*run_cli(["train", data, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT)]),
                      "two class folders", "'red'")


def test_train_empty_class_folder(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=3, classes=("red",))
    (data / "blue").mkdir()
    assert_user_error(*run_cli(["train", data, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT)]), "'blue'")


def test_train_unknown_backbone(image_folder, tmp_path):
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run", "--backbone", "resnet9000"]),
                      "'resnet9000'", "efficientnet_lite0")


@pytest.mark.parametrize("split, shown", [
    ("0.5,0.5", "'0.5,0.5'"),
    ("a,b,c", "'a,b,c'"),
    ("0.5,0.6,0.1", "(0.5, 0.6, 0.1)"),
    ("0,0.5,0.5", "(0.0, 0.5, 0.5)"),
])
def test_train_bad_split(image_folder, tmp_path, split, shown):
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                "--split", split]), "split", shown)


@pytest.mark.parametrize("argv, fragment", [
    ([], "python -m tlcore --help"),
    (["train"], "python -m tlcore train --help"),
    (["train", "data"], "--out"),
    (["predict", "somewhere"], "images"),
    (["evaluate"], "python -m tlcore evaluate --help"),
    (["bogus"], "'bogus'"),
    (["train", "data", "--out", "run", "--epochs", "many"], "'many'"),
])
def test_bad_arguments(argv, fragment):
    line = assert_user_error(*run_cli(argv), fragment)
    assert "tlcore tlcore" not in line


def test_train_invalid_number(image_folder, tmp_path):
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run", "--epochs", "0"]), "epochs", "0")


@pytest.mark.parametrize("argv, fragments", [
    (["--input-size", "8"], ("input size must be a whole number of pixels from 32 to 1024, got 8",)),
    (["--input-size", "big"], ("'big'",)),
    (["--backbone", "xception", "--input-size", "64"], ("'xception' cannot take 64x64 pixel inputs", "71x71")),
])
def test_train_bad_input_size(image_folder, tmp_path, argv, fragments):
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT), *argv]),
                      *fragments)


def test_predict_on_non_run_dir(image_folder):
    image = next(image_folder.rglob("*.png"))
    assert_user_error(*run_cli(["predict", image_folder, image, "--json"]), "not a run directory", str(image_folder))


def test_predict_nothing_readable(trained, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    assert_user_error(*run_cli(["predict", trained.run, bad, "--json"]), str(bad))


def test_predict_top_k_zero(trained):
    assert_user_error(*run_cli(["predict", trained.run, trained.images[0], "--top-k", "0"]), "--top-k", "0")


def test_evaluate_with_unknown_class(trained, tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=2, classes=("red", "green"))
    assert_user_error(*run_cli(["evaluate", trained.run, data, "--json"]), "'green'", "blue, red")


def test_evaluate_with_only_broken_images(trained, tmp_path):
    for name in ("red", "blue"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "x.png").write_text("nope")
    assert_user_error(*run_cli(["evaluate", trained.run, tmp_path / "data", "--json"]), "no readable images")


def test_damaged_run_gives_one_line(trained, tmp_path):
    import shutil

    run = Path(shutil.copytree(trained.run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "classes": ["a", "b", "c"]}))
    assert_user_error(*run_cli(["predict", run, trained.images[0]]), "do not match")


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_offline_download_failure(image_folder, tmp_path, monkeypatch, tty):
    """A backbone whose weights Keras downloads, with the download failing and no real I/O."""
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    attempts = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    keras_home = tmp_path / "keras-home"
    real_models = Path.home() / ".keras" / "models"
    before = sorted(os.listdir(real_models)) if real_models.is_dir() else None
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(keras_config, "keras_home", lambda: str(keras_home))  # read at import otherwise
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)

    code, stdout, stderr = run_cli(["train", image_folder, "--backbone", "mobilenet_v2", "--out", tmp_path / "run"],
                                   tty=tty)
    if tty:  # the progress line was drawn, then erased for the phase under way; then the error line
        assert stderr.startswith("\rfeatures 0/16")
        stderr = stderr.rsplit("\r\033[K", 1)[1]
        phase, stderr = stderr.split("\n", 1)
        assert phase == "loading the model"  # building the backbone, whose weights are then downloaded
    # stdout may hold Keras's "Downloading data from ..." notice.
    line = assert_user_error(code, "", stderr, "mobilenet_v2", "~/.keras/models")
    assert ".h5" in line and "efficientnet_lite0" in line
    assert len(attempts) == 1 and attempts[0].startswith("https://")
    assert not (tmp_path / "run").exists()
    assert not any(p.is_file() for p in keras_home.rglob("*"))  # no partial download left behind
    after = sorted(os.listdir(real_models)) if real_models.is_dir() else None
    assert after == before


def test_internal_error_is_one_line_with_log(monkeypatch, image_folder, tmp_path, isolated_cache):
    import tlcore.training.pipeline as train_mod

    def boom(*args, **kwargs):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(train_mod, "extract_features", boom)
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT)])
    assert code == 1
    (line,) = stderr.splitlines()
    assert "RuntimeError: first line second line" in line
    log = isolated_cache / "logs" / "tlcore.log"
    assert str(log) in line
    assert "Traceback" in log.read_text() and "Traceback" not in stderr


def test_repeated_calls_do_not_stack_log_handlers():
    import logging

    before = len(logging.getLogger("tlcore").handlers)
    for _ in range(3):
        run_cli(["backbones", "--json"])
    assert len(logging.getLogger("tlcore").handlers) == before


# A real process -----------------------------------------------------------------------------------

@pytest.mark.slow  # a real worker process, which imports TensorFlow
def test_subprocess_error_is_one_line(tmp_path):
    env = {**os.environ, "TLCORE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "tlcore", "train", "/nonexistent", "--out", str(tmp_path / "run")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: data source '/nonexistent' does not exist"]
    assert proc.stdout == ""
    assert (tmp_path / "cache" / "logs" / "tlcore.log").is_file()  # where TensorFlow's noise went


def test_a_job_says_it_started_and_is_loading_before_tensorflow_is_imported(tmp_path):
    """Issue 17, item 5: a page following a job hears from it within moments of its start, not once TensorFlow
    has loaded (seconds). What the worker runs first, in a fresh process of its own: no TensorFlow yet."""
    progress = tmp_path / "events.jsonl"
    script = ("import json, sys\n"
              "from tlcore.cli.progress import release_slot, wait_for_slot\n"
              f"assert wait_for_slot(['train', 'data', '--out', 'run', '--json', '--progress', {str(progress)!r}]) is None\n"
              "release_slot()\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))\n")
    env = {k: v for k, v in os.environ.items() if k != "TLCORE_JOB_ADMISSION"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**env, "TLCORE_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert [(e["type"], e["phase"]) for e in read_progress(progress)] == [("phase", "starting"), ("phase", "loading")]


# --progress, --stop-file and finetune ----------------------------------------------------------------

def read_progress(path):
    """The JSON-lines events of a --progress file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def standin(monkeypatch):
    """A small, fast backbone named and sized like Lite0, for training and for reloading runs."""
    import tlcore.models.run as run_mod
    import tlcore.training.frozen as frozen_mod
    from tests.core.test_finetune import lite0_standin

    monkeypatch.setattr(frozen_mod, "create_backbone", lite0_standin)
    monkeypatch.setattr(run_mod, "create_backbone", lite0_standin)


def test_train_progress_file_gets_start_extract_epoch_done(image_folder, tmp_path, standin):
    events_file = tmp_path / "job" / "events.jsonl"
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "2", "--progress", events_file, "--json"])
    assert code == 0, stderr
    assert stderr == ""  # the events go to the file, not the terminal
    summary = last_json(stdout)
    events = read_progress(events_file)
    assert_each_phase_announced(events)
    # Random weights: no engine to prepare, the backbone is built once a photo needs embedding.
    assert phase_story(events) == ["starting", "loading", "embedding", "loading", "embedding", "training",
                                   "evaluating", "logging", "saving"]
    events = [e for e in events if e["type"] != "phase"]  # the phases aside, the events of earlier versions
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert set(kinds) == {"start", "extract", "epoch", "done"}
    assert events[0]["command"] == "train" and events[0]["epochs"] == 2 and events[0]["fine_tune_epochs"] == 0
    extract = [e for e in events if e["type"] == "extract"]
    assert [e["done"] for e in extract] == sorted(e["done"] for e in extract)
    assert extract[-1]["done"] == extract[-1]["total"] == 16
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [(e["epoch"], e["phase"]) for e in epochs] == [(1, "head"), (2, "head")]
    assert all(np.isfinite(e["loss"]) and 0 <= e["accuracy"] <= 1 for e in epochs)
    assert kinds.index("epoch") > max(i for i, k in enumerate(kinds) if k == "extract")
    assert events[-1]["result"] == summary
    assert all(isinstance(e["time"], float) for e in events)


def test_train_with_an_existing_stop_file_stops_after_the_first_epoch(image_folder, tmp_path, standin):
    stop = tmp_path / "STOP"
    stop.touch()
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "5", "--fine-tune-layers", "2", "--stop-file", stop, "--json"])
    assert code == 0, stderr
    summary = last_json(stdout)
    assert len(summary["history"]) == 1 and summary["history"][0]["phase"] == "head"
    assert summary["fine_tuned_layers"] == []
    assert (tmp_path / "run" / "config.json").is_file()  # the epoch trained is saved


def test_train_stop_file_that_does_not_exist_changes_nothing(image_folder, tmp_path, standin):
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "3", "--stop-file", tmp_path / "STOP", "--json"])
    assert code == 0, stderr
    assert len(last_json(stdout)["history"]) == 3


def test_train_user_error_is_an_error_event(tmp_path):
    events_file = tmp_path / "events.jsonl"
    line = assert_user_error(*run_cli(["train", tmp_path / "nowhere", "--out", tmp_path / "run",
                                       "--progress", events_file, "--json"]), str(tmp_path / "nowhere"))
    events = read_progress(events_file)
    assert [e["type"] for e in events] == ["phase", "phase", "start", "error"]
    assert [e["phase"] for e in events[:2]] == ["starting", "loading"]
    assert events[-1]["message"] == line.removeprefix("error: ")


def test_train_augment_options(image_folder, tmp_path, standin):
    code, stdout, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                    "--epochs", "1", "--augment", "--augment-copies", "1", "--json"])
    assert code == 0, stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["augment"] is True
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["augment_copies"] == 1
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run2", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                "--augment", "--augment-copies", "0"]), "augmented copies", "0")


@pytest.fixture
def cli_run(image_folder, tmp_path, standin):
    """A run trained in-process through the CLI (stand-in backbone, random weights, 2 epochs)."""
    code, _, stderr = run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                               "--epochs", "2", "--json"])
    assert code == 0, stderr
    return tmp_path / "run"


def test_finetune_json_replaces_the_run(cli_run, tmp_path):
    import keras

    from tlcore.models.run import load_run

    backbone = load_run(cli_run).model.get_layer("efficientnet_lite0")
    learning = [layer.name for layer in backbone.layers  # layers that learn: weights, and not BatchNorm
                if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    expected = learning[-3:]
    events_file = tmp_path / "events.jsonl"

    code, stdout, stderr = run_cli(["finetune", cli_run, "--layers", "3", "--epochs", "1", "--json",
                                    "--progress", events_file])
    assert code == 0, stderr
    assert stderr == ""
    summary = last_json(stdout)
    assert summary["fine_tuned_layers"] == expected
    assert [(h["epoch"], h["phase"]) for h in summary["history"]] == [(1, "head"), (2, "head"), (3, "fine_tune")]
    assert summary["run_dir"] == str(cli_run)
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 16
    config = json.loads((cli_run / "config.json").read_text())
    assert config["fine_tuned"] is True and config["train"]["fine_tune_layers"] == 3

    events = read_progress(events_file)
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "fine_tuning", "evaluating", "logging", "saving"]
    tuning = [e for e in events if e.get("phase") == "fine_tuning"]
    assert tuning[0]["done"] == 0  # said before the work
    # One batch of the training photos; the epoch's start said before the classifier was built, then again by
    # the fit (the same count: not written twice).
    assert [(e["epoch"], e["epochs"], e["done"], e["total"]) for e in tuning] == [(1, 1, 0, 1), (1, 1, 1, 1)]
    events = [e for e in events if e["type"] != "phase"]
    assert [e["type"] for e in events] == ["start", "epoch", "done"]
    assert events[0]["command"] == "finetune" and events[0]["fine_tune_epochs"] == 1
    assert (events[1]["epoch"], events[1]["phase"]) == (3, "fine_tune")
    assert events[-1]["result"] == summary


def test_finetune_human_readable_with_out(cli_run, tmp_path):
    code, stdout, stderr = run_cli(["finetune", cli_run, "--out", tmp_path / "tuned", "--layers", "5",
                                    "--epochs", "2", "--lr", "1e-4"])
    assert code == 0, stderr
    assert [line.split()[:3] for line in stderr.splitlines() if line.startswith("fine_tune")] == [
        ["fine_tune", "epoch", "3"], ["fine_tune", "epoch", "4"]]
    (summary_line,) = stdout.strip().splitlines()
    assert summary_line.startswith("classes blue, red;") and str(tmp_path / "tuned") in summary_line
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["train"]["fine_tune_lr"] == 1e-4
    assert json.loads((cli_run / "config.json").read_text())["fine_tuned"] is False  # the original is kept


def test_finetune_missing_run_dir(tmp_path):
    missing = tmp_path / "nowhere"
    assert_user_error(*run_cli(["finetune", missing, "--layers", "3", "--json"]), str(missing))


@pytest.mark.parametrize("option, value, fragment", [
    ("--layers", "0", "at least one layer"),
    ("--layers", "-2", "-2"),
    ("--epochs", "0", "epochs"),
    ("--lr", "0", "learning rate"),
    ("--patience", "0", "patience"),
])
def test_finetune_bad_settings(trained, option, value, fragment):
    before = (trained.run / "config.json").read_text()
    line = assert_user_error(*run_cli(["finetune", trained.run, option, value, "--json"]), fragment)
    assert value in line
    assert (trained.run / "config.json").read_text() == before


def test_finetune_run_without_samples_json(trained, tmp_path):
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(trained.run, old)
    (old / "samples.json").unlink()
    assert_user_error(*run_cli(["finetune", old, "--layers", "3", "--json"]), "samples.json", str(old))


def test_finetune_run_with_deleted_images(cli_run, tmp_path):
    gone = json.loads((cli_run / "samples.json").read_text())[0]["path"]
    Path(gone).unlink()
    assert_user_error(*run_cli(["finetune", cli_run, "--layers", "3"]), gone)
