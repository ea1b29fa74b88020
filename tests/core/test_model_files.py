"""Model files from users (tlcore.models.model_files): safe .keras loading, and refusal of files that can hold code.

Every hostile file is generated here: a .keras with a Lambda layer, a .keras whose config names a
custom class or a function from another module, a legacy full-model .h5, and pickles (under several
extensions, and as a PyTorch-style zip) whose unpickling would create a marker file. The trained run
uses the small stand-in backbone of test_finetune, installed in ``tlcore.models.run`` for the module.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import tlcore.models.model_check as model_check
from tests.core.conftest import standin_export_run
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tests.core.test_export import CLASSES, SIZE
from tests.core.test_warm import _wait
from tlcore.backbones._common import load_weights_file
from tlcore.io.errors import TLError
from tlcore.jobs import warm
from tlcore.export.formats import export_formats
from tlcore.models.model_check import ensure_checked
from tlcore.models.model_files import KerasFileModel, load_model_file, scan_keras_config
from tlcore.models.model_check import is_trusted
from tlcore.models.run import RunModel, load_run


@pytest.fixture(scope="module")
def exported(run_standin, tmp_path_factory):
    """A tiny run, its .keras export (with labels.txt beside it) and the run's own predictions."""
    with standin_export_run(tmp_path_factory, "model-files") as (root, built):
        keras_file = root / "exports" / "model.keras"
        export_formats(built.run, ["keras"], keras_file)
    images = [s["path"] for s in built.held_out]
    probs, kept, _ = load_run(built.run).predict_files(images)
    assert kept == list(range(len(images)))
    return SimpleNamespace(run=built.run, keras=keras_file, images=images, probs=probs, root=root)


class Boom:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def rewrite_zip(src: Path, dst: Path, changes: dict) -> Path:
    """Copy the zip ``src`` to ``dst`` with entries replaced (bytes) or dropped (None)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            if info.filename not in changes:
                new.writestr(info, old.read(info.filename))
        for name, data in changes.items():
            if data is not None:
                new.writestr(name, data)
    return dst


def zip_json(path: Path, name: str):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(name))


def find_layer(config, name: str) -> dict:
    """The serialised layer called ``name`` anywhere in a Keras config."""
    if isinstance(config, dict):
        if config.get("class_name") and isinstance(config.get("config"), dict) and config["config"].get("name") == name:
            return config
        children = config.values()
    elif isinstance(config, list):
        children = config
    else:
        return None
    for child in children:
        found = find_layer(child, name)
        if found is not None:
            return found
    return None


def refused(path, *fragments) -> str:
    with pytest.raises(TLError) as info:
        load_model_file(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# Round trip ---------------------------------------------------------------------------------------

def test_exported_keras_carries_the_run_config_and_still_loads_in_plain_keras(exported):
    config = json.loads((exported.run / "config.json").read_text())
    assert zip_json(exported.keras, "tlcore.json") == config
    model = keras.saving.load_model(str(exported.keras), safe_mode=True, compile=False)
    assert model.output_shape == (None, len(CLASSES))


def test_exported_keras_gives_the_runs_predictions(exported):
    model = load_model_file(exported.keras)
    assert isinstance(model, RunModel)
    assert model.classes == CLASSES and model.input_size == SIZE
    probs, kept, skipped = model.predict_files(exported.images)
    assert kept == list(range(len(exported.images))) and skipped == []
    assert np.allclose(probs, exported.probs, atol=1e-5)


def test_run_directory_loads_through_the_same_entry_point(exported):
    model = load_model_file(exported.run)
    assert isinstance(model, RunModel) and model.classes == CLASSES


def test_keras_without_metadata_loads_in_safe_mode_with_labels_beside(exported, tmp_path):
    plain = rewrite_zip(exported.keras, tmp_path / "plain.keras", {"tlcore.json": None})
    (tmp_path / "labels.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    model = load_model_file(plain)
    assert isinstance(model, KerasFileModel)
    assert model.classes == CLASSES and model.input_size == SIZE
    assert np.allclose(model.predict_files(exported.images)[0], exported.probs, atol=1e-5)


def test_keras_without_metadata_takes_labels_from_inside_the_archive(exported, tmp_path):
    inner = rewrite_zip(exported.keras, tmp_path / "inner.keras",
                        {"tlcore.json": None, "labels.txt": "".join(f"{c}\n" for c in CLASSES)})
    assert load_model_file(inner).classes == CLASSES


def test_keras_without_metadata_or_labels_is_refused(exported, tmp_path):
    plain = rewrite_zip(exported.keras, tmp_path / "plain.keras", {"tlcore.json": None})
    refused(plain, "'plain.keras'", "no class names", "labels.txt")


def test_keras_without_metadata_and_a_wrong_label_count_is_refused(exported, tmp_path):
    plain = rewrite_zip(exported.keras, tmp_path / "plain.keras", {"tlcore.json": None})
    (tmp_path / "labels.txt").write_text("red\nblue\n")
    refused(plain, "'plain.keras'", "3 outputs", "2 classes")


def test_keras_that_is_not_an_image_classifier_is_refused(tmp_path):
    inputs = keras.Input((8,))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs)).save(tmp_path / "tabular.keras")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    refused(tmp_path / "tabular.keras", "'tabular.keras'", "(None, 8)", "square RGB images")


def test_a_compiled_plain_keras_classifier_passes_the_scan(tmp_path, seed):
    # Optimizer, loss and metrics are named in the config too: Keras's own must not be taken for custom code.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.zeros((4, 16, 16, 3)), np.array([0, 1, 0, 1]), verbose=0)
    model.save(tmp_path / "compiled.keras")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    loaded = load_model_file(tmp_path / "compiled.keras")
    assert loaded.classes == ["cat", "dog"] and loaded.input_size == 16
    probs = loaded.predict_batch(np.full((1, 16, 16, 3), 100, np.float32))
    assert np.allclose(probs, model.predict_on_batch(np.full((1, 16, 16, 3), 100, np.float32)))


# Shape and class-count mismatches -------------------------------------------------------------------

def test_metadata_with_another_class_count_than_the_weights_is_refused(exported, tmp_path):
    meta = zip_json(exported.keras, "tlcore.json")
    meta["classes"] = ["red", "blue"]  # the weights have 3 outputs
    bad = rewrite_zip(exported.keras, tmp_path / "two.keras", {"tlcore.json": json.dumps(meta)})
    refused(bad, "'two.keras'", "do not fit", "2 classes")


def test_metadata_naming_another_backbone_shape_is_refused(exported, tmp_path):
    meta = zip_json(exported.keras, "tlcore.json")
    meta["backbone"] = "vgg16"  # 512 features where the weights have 1280
    bad = rewrite_zip(exported.keras, tmp_path / "other.keras", {"tlcore.json": json.dumps(meta)})
    refused(bad, "'other.keras'", "do not fit", "'vgg16'")


def test_metadata_asking_for_a_huge_model_is_refused_before_building(exported, tmp_path):
    meta = zip_json(exported.keras, "tlcore.json")
    meta["input_size"] = 100000
    bad = rewrite_zip(exported.keras, tmp_path / "huge.keras", {"tlcore.json": json.dumps(meta)})
    refused(bad, "'huge.keras'", "input_size 100000")


def test_a_failed_load_leaves_the_loaded_model_untouched(exported, tmp_path):
    current = load_model_file(exported.keras)
    before = current.predict_files(exported.images)[0]
    meta = zip_json(exported.keras, "tlcore.json")
    meta["classes"] = ["red", "blue"]
    with pytest.raises(TLError):
        load_model_file(rewrite_zip(exported.keras, tmp_path / "two.keras", {"tlcore.json": json.dumps(meta)}))
    assert current.classes == CLASSES
    assert np.array_equal(current.predict_files(exported.images)[0], before)


# Hostile files --------------------------------------------------------------------------------------

def test_lambda_keras_is_refused_and_its_code_never_runs(tmp_path):
    marker = str(tmp_path / "lambda-ran")
    inputs = keras.Input((SIZE, SIZE, 3))
    # Called once while the model is built; loading it must never call it again.
    outputs = keras.layers.Lambda(lambda x: (os.makedirs(marker, exist_ok=True), x)[1], name="sneaky")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(outputs)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(outputs)).save(tmp_path / "lambda.keras")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    os.rmdir(marker)
    refused(tmp_path / "lambda.keras", "'lambda.keras'", "Lambda", "'sneaky'", "Python code")
    assert not os.path.exists(marker)


def test_keras_naming_a_custom_class_is_refused(exported, tmp_path):
    config = zip_json(exported.keras, "config.json")
    layer = find_layer(config, "conv2")
    layer.update(module="evil.payload", class_name="Backdoor", registered_name="evil>Backdoor")
    bad = rewrite_zip(exported.keras, tmp_path / "custom.keras", {"config.json": json.dumps(config)})
    refused(bad, "'custom.keras'", "'Backdoor'", "'evil.payload'", "'conv2'")


def test_keras_naming_a_function_from_another_module_is_refused(exported, tmp_path):
    config = zip_json(exported.keras, "config.json")
    find_layer(config, "head_dense")["config"]["activation"] = {
        "module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}
    bad = rewrite_zip(exported.keras, tmp_path / "function.keras", {"config.json": json.dumps(config)})
    refused(bad, "'function.keras'", "'builtins'", "'head_dense'")


def test_legacy_full_model_h5_is_refused(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.save(tmp_path / "legacy.h5")
    refused(tmp_path / "legacy.h5", "'legacy.h5'", "legacy full-model", "can hold code")
    # The extension does not matter: the HDF5 content is recognised.
    shutil.copy(tmp_path / "legacy.h5", tmp_path / "disguised.keras")
    refused(tmp_path / "disguised.keras", "'disguised.keras'", "legacy full-model")


def test_weights_only_h5_is_explained(exported):
    refused(exported.run / "model.weights.h5", "'model.weights.h5'", "weights only", "--weights")


@pytest.mark.parametrize("name", ["model.pkl", "model.pth", "model.pt", "model.bin", "model.joblib",
                                  "model.keras", "model.tflite", "weights.h5", "model.txt"])
def test_pickles_are_refused_and_never_unpickled(tmp_path, name):
    marker = tmp_path / "pickle-ran"
    (tmp_path / name).write_bytes(pickle.dumps(Boom(marker), protocol=4))
    refused(tmp_path / name, f"{name!r}", "pickle", "can run code")
    assert not marker.exists()


def test_protocol_zero_pickle_is_refused_by_its_extension(tmp_path):
    marker = tmp_path / "pickle-ran"
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(Boom(marker), protocol=0))
    refused(tmp_path / "old.pkl", "'old.pkl'", "pickle")
    assert not marker.exists()


def test_pytorch_style_zip_is_refused_whatever_its_name(tmp_path):
    marker = tmp_path / "pickle-ran"
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Boom(marker), protocol=2))
        archive.writestr("archive/version", "3\n")
    refused(tmp_path / "model.keras", "'model.keras'", "pickle")
    assert not marker.exists()


def test_numpy_file_holding_pickles_is_refused(tmp_path):
    marker = tmp_path / "pickle-ran"
    np.save(tmp_path / "arrays.npy", np.array([Boom(marker)], dtype=object), allow_pickle=True)
    refused(tmp_path / "arrays.npy", "'arrays.npy'", "pickle")
    assert not marker.exists()
    np.save(tmp_path / "plain.npy", np.zeros(3))
    refused(tmp_path / "plain.npy", "'plain.npy'", "not a model")


@pytest.mark.parametrize("kind", ["not a zip", "no config", "duplicate", "outside"])
def test_damaged_or_odd_keras_archives_are_refused(exported, tmp_path, kind):
    path = tmp_path / "odd.keras"
    if kind == "not a zip":
        path.write_bytes(b"hello, this is not a model")
        expected = "not a .keras archive"
    elif kind == "no config":
        rewrite_zip(exported.keras, path, {"config.json": None})
        expected = "no config.json"
    else:
        shutil.copy(exported.keras, path)
        with zipfile.ZipFile(path, "a") as archive:
            if kind == "duplicate":
                with pytest.warns(UserWarning):  # zipfile warns about the duplicate name
                    archive.writestr("config.json", "{}")
            else:
                archive.writestr("assets/../../escape.txt", "{}")
        expected = "duplicate entries" if kind == "duplicate" else "outside the archive"
    refused(path, "'odd.keras'", expected)


def test_unknown_and_missing_files_list_the_accepted_kinds(tmp_path):
    (tmp_path / "model.pb").write_bytes(b"\x08\x07onnx")
    refused(tmp_path / "model.pb", "'model.pb'", ".keras", ".tflite", ".onnx", "run directory")
    # An ONNX file from elsewhere: ONNX Runtime never parses it in this process (tlcore.models.onnx_model).
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx")
    refused(tmp_path / "model.onnx", "'model.onnx' was not exported by this server")
    refused(tmp_path / "absent.keras", "does not exist")


# Backbone weights for training ----------------------------------------------------------------------

def tiny_backbone():
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Dense(4, name="proj")(keras.layers.GlobalAveragePooling2D()(inputs)))


def never_built():
    pytest.fail("the backbone was built before its weights file was checked")


def test_weights_file_for_training_still_loads_weights_only_h5(tmp_path, seed):
    source = tiny_backbone()
    source.save_weights(tmp_path / "backbone.weights.h5")
    target = load_weights_file(tiny_backbone, tmp_path / "backbone.weights.h5", "tiny")
    for a, b in zip(source.get_weights(), target.get_weights()):
        assert np.array_equal(a, b)


def test_weights_file_for_training_refuses_a_full_model_h5(tmp_path):
    tiny_backbone().save(tmp_path / "full.h5")
    with pytest.raises(TLError, match="'full.h5' is a legacy full-model .h5 file"):
        load_weights_file(never_built, tmp_path / "full.h5", "tiny")


@pytest.mark.parametrize("name", ["backbone.weights.h5", "backbone.pth"])
def test_weights_file_for_training_refuses_pickles(tmp_path, name):
    marker = tmp_path / "pickle-ran"
    (tmp_path / name).write_bytes(pickle.dumps(Boom(marker)))
    with pytest.raises(TLError, match="pickle files can run code"):
        load_weights_file(never_built, tmp_path / name, "tiny")
    assert not marker.exists()


# Command line ---------------------------------------------------------------------------------------

def test_cli_predict_with_a_keras_file_matches_the_run(exported):
    code, stdout, stderr = run_cli(["predict", exported.keras, *exported.images, "--json", "--top-k", "3"])
    assert code == 0, stderr
    from_file = last_json(stdout)
    code, stdout, stderr = run_cli(["predict", exported.run, *exported.images, "--json", "--top-k", "3"])
    assert code == 0, stderr
    from_run = last_json(stdout)
    assert from_file["classes"] == from_run["classes"] == CLASSES
    assert [p["label"] for p in from_file["predictions"]] == [p["label"] for p in from_run["predictions"]]
    assert np.allclose([p["confidence"] for p in from_file["predictions"]],
                       [p["confidence"] for p in from_run["predictions"]], atol=1e-5)


def test_cli_refuses_hostile_model_files_with_one_line(exported, tmp_path):
    marker = tmp_path / "pickle-ran"
    (tmp_path / "model.pth").write_bytes(pickle.dumps(Boom(marker)))
    inputs = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Lambda(lambda x: x * 2, name="doubler")(inputs)
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(out))).save(tmp_path / "lam.keras")
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs))).save(tmp_path / "old.h5")
    image = exported.images[0]
    assert_user_error(*run_cli(["predict", tmp_path / "lam.keras", image]), "'lam.keras'", "Lambda")
    assert_user_error(*run_cli(["predict", tmp_path / "old.h5", image]), "'old.h5'", "legacy full-model")
    assert_user_error(*run_cli(["predict", tmp_path / "model.pth", image]), "'model.pth'", "pickle")
    assert_user_error(*run_cli(["evaluate", tmp_path / "model.pth", exported.root / "data"]), "pickle")
    assert not marker.exists()


def test_weights_from_another_architecture_are_refused(exported, tmp_path):
    # The weights of another (tiny) network in place of the exported ones.
    other = tmp_path / "other.weights.h5"
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(len(CLASSES))(pooled)).save_weights(other)
    bad = rewrite_zip(exported.keras, tmp_path / "swapped.keras", {"model.weights.h5": other.read_bytes()})
    refused(bad, "'swapped.keras'", "do not fit", "3 classes")


def test_an_h5_named_file_that_is_not_hdf5_is_not_a_model(tmp_path):
    (tmp_path / "notes.h5").write_text("just text")
    refused(tmp_path / "notes.h5", "'notes.h5'", "not a model file")


# Opened in a worker first (tlcore.models.model_check) ------------------------------------------------------------
# Two tests start the real worker, `python -m tlcore check-model`: forked from the test process's warm worker, and
# in a process of its own (which imports TensorFlow: seconds); the hang, runaway memory and crash are simulated by
# replacing the worker's command line, so they check the server-side limits in a second.

def spawned_workers(monkeypatch) -> list:
    """Every worker model_check starts (a Popen, or a warm worker's Forked), recorded so a test can see how it
    ended."""
    procs, real = [], model_check._start

    def record(*args, **kwargs):
        procs.append(real(*args, **kwargs))
        return procs[-1]

    monkeypatch.setattr(model_check, "_start", record)
    return procs


def fake_worker(monkeypatch, code: str) -> list:
    """Run ``python -c code`` in place of the worker (a process of its own); the processes started."""
    monkeypatch.setenv(warm.ENV, "0")
    monkeypatch.setattr(model_check, "_worker_argv", lambda path, mb, seconds: [sys.executable, "-c", code])
    return spawned_workers(monkeypatch)


@pytest.mark.slow  # a real worker process, which imports TensorFlow
def test_a_foreign_model_passes_the_worker_then_loads_and_is_checked_once(exported, tmp_path, monkeypatch):
    # A plain .keras made elsewhere (no Transfer Lab metadata, labels beside it): this test's cache never saw it.
    model = rewrite_zip(exported.keras, tmp_path / "colleague.keras", {"tlcore.json": None})
    shutil.copy(exported.keras.with_name("labels.txt"), tmp_path / "labels.txt")
    assert not is_trusted(model)
    _wait(warm.ready, "the warm worker's start")  # the check is forked from it: no TensorFlow import
    procs = spawned_workers(monkeypatch)
    ensure_checked(model)
    assert len(procs) == 1 and isinstance(procs[0], warm.Forked) and procs[0].returncode == 0
    assert is_trusted(model)
    ensure_checked(model)  # recorded: no second worker
    assert len(procs) == 1
    probs, kept, _ = load_model_file(model).predict_files(exported.images)
    assert kept == list(range(len(exported.images))) and np.allclose(probs, exported.probs, atol=1e-5)


@pytest.mark.slow  # a real worker process, which imports TensorFlow
def test_a_run_whose_config_makes_it_allocate_without_bound_is_refused_at_the_memory_limit(tmp_path, monkeypatch):
    import tlcore.models.run as run_mod
    from tlcore.backbones.registry import create_backbone
    from tlcore.models.run import build_run_model, save_run

    monkeypatch.setattr(run_mod, "create_backbone", create_backbone)  # the real network, as the worker builds it
    config = {"backbone": "mobilenet_v3_small", "input_size": 32, "train": {"weights": None, "dropout": 0.2}}
    built = build_run_model({**config, "classes": ["a", "b"]}, "test")
    run = save_run(tmp_path / "run", built.model, ["a", "b"], config, {})
    # A project's config.json asking for 20000 x 20000 pixels: the model builds, one prediction would need
    # gigabytes (in the server, every user's page would go down with it).
    (run / "config.json").write_text(json.dumps({**config, "classes": ["a", "b"], "input_size": 20000}))
    assert not is_trusted(run)
    monkeypatch.setenv("TLCORE_MODEL_CHECK_MB", "1500")
    monkeypatch.setenv(warm.ENV, "0")  # the worker as a process of its own: `python -m tlcore check-model`
    procs = spawned_workers(monkeypatch)
    with pytest.raises(TLError) as info:
        ensure_checked(run)
    assert isinstance(procs[0], subprocess.Popen) and procs[0].args[1:4] == ["-m", "tlcore", "check-model"]
    assert str(info.value) == (f"{str(run)!r} is refused: opening it in the process that checks model files "
                               "needed more than 1500 MB of memory")
    assert not is_trusted(run)


def test_a_worker_that_hangs_is_killed_at_the_time_limit(monkeypatch, tmp_path):
    model = tmp_path / "slow.keras"
    model.write_bytes(b"PK whatever")
    monkeypatch.setenv("TLCORE_MODEL_CHECK_SECONDS", "1")
    procs = fake_worker(monkeypatch, "import time\nwhile True: time.sleep(60)")
    with pytest.raises(TLError) as info:
        ensure_checked(model)
    assert str(info.value) == ("'slow.keras' is refused: opening it in the process that checks model files took "
                               "more than 1 s")
    assert procs[0].returncode == -signal.SIGKILL  # killed, and reaped
    assert not is_trusted(model)


def test_a_worker_whose_memory_grows_without_bound_is_killed_at_the_memory_limit(monkeypatch, tmp_path):
    model = tmp_path / "greedy.tflite"
    model.write_bytes(b"TFL3 whatever")
    monkeypatch.setenv("TLCORE_MODEL_CHECK_MB", "200")
    # Written bytes (resident, unlike a lazily zeroed buffer); capped at 4 GB should the watch ever miss it.
    procs = fake_worker(monkeypatch, "import resource\nresource.setrlimit(resource.RLIMIT_DATA, (4 << 30, 4 << 30))\n"
                                     "held = []\nwhile True: held.append(b'x' * (8 << 20))")
    with pytest.raises(TLError) as info:
        ensure_checked(model)
    assert str(info.value) == ("'greedy.tflite' is refused: opening it in the process that checks model files "
                               "needed more than 200 MB of memory")
    assert procs[0].returncode == -signal.SIGKILL


def test_a_worker_that_crashes_is_a_refusal_and_this_process_carries_on(monkeypatch, tmp_path):
    model = tmp_path / "crash.tflite"
    model.write_bytes(b"TFL3 whatever")
    fake_worker(monkeypatch, "import os\nos.abort()")
    with pytest.raises(TLError) as info:
        ensure_checked(model)
    assert str(info.value) == ("'crash.tflite' is refused: it crashed the process that checks model files "
                               "(SIGABRT)")
    assert not is_trusted(model)
    # What the worker says is passed on as it is; no verdict, or a pass from a worker that then fails, is no pass.
    fake_worker(monkeypatch, "print('{\"ok\": false, \"error\": \"one clear sentence\"}')")
    with pytest.raises(TLError, match="^one clear sentence$"):
        ensure_checked(model)
    fake_worker(monkeypatch, "print('all good, honestly')")
    with pytest.raises(TLError, match=r"^'crash.tflite' is refused: the process that checks model files ended "
                                      r"without passing it \(exit 0\)$"):
        ensure_checked(model)
    fake_worker(monkeypatch, "import sys\nprint('{\"ok\": true}')\nsys.exit(3)")  # a pass must also end well
    with pytest.raises(TLError, match=r"ended without passing it \(exit 3\)"):
        ensure_checked(model)
    assert not is_trusted(model)


@pytest.mark.parametrize("name, unit", [("TLCORE_MODEL_CHECK_SECONDS", "seconds"), ("TLCORE_MODEL_CHECK_MB", "megabytes")])
def test_a_bad_limit_setting_is_one_sentence(monkeypatch, tmp_path, name, unit):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3")
    monkeypatch.setenv(name, "soon")
    with pytest.raises(TLError, match=f"^{name}='soon' is not allowed; set it to a number of {unit} above 0$"):
        ensure_checked(model)


@pytest.mark.parametrize("module", ["tlcore.models.classifier", "tlcore.model"])
def test_files_saved_before_and_after_the_core_was_split_into_layers_name_standardize_by_either_module(module):
    # A .keras exported before the move names the flat module; both are Transfer Lab's own class.
    layer = {"class_name": "Standardize", "module": module, "registered_name": "tlcore>Standardize", "config": {}}
    scan_keras_config({"class_name": "Functional", "module": "keras", "config": {"layers": [layer]}})


def test_a_registered_name_from_another_module_is_still_refused():
    layer = {"class_name": "Standardize", "module": "evil.model", "registered_name": "tlcore>Standardize", "config": {}}
    with pytest.raises(TLError, match="evil.model"):
        scan_keras_config({"class_name": "Functional", "module": "keras", "config": {"layers": [layer]}})


def test_the_check_model_command_refuses_in_one_sentence(tmp_path):
    # The worker's own command, run as the dashboard runs it (forked from the warm worker), but read by a person.
    from tlcore.io.paths import tlcore_environment

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3 not a model at all")
    (tmp_path / "labels.txt").write_text("a\nb\n", encoding="utf-8")
    folder = tmp_path / "worker"
    folder.mkdir()
    _wait(warm.ready, "the warm worker's start")
    with open(folder / "stdout.log", "wb") as out, open(folder / "stderr.log", "wb") as err:
        pid = warm.spawn(["check-model", str(bad)], tlcore_environment(), folder, out.fileno(), err.fileno())
    assert pid is not None
    assert warm.Forked(pid, folder).wait(timeout=120) == 2
    lines = (folder / "stderr.log").read_text(encoding="utf-8").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: '") and "bad.tflite' is not a TFLite model" in lines[0]
    assert (folder / "stdout.log").read_text(encoding="utf-8") == ""
