"""The Predict page's model-file upload: a refused file shows one error and changes nothing; a Transfer Lab
.keras export becomes the model in use. Hostile files are generated here."""
from __future__ import annotations

import os
import pickle
import zipfile

import keras
import pytest

from tests.ui.conftest import open_page, shown
from tests.ui.test_pages import png
import tlcore.io.model_safety as model_safety
import tlcore.models.model_files as model_files
from tlcore.export.formats import export_formats
from tlcore.lab.workspace import Workspace


class Boom:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture
def lambda_keras(tmp_path) -> bytes:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda v: v * 2.0, name="doubler")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    return (tmp_path / "lambda.keras").read_bytes()


def upload_model(at, name: str, data: bytes):
    at.file_uploader(key="model_file").set_value((name, data, "application/octet-stream")).run()
    return at


def errors(at) -> list[str]:
    return [shown(e.value) for e in at.error]


def test_a_lambda_keras_upload_shows_one_error_and_keeps_the_run_model(trained, lambda_keras):
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    upload_model(at, "lambda.keras", lambda_keras)
    assert not at.exception
    (message,) = errors(at)
    assert "'lambda.keras'" in message and "Lambda" in message and "'doubler'" in message
    # Nothing was added (earlier tests may have exported TFLite files of this shared run: they stay listed).
    assert at.radio[0].options[0] == "Keras model (the run itself)"
    assert not [o for o in at.radio[0].options if o.startswith("Uploaded")]
    # The run's own model is still the one in use.
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    assert not at.exception
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)


def test_a_pickle_upload_is_refused_without_running_it(trained, tmp_path):
    sid, _ = trained
    marker = tmp_path / "pickle-ran"
    at = open_page("pages/6_Predict.py", sid)
    upload_model(at, "model.pth", pickle.dumps(Boom(marker)))
    assert not at.exception
    (message,) = errors(at)
    assert "'model.pth'" in message and "pickle" in message
    assert not marker.exists()


def test_an_exported_keras_becomes_the_model_and_survives_a_refused_upload(trained, lambda_keras, tmp_path):
    sid, job = trained
    export_formats(job / "run", ["keras"], tmp_path / "mine.keras")
    at = open_page("pages/6_Predict.py", sid)
    upload_model(at, "mine.keras", (tmp_path / "mine.keras").read_bytes())
    assert not at.exception and errors(at) == []
    assert at.radio[0].value == "uploaded"
    assert at.radio[0].options[-1] == "Uploaded mine.keras"
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)
    # A refused file afterwards: one error, the uploaded model stays chosen and still predicts.
    upload_model(at, "lambda.keras", lambda_keras)
    assert not at.exception
    assert len(errors(at)) == 1 and "Lambda" in errors(at)[0]
    assert at.radio[0].value == "uploaded"
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)


def test_a_model_file_works_without_any_trained_run(trained, sid, tmp_path):
    _, job = trained
    export_formats(job / "run", ["keras"], tmp_path / "brought.keras")  # as if from a colleague
    at = open_page("pages/6_Predict.py", sid)  # a fresh session: no run of its own
    assert not at.exception
    assert any("No finished training yet" in shown(w.value) for w in at.warning)
    assert not at.radio  # nothing to choose yet
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    assert any("upload one under \u201cUse a model file\u201d above" in i.value for i in at.info)
    upload_model(at, "brought.keras", (tmp_path / "brought.keras").read_bytes())
    assert not at.exception and errors(at) == []
    assert at.radio[0].options == ["Uploaded brought.keras"] and at.radio[0].value == "uploaded"
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)


@pytest.fixture
def bomb_keras(tmp_path) -> bytes:
    """A plain Keras classifier whose weights file declares a 13 GB tensor in 16 KB (a decompression bomb)."""
    import h5py

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as archive:
        weights = tmp_path / "bomb.weights.h5"
        weights.write_bytes(archive.read("model.weights.h5"))
        with h5py.File(weights, "a") as f:
            (kernel,) = [name for name in _datasets(f) if f[name].shape == (3, 2)]
            group, key = kernel.rsplit("/", 1)
            del f[kernel]
            f[group].create_dataset(key, shape=(60000, 60000), dtype="<f4", chunks=(1000, 1000),
                                    compression="gzip", fillvalue=0.0)
        with zipfile.ZipFile(tmp_path / "bomb.keras", "w") as out:
            for info in archive.infolist():
                if info.filename != "model.weights.h5":
                    out.writestr(info, archive.read(info.filename))
            out.write(weights, "model.weights.h5")
            out.writestr("labels.txt", "red\nblue\n")
    return (tmp_path / "bomb.keras").read_bytes()


def _datasets(f) -> list[str]:
    names = []
    f.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") else None)
    return names


def test_a_hostile_model_upload_is_opened_only_in_a_worker_and_refused_with_one_sentence(trained, bomb_keras,
                                                                                         monkeypatch):
    sid, _ = trained

    parsed = []

    def parsed_here(*args, **kwargs):
        parsed.append(args)  # recorded: the loaders turn any exception into their own refusal
        raise RuntimeError("a model file from outside was parsed in the server process")

    # The dashboard's own process must never hand this file to Keras, h5py or LiteRT: only the worker may.
    monkeypatch.setattr(keras.saving, "load_model", parsed_here)
    monkeypatch.setattr(model_files, "_load_with_metadata", parsed_here)
    monkeypatch.setattr(model_safety, "_h5_has_model", parsed_here)
    at = open_page("pages/6_Predict.py", sid)
    upload_model(at, "bomb.keras", bomb_keras)
    assert not at.exception
    (message,) = errors(at)
    assert message.startswith("'bomb.keras' cannot be loaded as a Keras model") and "\n" not in message
    assert parsed == []
    assert not [o for o in at.radio[0].options if o.startswith("Uploaded")]
    assert not list((Workspace.for_session(sid).root / "models").glob("*/bomb.keras"))
    # The server carries on: the run's own model still predicts.
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    assert not at.exception
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)


def test_a_model_upload_over_the_session_disk_cap_is_refused_before_it_is_written(sid, workspace, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "0.01")
    at = open_page("pages/6_Predict.py", sid)
    upload_model(at, "big.keras", bytes(20_000))
    assert not at.exception
    (message,) = errors(at)
    assert message.startswith("big.keras: it would bring this session to ") and "over the limit of 0.01 MB" in message
    assert not (workspace.root / "models").exists()
