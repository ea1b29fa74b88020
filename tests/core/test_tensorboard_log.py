"""A run's TensorBoard logs, read back as TensorBoard reads them: both phases' epochs on one axis (a fine-tune
of a saved run continuing its log), the HParams session with the settings, the validation confusion matrix
as a PNG, the embedding projector's files; a part that cannot be written is a warning, never a failed run.

One head-only run (random-weight Lite0 at 64 px, tiny generated photos) and one fine-tune of it serve every
test of real training; the rest calls the writer on a run's own numbers."""
from __future__ import annotations

import io
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.projector import ProjectorConfig

import tlcore.training.pipeline as train_mod
import tlcore.training.tensorboard_log as tb_mod
from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.data.images import load_image
from tlcore.models.run_files import TENSORBOARD_DIR, read_run_json
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import fine_tune, train
from tlcore.training.tensorboard_log import PROJECTOR_FILES, RunLog, confusion_image, write_run_logs

CLASSES = ("red", "green", "blue")
HEAD = TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=2, lr=3e-3, batch_size=8, split=(0.5, 0.25, 0.25),
                   seed=3)
# A high fine-tuning rate, so that one epoch visibly moves the backbone's features.
TUNE = TrainConfig(fine_tune_layers=2, fine_tune_epochs=1, fine_tune_lr=1e-3, batch_size=8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"head": run folder, "tuned": its fine-tune, "summaries": theirs, "logs": what training handed the
    writer, by run}``. The head run's confusion matrix fails (a full disk): the rest of its logs is written."""
    root = tmp_path_factory.mktemp("tensorboard")
    handed = {}

    def spy(folder, log, *args, **kwargs):
        handed[log.name.split("/")[0]] = log
        return write_run_logs(folder, log, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
        mp.setattr(train_mod, "write_run_logs", spy)
        data = make_image_folder(root / "data", n_per_class=6, classes=CLASSES)
        head, tuned = root / "head" / "run", root / "tuned" / "run"
        with pytest.MonkeyPatch.context() as broken:
            broken.setattr(tb_mod, "confusion_image", full_disk)
            summaries = {"head": train(data, HEAD, out=head)}
        summaries["tuned"] = fine_tune(head, TUNE, out=tuned)
        yield {"head": head, "tuned": tuned, "summaries": summaries, "logs": handed}


def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")


def accumulator(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def series(folder: Path, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of a scalar as TensorBoard stores tf.summary's (a tensor per step)."""
    import tensorflow as tf

    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator(folder).Tensors(tag)]


def rates(tb: Path) -> list[tuple[int, float]]:
    """The logged learning rate of each epoch (float32, as TensorBoard keeps it), to 7 digits."""
    return [(step, float(f"{value:.7g}")) for step, value in series(tb / "train", "epoch_learning_rate")]


def logs(run: Path) -> Path:
    return run / TENSORBOARD_DIR


def test_both_phases_share_one_epoch_axis_as_the_history_numbers_it(runs):
    history = read_run_json(runs["tuned"], "metrics.json")["history"]
    assert [h["phase"] for h in history] == ["head", "head", "fine_tune"]
    tb = logs(runs["tuned"])
    for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy")):
        for folder, name in ((tb / "train", key), (tb / "validation", f"val_{key}")):
            got = series(folder, tag)
            assert [step for step, _ in got] == [h["epoch"] for h in history] == [1, 2, 3]
            np.testing.assert_allclose([v for _, v in got], [h[name] for h in history], rtol=1e-6)
    # Each phase at its own rate: the head's, then fine-tuning's.
    assert rates(tb) == [(1, 3e-3), (2, 3e-3), (3, 1e-3)]
    phases = accumulator(tb).Tensors("phases")[-1]
    assert phases.step == 3
    text = phases.tensor_proto.string_val[0].decode()
    assert "| head | 1–2 |" in text and "| fine_tune | 3 |" in text


def test_fine_tuning_a_saved_run_continues_its_log_and_leaves_it_untouched(runs):
    head, tuned = logs(runs["head"]), logs(runs["tuned"])
    assert [s for s, _ in series(head / "train", "epoch_loss")] == [1, 2]  # the parent is as it was
    for split in ("train", "validation"):
        parent = sorted(p.name for p in (head / split).iterdir())
        child = sorted(p.name for p in (tuned / split).iterdir())
        assert len(parent) == 1 and len(child) == 2 and child[0] == parent[0]  # copied, then the new epochs
        assert (tuned / split / parent[0]).read_bytes() == (head / split / parent[0]).read_bytes()
    # The earlier final scores stay at the head's last epoch; the new ones follow.
    assert [s for s, _ in series(tuned, "final/val_accuracy")] == [2, 3]
    assert [e.step for e in accumulator(tuned).Tensors("confusion_matrix/validation")] == [3]  # the head's failed
    # One HParams session, the fine-tune's own (TensorBoard would keep the first one it read).
    assert len(accumulator(tuned).Tensors(hparams_metadata.SESSION_START_INFO_TAG)) == 1
    # No file carries the machine's name.
    names = [p.name for p in tuned.rglob("events.out.tfevents.*")]
    assert names and all(".tlcore." in n and os.uname().nodename not in n for n in names)


def hparams_of(tb: Path) -> dict:
    content = accumulator(tb).SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}, info


def test_the_hparams_session_holds_the_settings_and_the_final_scores(runs):
    for name in ("head", "tuned"):
        run = runs[name]
        config, metrics = read_run_json(run, "config.json"), read_run_json(run, "metrics.json")
        values, info = hparams_of(logs(run))
        train_settings = config["train"]
        assert values["backbone"] == "efficientnet_lite0" and values["weights"] == "none"
        assert values["input_size"] == SMALL_INPUT
        for key in ("lr", "fine_tune_lr", "epochs", "fine_tune_epochs", "fine_tune_layers", "batch_size", "augment",
                    "augment_strength", "dropout", "seed", "class_weights", "early_stopping"):
            assert values[key] == train_settings[key], key
        assert values["split"] == "0.5/0.25/0.25" and values["clip_norm"] == "none"
        assert values["classes"] == 3 and values["fine_tuned_layers"] == len(metrics.get("fine_tuned_layers", []))
        assert info.group_name == f"{name}/run"  # one session per run folder, never averaged with a twin
        last = metrics["history"][-1]["epoch"]
        for split in ("val", "test"):
            step, value = series(logs(run), f"final/{split}_accuracy")[-1]
            assert step == last and value == pytest.approx(metrics[f"{split}_accuracy"])
    assert hparams_of(logs(runs["tuned"]))[0]["fine_tuned_layers"] == 2


def test_the_confusion_matrix_is_a_png_of_the_validation_photos_per_class(runs):
    metrics = read_run_json(runs["tuned"], "metrics.json")
    image = accumulator(logs(runs["tuned"])).Tensors("confusion_matrix/validation")[-1]
    width, height, png = image.tensor_proto.string_val
    assert png.startswith(b"\x89PNG")
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert decoded.shape[:2] == (int(height), int(width))
    matrix = metrics["val"]["confusion"]
    assert len(matrix) == len(CLASSES) and sum(map(sum, matrix)) == metrics["n_val"]
    classes = read_run_json(runs["tuned"], "config.json")["classes"]
    assert sorted(classes) == sorted(CLASSES)
    np.testing.assert_array_equal(decoded, confusion_image(matrix, classes))


def test_the_confusion_image_has_a_cell_per_pair_of_classes():
    def cells(k):
        image = confusion_image(np.eye(k, dtype=int) * 3, [f"class {i}" for i in range(k)])
        # Along the bottom row of cells, the grid's grey lines border each cell.
        y = image.shape[0] - tb_mod._PAD - tb_mod._CELL // 4
        grey = np.all(image[y] == (200, 200, 200), axis=-1)
        return int(np.sum(grey[1:] & ~grey[:-1]))

    assert [cells(k) for k in (2, 3, 5)] == [3, 4, 6]  # a border before each cell and after the last


def projector_of(tb: Path) -> ProjectorConfig:
    return text_format.Parse((tb / PROJECTOR_FILES["config"]).read_text(encoding="utf-8"), ProjectorConfig())


@pytest.mark.parametrize("name", ["head", "tuned"])
def test_the_projector_shows_every_photo_with_its_label_and_thumbnail(runs, name):
    tb = logs(runs[name])
    samples = read_run_json(runs[name], "samples.json")
    (embedding,) = projector_of(tb).embeddings
    for path in (embedding.tensor_path, embedding.metadata_path, embedding.sprite.image_path):
        assert not Path(path).is_absolute() and (tb / path).resolve().is_relative_to(tb.resolve())
        assert (tb / path).is_file()
    tensor = np.loadtxt(tb / embedding.tensor_path, delimiter="\t", ndmin=2)
    assert tensor.shape == tuple(embedding.tensor_shape) == (len(samples), 1280)
    rows = (tb / embedding.metadata_path).read_text(encoding="utf-8").splitlines()
    assert rows[0] == "label\tsplit" and rows[1:] == [f"{s['label']}\t{s['split']}" for s in samples]
    side = embedding.sprite.single_image_dim
    assert list(side) == [64, 64]
    columns = math.ceil(math.sqrt(len(samples)))
    assert Image.open(tb / embedding.sprite.image_path).size == (columns * 64, math.ceil(len(samples) / columns) * 64)


def test_a_head_only_run_projects_its_cached_features_and_a_fine_tuned_one_its_backbones(runs):
    head, tuned = runs["logs"]["head"], runs["logs"]["tuned"]
    projected = {name: np.loadtxt(logs(runs[name]) / PROJECTOR_FILES["tensor"], delimiter="\t")
                 for name in ("head", "tuned")}
    assert head.embed is None and tuned.features is None
    np.testing.assert_allclose(projected["head"], head.features, rtol=1e-4, atol=1e-6)
    pixels = np.stack([load_image(path, SMALL_INPUT) for path, _, _ in tuned.photos]).astype(np.float32)
    np.testing.assert_allclose(projected["tuned"], np.asarray(tuned.embed(pixels)), rtol=1e-4, atol=1e-5)
    assert not np.allclose(projected["head"], projected["tuned"], rtol=1e-2)  # fine-tuning moved the features


def test_a_part_that_cannot_be_written_is_a_warning_and_the_run_is_saved(runs):
    head, summary = runs["head"], runs["summaries"]["head"]
    (warning,) = [w for w in summary["warnings"] if w["code"] == "tensorboard_incomplete"]
    assert warning["values"] == {"parts": "images", "error": "OSError: [Errno 28] No space left on device"}
    assert warning["message"] == ("the run is saved, but its TensorBoard logs lack the images (OSError: [Errno 28] "
                                  "No space left on device)")
    assert read_run_json(head, "metrics.json")["warnings"] == summary["warnings"]
    assert not accumulator(logs(head)).Tags()["tensors"].count("confusion_matrix/validation")
    # What came before the failure in the same file, and every other part, is written.
    assert [s for s, _ in series(logs(head), "final/val_accuracy")] == [2]
    assert (logs(head) / PROJECTOR_FILES["config"]).is_file() and hparams_of(logs(head))
    assert all(w["code"] != "tensorboard_incomplete" for w in runs["summaries"]["tuned"]["warnings"])


# The writer alone, on numbers of its own ----------------------------------------------------------------

def small_log(tmp_path, **changes) -> RunLog:
    photos = []
    for i, label in enumerate(("a", "b") * 3):
        path = tmp_path / "photos" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (20, 20), (40 * i, 100, 200)).save(path)
        photos.append((str(path), label, "train" if i < 4 else "val"))
    history = [{"epoch": 1, "phase": "head", "loss": 0.9, "accuracy": 0.5, "val_loss": 0.8, "val_accuracy": 0.5},
               {"epoch": 2, "phase": "fine_tune", "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 1.0}]
    fields = dict(name="job/run", history=history, settings={"lr": 1e-3, "fine_tune_lr": 1e-5, "weights": "/secret/w.h5"},
                  input_size=32, classes=["a", "b"], metrics={"val": {"accuracy": 1.0, "confusion": [[1, 0], [0, 1]]},
                                                              "test": {"accuracy": None, "confusion": []}},
                  photos=photos, features=np.arange(12.0).reshape(6, 2))
    return RunLog(**{**fields, **changes})


def test_a_run_saved_without_logs_gets_its_whole_history_at_the_rates_it_had(tmp_path):
    history = small_log(tmp_path).history + [{"epoch": 3, "phase": "fine_tune", "loss": 0.4, "accuracy": 0.9}]
    log = small_log(tmp_path, history=history, new_from=3, earlier_fine_tune_lr=2e-5)
    assert write_run_logs(tmp_path / "out", log, parent=tmp_path / "no-logs") == []
    # Epoch 2 was the parent's fine-tuning (at its own rate), epoch 3 this one's.
    assert rates(tmp_path / "out") == [(1, 1e-3), (2, 2e-5), (3, 1e-5)]
    assert [s for s, _ in series(tmp_path / "out" / "validation", "epoch_loss")] == [1, 2]  # 3 had no validation
    values, _ = hparams_of(tmp_path / "out")
    assert values["weights"] == "file w.h5"  # a weights file by its name: no path leaves the machine


def test_only_the_parents_own_event_files_are_copied_never_a_link(tmp_path):
    parent = tmp_path / "parent"
    first = small_log(tmp_path, history=small_log(tmp_path).history[:1])
    assert write_run_logs(parent, first) == []
    # What a project from someone else might hold beside its own files: other names, links out of the folder.
    (parent / "train" / "events.out.tfevents.1700000000.tlcore.9.evil.v2").write_bytes(b"not ours")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "events.out.tfevents.1700000000.tlcore.5.epochs.v2").write_bytes(b"private")
    (parent / "events.out.tfevents.1700000000.tlcore.7.run.v2").symlink_to(
        secret / "events.out.tfevents.1700000000.tlcore.5.epochs.v2")
    shutil.rmtree(parent / "validation")
    (parent / "validation").symlink_to(secret)
    own = {p.relative_to(parent): p.read_bytes() for p in parent.rglob("events.*") if not p.is_symlink()
           and (".run." in p.name or ".epochs." in p.name)}
    assert len(own) == 2  # the head's epochs in train/, its scores

    out = tmp_path / "out"
    assert write_run_logs(out, small_log(tmp_path, new_from=2), parent=parent) == []
    written = {p.relative_to(out): p.read_bytes() for p in out.rglob("events.*")}
    assert all(written[rel] == data for rel, data in own.items())  # the parent's own files, as they were
    assert not [rel for rel, data in written.items() if data in (b"not ours", b"private")]
    assert not any(p.is_symlink() for p in out.rglob("*"))
    # The parent had epochs: only the new one follows them.
    assert [s for s, _ in series(out / "train", "epoch_loss")] == [1, 2]
    assert [s for s, _ in series(out / "validation", "epoch_loss")] == [2]
    assert len(accumulator(out).Tensors(hparams_metadata.SESSION_START_INFO_TAG)) == 1  # its own session only


def test_many_photos_are_an_even_sample_and_a_missing_tensorboard_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(tb_mod, "MAX_PROJECTED", 4)
    out = tmp_path / "out"
    assert write_run_logs(out, small_log(tmp_path)) == []
    rows = (out / PROJECTOR_FILES["metadata"]).read_text(encoding="utf-8").splitlines()
    assert rows == ["label\tsplit", "a\ttrain", "a\ttrain", "b\ttrain", "b\tval"]  # photos 0, 2, 3, 5
    np.testing.assert_array_equal(np.loadtxt(out / PROJECTOR_FILES["tensor"], delimiter="\t"),
                                  np.arange(12.0).reshape(6, 2)[[0, 2, 3, 5]])

    monkeypatch.setitem(sys.modules, "tensorboard.plugins.hparams.api", None)  # as if the package were missing
    (warning,) = write_run_logs(tmp_path / "other", small_log(tmp_path))
    assert warning["code"] == "tensorboard_incomplete"
    assert warning["values"]["parts"] == "scalars, hparams, images, projector"


def test_the_log_folder_beside_the_run_is_removed_when_it_was_not_moved_in(tmp_path):
    with tb_mod.staged_logs(tmp_path / "runs" / "mine") as folder:
        assert folder.parent == tmp_path / "runs" and folder.name.startswith(".mine.tensorboard-")
        (folder / "x").write_text("x")
    assert not folder.exists()
