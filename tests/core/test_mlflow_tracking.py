"""MLflow tracking (tlcore.lab.mlflow_tracking): train, fine-tune and export through the command line log to a
local SQLite store made here, read back with MLflow's own client; without a URI nothing is logged or imported,
and a store that cannot be reached is a warning, never a failed run."""
from __future__ import annotations

import json
import socket
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_cli import last_json, run_cli
from tlcore.cli.main import log_path
from tlcore.lab.mlflow_tracking import (EXPERIMENT, TRACKING_URI_ENV, TrackingConfig, log_training, logged_to,
                                        shown_uri, tracking_uri)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, run_standin):
    """A run trained (2 head epochs, then 1 of fine-tuning) with ``--mlflow``, fine-tuned again into another folder
    with ``$MLFLOW_TRACKING_URI``, and that exported to float32 TFLite with its bundle, all logged to one SQLite
    store (artifacts beside it). The Lite0-named stand-in of test_cli trains, and runs reload as it for the whole
    module (``run_standin``): what is logged does not depend on the backbone's size."""
    import tlcore.training.frozen as frozen_mod
    from tests.core.test_finetune import lite0_standin

    root = tmp_path_factory.mktemp("mlflow")
    data = make_image_folder(root / "data")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))  # module scope: outside the autouse fixture
        mp.delenv(TRACKING_URI_ENV, raising=False)
        mp.setattr(frozen_mod, "create_backbone", lite0_standin)
        mp.chdir(root)  # anything MLflow put in the working folder would be found here
        code, stdout, stderr = run_cli(["train", data, "--out", root / "run", "--weights", "none", "--input-size",
                                        SMALL_INPUT, "--epochs", "2", "--fine-tune-layers", "2",
                                        "--fine-tune-epochs", "1", "--mlflow", uri, "--json",
                                        "--progress", root / "events.jsonl"])
        assert code == 0, stderr
        train = last_json(stdout)
        mp.setenv(TRACKING_URI_ENV, uri)
        code, stdout, stderr = run_cli(["finetune", root / "run", "--out", root / "tuned", "--layers", "2",
                                        "--epochs", "1", "--json"])
        assert code == 0, stderr
        tuned = last_json(stdout)
        mp.delenv(TRACKING_URI_ENV)
        code, stdout, stderr = run_cli(["export", root / "tuned", "--format", "tflite-float32", "--out",
                                        root / "exported" / "model_float32.tflite", "--bundle",
                                        root / "exported" / "bundle.zip", "--mlflow", uri, "--json"])
        assert code == 0, stderr
        export = last_json(stdout)
    from mlflow.tracking import MlflowClient

    return SimpleNamespace(root=root, uri=uri, client=MlflowClient(tracking_uri=uri), train=train, tuned=tuned,
                           export=export)


def _run(tracked, result):
    return tracked.client.get_run(result["mlflow"]["run_id"])


def _artifact(tracked, result, path) -> bytes:
    from mlflow.artifacts import download_artifacts

    target = tracked.root / "downloads" / result["mlflow"]["run_id"]
    return Path(download_artifacts(run_id=result["mlflow"]["run_id"], artifact_path=path, dst_path=str(target),
                                   tracking_uri=tracked.uri)).read_bytes()


def _history(tracked, result, key) -> tuple[list[int], list[float]]:
    """The steps and the values of metric ``key`` of ``result``'s MLflow run, in step order."""
    metrics = sorted(tracked.client.get_metric_history(result["mlflow"]["run_id"], key), key=lambda m: m.step)
    return [m.step for m in metrics], [m.value for m in metrics]


def _of_history(history: list[dict], key) -> tuple[list[int], list[float]]:
    return [h["epoch"] for h in history], [h[key] for h in history]


def test_a_training_run_logs_its_settings_every_epoch_of_both_phases_and_its_files(tracked):
    run_dir = tracked.root / "run"
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    run = _run(tracked, tracked.train)
    assert run.info.status == "FINISHED" and run.info.run_name == "train run"
    assert tracked.client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    params = run.data.params
    # Every TrainConfig value the run was trained with, and what it was trained on.
    assert {k: params[k] for k in ("epochs", "lr", "fine_tune_layers", "fine_tune_epochs", "weights", "split")} == {
        "epochs": "2", "lr": "0.001", "fine_tune_layers": "2", "fine_tune_epochs": "1", "weights": "none",
        "split": "0.8,0.1,0.1"}
    assert set(config["train"]) <= set(params)
    assert params["backbone"] == "efficientnet_lite0" and params["input_size"] == str(SMALL_INPUT)
    assert params["classes"] == "blue,red" and params["n_classes"] == "2"
    assert [params[f"photos_{s}"] for s in ("train", "val", "test")] == [
        str(tracked.train[f"n_{s}"]) for s in ("train", "val", "test")]
    # The head's two epochs, then fine-tuning's, on one step axis, as the run's history numbers them.
    history = tracked.train["history"]
    assert [h["phase"] for h in history] == ["head", "head", "fine_tune"]
    assert params["fine_tune_from_epoch"] == "3"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        steps, values = _history(tracked, tracked.train, key)
        assert (steps, values) == (_of_history(history, key)[0], pytest.approx(_of_history(history, key)[1]))
    assert run.data.metrics["final_val_accuracy"] == tracked.train["val_accuracy"]
    assert run.data.metrics["final_test_accuracy"] == tracked.train["test_accuracy"]
    # Its files as they are on disk; its model card (no exports yet: the card stops before them).
    for name, artifact in (("labels.txt", "labels.txt"), ("config.json", "run/config.json"),
                           ("metrics.json", "run/metrics.json")):
        assert _artifact(tracked, tracked.train, artifact) == (run_dir / name).read_bytes()
    card = _artifact(tracked, tracked.train, "MODEL_CARD.md").decode("utf-8")
    assert card.startswith("# Model card") and "efficientnet_lite0" in card and "| blue |" in card
    assert "TFLite" not in card
    # A follower heard it: the tracking phase, after saving, before the end (with where it went).
    events = [json.loads(line) for line in (tracked.root / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    phases = [e["phase"] for e in events if e["type"] == "phase"]
    assert phases[-2:] == ["saving", "tracking"] and events[-1]["type"] == "done"
    assert events[-1]["result"]["mlflow"]["run_id"] == run.info.run_id
    # The artifacts live beside the store, not in the folder the command ran from.
    assert run.info.artifact_uri.startswith((tracked.root / "mlartifacts").as_uri())
    assert not (tracked.root / "mlruns").exists()


def test_a_fine_tune_of_a_saved_run_is_logged_under_the_run_it_continues(tracked):
    run = _run(tracked, tracked.tuned)  # logged through $MLFLOW_TRACKING_URI alone
    parent = tracked.train["mlflow"]["run_id"]
    assert tracked.tuned["mlflow"]["parent_run_id"] == parent
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["tlcore.parent_run_id"] == parent
    assert run.data.tags["tlcore.command"] == "finetune" and run.info.run_name == "finetune tuned"
    # Its history continues the run's: three epochs from it, one of its own.
    assert _history(tracked, tracked.tuned, "val_loss")[0] == [1, 2, 3, 4]
    steps, values = _history(tracked, tracked.tuned, "loss")
    assert (steps, values) == (_of_history(tracked.tuned["history"], "loss")[0],
                               pytest.approx(_of_history(tracked.tuned["history"], "loss")[1]))
    children = tracked.client.search_runs([run.info.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert [c.info.run_id for c in children] == [tracked.tuned["mlflow"]["run_id"]]


def test_an_export_logs_its_verification_and_the_files_it_wrote(tracked):
    export = tracked.export
    run = _run(tracked, export)
    assert export["mlflow"]["parent_run_id"] == tracked.tuned["mlflow"]["run_id"]  # under the run it exports
    params, metrics = run.data.params, run.data.metrics
    assert params["formats"] == "tflite-float32" and params["verify"] == "True"
    assert params["calibration_samples"] == "200" and params["classes"] == "blue,red"
    verification = export["verification"]
    assert metrics["tflite-float32/size_bytes"] == export["size_bytes"]
    assert metrics["tflite-float32/accuracy"] == verification["tflite_accuracy"]
    assert metrics["tflite-float32/agreement"] == verification["agreement"]
    assert metrics["tflite-float32/latency_ms"] == verification["latency_ms"]
    assert metrics["keras_accuracy"] == verification["keras_accuracy"]
    folder = tracked.root / "exported"
    for name in ("model_float32.tflite", "labels.txt", "bundle.zip"):
        assert _artifact(tracked, export, name) == (folder / name).read_bytes(), name
    with zipfile.ZipFile(folder / "bundle.zip") as bundle:
        assert _artifact(tracked, export, "MODEL_CARD.md") == bundle.read("MODEL_CARD.md")
    assert json.loads(_artifact(tracked, export, "export.json"))["exports"][0]["format"] == "tflite-float32"


@pytest.fixture
def closed_port():
    """A local port that refuses connections: bound, so nobody else takes it, but not listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_a_store_that_cannot_be_reached_is_a_warning_not_a_failure(tracked, tmp_path, monkeypatch, closed_port):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # refused at once, not after MLflow's retries
    out = tmp_path / "model.keras"
    server = f"127.0.0.1:{closed_port}"
    code, stdout, stderr = run_cli(["export", tracked.root / "tuned", "--format", "keras", "--out", out,
                                    "--mlflow", f"http://someone:secret@{server}"])
    assert code == 0, stderr
    assert out.is_file() and "keras:" in stdout
    warnings = [line for line in stderr.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: the run was not logged to MLflow at "
                                                         f"http://someone:***@{server} (")
    assert "secret" not in stderr and "Traceback" not in stderr
    # The details are in the log, without the password, nor in the command line logged before them.
    assert "secret" not in log_path().read_text(encoding="utf-8")
    logged = log_path().read_text(encoding="utf-8").split("logging to MLflow at ", 1)[1]
    assert logged.startswith(f"http://someone:***@{server} failed") and "Connection refused" in logged
    assert "secret" not in logged
    # A URI MLflow has no store for: the same warning, from the Python call too.
    unlogged = {k: v for k, v in tracked.train.items() if k != "mlflow"}
    result = log_training("nosuch://store", "train", {**unlogged, "warnings": []})
    assert [w["code"] for w in result["warnings"]] == ["mlflow_failed"] and "mlflow" not in result
    assert set(result["warnings"][0]["values"]) == {"uri", "reason"}


def test_without_a_uri_nothing_is_logged_and_mlflow_is_never_imported(tracked, tmp_path, monkeypatch):
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    # Any import of MLflow (or of a part of it already loaded by the tests above) now fails.
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")] or ["mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)
    code, stdout, stderr = run_cli(["export", tracked.root / "tuned", "--format", "keras", "--out",
                                    tmp_path / "model.keras", "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert "mlflow" not in result and not result["warnings"]
    assert "MLflow" not in stderr


def test_the_uri_is_the_option_else_the_environment_and_hides_a_password(monkeypatch):
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    assert tracking_uri() is None and tracking_uri(TrackingConfig(mlflow_uri="  ")) is None and logged_to() is None
    monkeypatch.setenv(TRACKING_URI_ENV, "http://tracker:5000")
    assert tracking_uri() == "http://tracker:5000"
    assert tracking_uri(TrackingConfig(mlflow_uri="sqlite:///here.db")) == "sqlite:///here.db"
    assert tracking_uri(TrackingConfig(mlflow_uri="")) is None  # --mlflow '': not this command
    monkeypatch.setenv(TRACKING_URI_ENV, "https://me:pa55@tracker.example:443/mlflow")
    assert logged_to() == "https://me:***@tracker.example:443/mlflow"
    assert shown_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
