"""`python -m tlcore export`, and `predict` / `evaluate` on an exported .tflite, in-process via tlcore.cli.main.

The run here uses the small stand-in backbone of test_finetune (named and sized like Lite0), installed
in ``tlcore.models.run`` for the whole module, so that each conversion takes about a second; the real
backbone's exports are tested in test_export.py.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.core.conftest import standin_export_run
from tests.core.test_cli import assert_user_error, last_json, read_progress, run_cli
from tests.core.test_events import assert_each_phase_announced, phase_story
from tests.core.test_export import CLASSES, N_HELD_OUT, SIZE, FailingConverter


@pytest.fixture(scope="module")
def cli(run_standin, tmp_path_factory):
    """A run, labelled photos to verify on (one unreadable), and `export --json` of it to tflite-float32."""
    with standin_export_run(tmp_path_factory, "cli-export") as (root, built):
        verify = make_image_folder(root / "verify", n_per_class=2, classes=CLASSES, size=40, seed=5)
        (verify / "red" / "notes.txt").write_text("not a photo")
        model = root / "exports" / "model.tflite"
        events = root / "events.jsonl"
        code, stdout, stderr = run_cli(["export", built.run, "--format", "tflite-float32", "--out", model,
                                        "--verify", verify, "--json", "--progress", events])
    return SimpleNamespace(**vars(built), root=root, verify=verify, model=model, events=events,
                           code=code, stdout=stdout, stderr=stderr,
                           images=sorted(str(p) for p in verify.rglob("*.png")))


def test_export_one_format_json(cli):
    assert cli.code == 0, cli.stderr
    assert cli.stderr == ""  # --json is quiet
    result = last_json(cli.stdout)
    assert result["format"] == "tflite-float32"
    assert result["path"] == str(cli.model) and cli.model.is_file()
    assert result["size_bytes"] == cli.model.stat().st_size
    assert result["input"] == {"shape": [1, SIZE, SIZE, 3], "dtype": "float32", "pixels": "RGB 0..255"}
    # The verification figures, at the top level for one format.
    assert result["keras_accuracy"] == result["verification"]["keras_accuracy"]
    assert 0 <= result["keras_accuracy"] <= 1
    assert result["exported_accuracy"] == result["tflite_accuracy"] == result["keras_accuracy"]
    assert result["agreement"] == 1.0
    assert result["latency_ms"] > 0
    assert result["warnings"] == [] and result["stopped"] is False
    assert [e["path"] for e in result["exports"]] == [str(cli.model)]
    data = result["verification_data"]
    assert data["source"] == str(cli.verify) and data["n"] == len(cli.images)
    assert [s["path"] for s in data["skipped"]] == [str(cli.verify / "red" / "notes.txt")]
    assert result["verification"]["n"] == len(cli.images)


def test_export_onnx_alone_gives_its_verification_at_the_top_level(cli, tmp_path):
    """One format: its figures at the top level, the exported file's accuracy as `exported_accuracy` (the real
    Lite0 graph's ONNX export is tested in test_onnx_export.py)."""
    model = tmp_path / "model.onnx"
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "onnx", "--out", model, "--verify-held-out",
                                    "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert result["format"] == "onnx" and result["path"] == str(model)
    assert result["input"]["shape"] == [None, SIZE, SIZE, 3]
    assert result["exported_accuracy"] == result["verification"]["exported_accuracy"] == result["keras_accuracy"]
    assert "tflite_accuracy" not in result and result["agreement"] == 1.0 and result["latency_ms"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "model.onnx"]


def test_export_writes_labels_beside_the_file(cli):
    assert cli.code == 0, cli.stderr
    assert (cli.model.parent / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES
    assert sorted(p.name for p in cli.model.parent.iterdir()) == ["labels.txt", "model.tflite"]


def stretches_of(events) -> list[tuple[str, list[tuple[int, int]]]]:
    """Each stretch of a phase (as phase_story tells them) with its counts (done, total) in order."""
    out, last = [], None
    for e in events:
        if e["type"] != "phase":
            continue
        key = (e["phase"], e.get("format"))
        if key != last:
            out.append((e["phase"], []))
            last = key
        if "done" in e:
            out[-1][1].append((e["done"], e["total"]))
    return out


def test_export_progress_file(cli):
    assert cli.code == 0, cli.stderr
    events = read_progress(cli.events)
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "evaluating", "converting", "verifying"]
    phases = [e for e in events if e["type"] == "phase"]
    assert {e.get("format") for e in phases if e["phase"] in ("converting", "verifying")} == {"tflite-float32"}
    # Each export stage is followed at once by its phase, announced before its work (with a count at 0).
    kinds = [(e["type"], e.get("phase") or e.get("stage")) for e in events]
    for stage, phase in (("reference", "evaluating"), ("convert", "converting"), ("verify", "verifying")):
        assert kinds.index(("phase", phase)) == kinds.index(("export", stage)) + 1, kinds
    assert [next(e["done"] for e in phases if e["phase"] == p) for p in ("evaluating", "verifying")] == [0, 0]
    events = [e for e in events if e["type"] != "phase"]  # the phases aside, the events of earlier versions
    assert [e["type"] for e in events] == ["start"] + ["export"] * 4 + ["done"]
    assert events[0]["command"] == "export" and events[0]["formats"] == ["tflite-float32"]
    exports = events[1:-1]
    assert [(e["stage"], e["format"]) for e in exports] == [
        ("reference", "keras"), ("convert", "tflite-float32"), ("verify", "tflite-float32"),
        ("exported", "tflite-float32")]
    assert [e["step"] for e in exports] == [0, 1, 2, 3]
    assert exports[0]["n"] == len(cli.images) + 1  # the files to check, before decoding (notes.txt is not)
    assert exports[-1]["size_bytes"] == cli.model.stat().st_size
    done = events[-1]["result"]
    assert done["stopped"] is False and [e["path"] for e in done["exports"]] == [str(cli.model)]
    assert done["exports"][0]["verification"] == last_json(cli.stdout)["verification"]
    assert all(isinstance(e["time"], float) for e in events)


def test_export_several_formats_into_a_folder_with_a_bundle(cli, tmp_path):
    out, bundle = tmp_path / "exports", tmp_path / "dl" / "model.zip"
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "tflite-float16, Keras", "--out", out,
                                    "--bundle", bundle, "--verify-held-out", "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert [e["format"] for e in result["exports"]] == ["tflite-float16", "keras"]
    assert [e["path"] for e in result["exports"]] == [str(out / "model_float16.tflite"), str(out / "model.keras")]
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "model.keras", "model_float16.tflite"]
    assert (out / "labels.txt").read_text(encoding="utf-8").splitlines() == CLASSES
    assert result["verification_data"]["source"] == "run test split"
    assert result["exports"][0]["verification"]["n"] == N_HELD_OUT
    assert "verification" not in result["exports"][1]
    assert result["stopped"] is False
    assert result["bundle"] == str(bundle)
    with zipfile.ZipFile(bundle) as z:
        assert sorted(z.namelist()) == ["MODEL_CARD.md", "export.json", "labels.txt", "model_float16.tflite",
                                        "predict_tflite.py"]
        assert z.read("model_float16.tflite") == (out / "model_float16.tflite").read_bytes()
        assert json.loads(z.read("export.json"))["exports"] == result["exports"]


def test_export_int8_with_uint8_io_and_calibration_data(cli, tmp_path):
    out = tmp_path / "m.tflite"
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "tflite-int8", "--int8-io", "--out", out,
                                    "--calibration", cli.verify, "--calibration-samples", "5", "--seed", "2",
                                    "--verify-held-out", "--json", "--progress", tmp_path / "events.jsonl"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert result["input"]["dtype"] == "uint8" and result["calibration_samples"] == 5
    # Issue 17, item 5: the calibration photos are counted as they are read, then as the converter runs them;
    # then it quantises (converting again) and the file is verified photo by photo.
    events = read_progress(tmp_path / "events.jsonl")
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "evaluating", "calibrating", "converting", "calibrating",
                                   "converting", "verifying"]
    stretches = stretches_of(events)
    for phase, counts in stretches:
        if phase in ("evaluating", "calibrating", "verifying"):
            assert counts[0][0] == 0 and counts[-1][0] == counts[-1][1], (phase, counts)
            assert [done for done, _ in counts] == sorted(done for done, _ in counts), (phase, counts)
    assert [counts[-1] for phase, counts in stretches if phase == "calibrating"] == [(5, 5), (5, 5)]
    assert [counts[-1] for phase, counts in stretches if phase == "verifying"] == [(N_HELD_OUT, N_HELD_OUT)]
    # The labelled folder's files, shuffled; the unreadable one is reported if it was drawn.
    assert all(s["path"] == str(cli.verify / "red" / "notes.txt") for s in result["calibration_skipped"])
    assert result["verification"]["n"] == N_HELD_OUT
    assert [w["code"] for w in result["warnings"]] in (["few_calibration_images"],
                                                       ["few_calibration_images", "int8_accuracy_drop"])
    code, stdout, stderr = run_cli(["predict", out, *cli.images[:2], "--json"])
    assert code == 0, stderr
    assert [p["label"] in CLASSES for p in last_json(stdout)["predictions"]] == [True, True]


def test_export_human_readable(cli, tmp_path):
    out = tmp_path / "m.tflite"
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "tflite-dynamic", "--out", out,
                                    "--verify-held-out"])
    assert code == 0, stderr
    (line,) = stdout.strip().splitlines()
    assert line.startswith(f"tflite-dynamic: {out} (") and " MB); Keras " in line
    assert "agreement" in line and line.endswith("ms per image")
    assert [row.split() for row in stderr.strip().splitlines()] == [
        ["reference", "keras"], ["convert", "tflite-dynamic"], ["verify", "tflite-dynamic"],
        ["exported", "tflite-dynamic"]]


def test_export_on_a_terminal_says_each_phase_with_its_counts(cli, tmp_path):
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "tflite-dynamic", "--out", tmp_path / "m.tflite",
                                    "--verify-held-out"], tty=True)
    assert code == 0, stderr
    shown = [line.split("\r")[-1] for line in stderr.replace("\r\033[K", "\r").split("\n") if line]
    assert shown == ["loading the model", f"scoring the held-out photos {N_HELD_OUT}/{N_HELD_OUT}",
                     "converting to tflite-dynamic", f"verifying tflite-dynamic {N_HELD_OUT}/{N_HELD_OUT}",
                     "exported    tflite-dynamic"]


def test_export_stopped_by_the_stop_file(cli, tmp_path):
    stop = tmp_path / "STOP"
    stop.touch()
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "keras,saved-model", "--out", tmp_path / "out",
                                    "--stop-file", stop])
    assert code == 0, stderr
    assert stdout == ""
    assert stderr.strip().splitlines()[-1] == "stopped before all formats were exported"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, fragments", [
    (["--format", "tflite-float32,tensorrt"], ["'tensorrt'", "tflite-float16", "python -m tlcore export --help"]),
    (["--format", ","], ["unknown format"]),
    (["--format", "tflite-int8", "--calibration-samples", "0"], ["calibration size must be a whole number >= 1, got 0"]),
    # The bundle packs the TFLite and ONNX files with their example scripts; a web folder is its own download.
    (["--format", "keras,web", "--bundle", "b.zip"], ["--bundle needs at least one TFLite or ONNX format"]),
])
def test_export_user_errors(cli, tmp_path, argv, fragments):
    out = tmp_path / "out" / "m.tflite"
    assert_user_error(*run_cli(["export", cli.run, "--out", out, *argv, "--json"]), *fragments)
    assert not (tmp_path / "out").exists()


def test_export_several_formats_to_a_file(cli, tmp_path):
    out = tmp_path / "model.tflite"
    out.write_bytes(b"keep me")
    assert_user_error(*run_cli(["export", cli.run, "--format", "tflite-float32,keras", "--out", out]),
                      "is a file", str(out))
    assert out.read_bytes() == b"keep me"


def test_export_bundle_needs_a_tflite_format(cli, tmp_path):
    assert_user_error(*run_cli(["export", cli.run, "--format", "keras", "--out", tmp_path / "m.keras",
                                "--bundle", tmp_path / "b.zip"]), "--bundle", "tflite-float32")
    assert list(tmp_path.iterdir()) == []


def test_export_verified_on_photos_none_of_which_can_be_read(cli, tmp_path):
    bad = tmp_path / "bad"
    for name in ("red", "blue"):
        (bad / name).mkdir(parents=True)
        (bad / name / "x.png").write_text("nope")
    out = tmp_path / "m.tflite"
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "tflite-float32", "--out", out, "--verify", bad])
    assert code == 0, stderr
    (line,) = stdout.strip().splitlines()
    assert line.startswith(f"tflite-float32: {out} (") and line.endswith(" MB)")  # no verification figures
    assert ("warning: the exports were not checked: none of the 2 verification images could be read; "
            "give labelled data to verify on") in stderr.splitlines()
    code, stdout, stderr = run_cli(["export", cli.run, "--format", "tflite-float32", "--out", out, "--verify", bad,
                                    "--json"])
    assert code == 0, stderr
    result = last_json(stdout)
    assert "verification" not in result and "agreement" not in result
    assert [w["code"] for w in result["warnings"]] == ["unreadable_verification_data"]
    assert result["verification_data"]["n"] == 0 and len(result["verification_data"]["skipped"]) == 2


def test_export_of_something_that_is_not_a_run(cli, tmp_path):
    assert_user_error(*run_cli(["export", cli.verify, "--format", "keras", "--out", tmp_path / "m.keras"]),
                      "not a run directory")


def test_export_conversion_failure_is_one_line(cli, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", FailingConverter)
    out = tmp_path / "m.tflite"
    events = tmp_path / "events.jsonl"
    line = assert_user_error(*run_cli(["export", cli.run, "--format", "tflite-float32", "--out", out,
                                       "--progress", events, "--json"]),
                             "conversion to tflite-float32 failed", "failed to legalize operation")
    assert list(tmp_path.iterdir()) == [events]  # no model, no temporary file, no labels.txt
    last = read_progress(events)[-1]
    assert last["type"] == "error" and last["message"] == line.removeprefix("error: ")


# predict and evaluate on the exported file ---------------------------------------------------------

def test_predict_tflite_agrees_with_the_run(cli):
    assert cli.code == 0, cli.stderr
    code, stdout, stderr = run_cli(["predict", cli.model, *cli.images, "--json"])
    assert code == 0, stderr
    lite = last_json(stdout)
    code, stdout, stderr = run_cli(["predict", cli.run, *cli.images, "--json"])
    assert code == 0, stderr
    keras = last_json(stdout)
    assert lite["classes"] == keras["classes"] == CLASSES
    assert [p["path"] for p in lite["predictions"]] == cli.images
    assert [p["label"] for p in lite["predictions"]] == [p["label"] for p in keras["predictions"]]
    np.testing.assert_allclose([p["confidence"] for p in lite["predictions"]],
                               [p["confidence"] for p in keras["predictions"]], atol=1e-4)
    assert len({p["confidence"] for p in keras["predictions"]}) > 1  # not a constant model


def test_predict_tflite_human_readable_with_a_bad_file(cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    code, stdout, stderr = run_cli(["predict", cli.model, cli.images[0], bad])
    assert code == 0, stderr
    (line,) = stdout.strip().splitlines()
    assert line.startswith(f"{cli.images[0]}: ") and line.split(": ")[1].split(" (")[0] in CLASSES
    assert stderr.strip().splitlines() == [f"skipped {bad}: not an image file Pillow can read"]


def test_evaluate_tflite(cli):
    assert cli.code == 0, cli.stderr
    code, stdout, stderr = run_cli(["evaluate", cli.model, cli.verify, "--json"])
    assert code == 0, stderr
    lite = last_json(stdout)
    code, stdout, stderr = run_cli(["evaluate", cli.run, cli.verify, "--json"])
    assert code == 0, stderr
    keras = last_json(stdout)
    assert lite["classes"] == CLASSES
    assert lite["n"] == len(cli.images)
    assert np.array(lite["confusion"]).sum() == len(cli.images)
    assert lite["accuracy"] == keras["accuracy"] == last_json(cli.stdout)["tflite_accuracy"]
    assert lite["predictions"] == keras["predictions"]
    assert [s["path"] for s in lite["skipped"]] == [str(cli.verify / "red" / "notes.txt")]


def test_predict_tflite_without_labels(cli, tmp_path):
    import shutil

    model = Path(shutil.copy(cli.model, tmp_path / "m.tflite"))
    assert_user_error(*run_cli(["predict", model, cli.images[0], "--json"]), "labels", str(tmp_path / "labels.txt"))


def test_predict_file_that_is_not_a_tflite_model(cli, tmp_path):
    fake = tmp_path / "m.tflite"
    fake.write_text("not a model")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    assert_user_error(*run_cli(["predict", fake, cli.images[0]]), str(fake), "not a TFLite model")

