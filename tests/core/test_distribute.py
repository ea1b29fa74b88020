"""Fine-tuning under tf.distribute strategies (tlcore.training.distribute), and the --strategy option.

The mirrored run needs two devices, which this machine gives as two logical CPU devices; TensorFlow
accepts that setting only before it starts, and pytest has started it, so that test runs a script
in a fresh Python process (stand-in backbone, generated photos) and checks what it reports. So does
the multi-worker test, whose strategy must also exist before TensorFlow starts.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_image_folder
from tests.core.test_cli import run_cli
from tlcore.training.distribute import STRATEGIES, make_strategy, read_tf_config
from tlcore.io.errors import TLError
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import fine_tune, train

REPO_ROOT = Path(__file__).resolve().parents[2]

WORKERS = {"worker": ["host-a:12345", "host-b:12345"]}


# make_strategy and TF_CONFIG ---------------------------------------------------------------------

def test_strategy_names():
    assert STRATEGIES == ("default", "mirrored", "multi-worker")
    assert make_strategy("default").num_replicas_in_sync == 1


def test_unknown_strategy_is_refused_with_the_choices():
    with pytest.raises(TLError, match=r"unknown strategy 'tpu'; choose one of default, mirrored, multi-worker"):
        make_strategy("tpu")


def test_multi_worker_without_tf_config_names_it(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(TLError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multi-worker")


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", r"TF_CONFIG '\{not json' is not valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "needs a cluster with a non-empty worker list"),
    (json.dumps({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}), "non-empty worker list"),
    (json.dumps({"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}), "host:port"),
    (json.dumps({"cluster": WORKERS}), "task None must name this machine"),
    (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 2}}), "task .*'index': 2.* must name"),
    (json.dumps({"cluster": WORKERS, "task": {"type": "ps", "index": 0}}), "task .*'ps'.* must name"),
])
def test_bad_tf_config_is_refused_with_its_value(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(TLError, match=message):
        make_strategy("multi-worker")


def test_valid_tf_config_is_read(monkeypatch):
    config = {"cluster": WORKERS, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert read_tf_config() == config


# Plumbing: TrainConfig, train/fine_tune and the CLI refuse bad strategies before any work ------------

def test_train_refuses_a_bad_strategy_before_reading_photos(tmp_path):
    with pytest.raises(TLError, match="unknown strategy 'gpus'"):
        train(tmp_path / "does-not-exist", TrainConfig(strategy="gpus"))


def test_fine_tune_refuses_multi_worker_without_tf_config_before_loading(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(TLError, match="TF_CONFIG"):
        fine_tune(tmp_path / "no-run", TrainConfig(fine_tune_layers=2, strategy="multi-worker"))


def test_cli_strategy_option(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code, _, err = run_cli(["train", tmp_path, "--out", tmp_path / "run", "--strategy", "gpus"])
    assert code == 2 and "--strategy" in err and "'gpus'" in err and "mirrored" in err
    code, _, err = run_cli(["finetune", tmp_path / "run", "--strategy", "multi-worker"])
    assert code == 2 and "TF_CONFIG" in err


# The mirrored run on two logical CPU devices ------------------------------------------------------

SCRIPT = r'''
import io, json, sys
from contextlib import redirect_stdout
from pathlib import Path

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np

import tlcore.models.run as run_mod
import tlcore.training.frozen as frozen_mod
from tests.core.test_finetune import lite0_standin
from tlcore.cli import main
from tlcore.models.run import load_run

frozen_mod.create_backbone = run_mod.create_backbone = lite0_standin
data, root = Path(sys.argv[1]), Path(sys.argv[2])
# Dropout 0: dropout masks are drawn per replica, so with dropout the runs would differ by chance. A barely
# trained head leaves fine-tuning real gradients to follow (near-zero ones would leave Adam following float noise).
common = ["--weights", "none", "--epochs", "1", "--lr", "1e-5", "--dropout", "0", "--batch-size", "4",
          "--split", "0.5,0.25,0.25", "--seed", "3"]
tuning = ["--epochs", "3", "--lr", "1e-4", "--batch-size", "4"]


def cli(*argv):
    out = io.StringIO()
    with redirect_stdout(out):
        code = main([str(a) for a in argv] + ["--json"])
    assert code == 0, f"{argv} exited with {code}"
    return json.loads(out.getvalue().strip().splitlines()[-1])


def weights(run):
    return load_run(root / run).model.get_weights()


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(weights(a), weights(b)))


report = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
for name in ("default", "mirrored"):
    report[f"train_{name}"] = cli("train", data, "--out", root / f"train_{name}", *common, "--fine-tune-layers", "5",
                                  "--fine-tune-epochs", "3", "--fine-tune-lr", "1e-4", "--strategy", name)
report["head_only"] = cli("train", data, "--out", root / "head_only", *common)
for name in ("default", "mirrored"):
    report[f"finetune_{name}"] = cli("finetune", root / "head_only", "--out", root / f"finetune_{name}", "--layers",
                                     "5", *tuning, "--strategy", name)
report["diff"] = {"train": max_diff("train_default", "train_mirrored"),
                  "finetune": max_diff("finetune_default", "finetune_mirrored"),
                  "train_moved": max_diff("train_default", "head_only"),
                  "finetune_moved": max_diff("finetune_default", "head_only")}
print("REPORT " + json.dumps(report))
'''


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    """train and finetune with --strategy mirrored over 2 replicas learn what the default strategy learns.

    Batches of 4 split 2 + 2 and Keras scales each replica's loss by 1/2 before the gradients are
    summed, so the update is the single-device one up to float summation order: the weights agree
    to 1e-5 while fine-tuning moved them by far more, and the losses and accuracies agree.
    """
    data = make_image_folder(tmp_path / "data", n_per_class=8)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(data), str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])

    assert report["logical_cpus"] == 2
    for command in ("train", "finetune"):
        single, mirrored = report[f"{command}_default"], report[f"{command}_mirrored"]
        assert single["replicas"] == 1 and mirrored["replicas"] == 2  # both devices really trained
        assert single["fine_tuned_layers"] == mirrored["fine_tuned_layers"] != []
        assert mirrored["val_accuracy"] == single["val_accuracy"]
        assert mirrored["test_accuracy"] == single["test_accuracy"]
        assert [h["phase"] for h in mirrored["history"]] == [h["phase"] for h in single["history"]]
        for a, b in zip(single["history"], mirrored["history"]):
            for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (command, a["epoch"], key)
        assert not any(w["code"] == "one_replica" for w in mirrored["warnings"])
        # Close, and not because fine-tuning changed nothing.
        assert report["diff"][command] < 1e-5
        assert report["diff"][f"{command}_moved"] > 100 * max(report["diff"][command], 1e-7)


MULTI_WORKER_SCRIPT = r'''
import io, json, sys
from contextlib import redirect_stdout
from pathlib import Path

import tlcore.models.run as run_mod
import tlcore.training.frozen as frozen_mod
from tests.core.test_finetune import lite0_standin
from tlcore.cli import main

frozen_mod.create_backbone = run_mod.create_backbone = lite0_standin
data, root = Path(sys.argv[1]), Path(sys.argv[2])
out = io.StringIO()
with redirect_stdout(out):
    code = main(["train", str(data), "--out", str(root / "run"), "--weights", "none", "--epochs", "1", "--dropout", "0",
                 "--batch-size", "4", "--split", "0.5,0.25,0.25", "--fine-tune-layers", "5", "--fine-tune-epochs", "2",
                 "--strategy", "multi-worker", "--json"])
print("REPORT " + json.dumps({"code": code, "summary": json.loads(out.getvalue().strip().splitlines()[-1])}))
'''


@pytest.mark.slow
def test_multi_worker_trains_on_a_one_machine_cluster(tmp_path):
    """--strategy multi-worker reads TF_CONFIG, starts its worker and fine-tunes (a cluster of one here)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"localhost:{port}"]}, "task": {"type": "worker", "index": 0}}
    data = make_image_folder(tmp_path / "data", n_per_class=8)
    done = subprocess.run([sys.executable, "-c", MULTI_WORKER_SCRIPT, str(data), str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CONFIG": json.dumps(tf_config)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    summary = report["summary"]
    assert report["code"] == 0 and summary["replicas"] == 1
    assert [h["phase"] for h in summary["history"]] == ["head", "fine_tune", "fine_tune"]
    assert summary["val_accuracy"] == 1.0
    assert "one_replica" in [w["code"] for w in summary["warnings"]]
    assert (tmp_path / "run" / "config.json").is_file()
