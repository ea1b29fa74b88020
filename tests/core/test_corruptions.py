"""Everyday corruptions (tlcore.adversarial.corruptions): each corruption on its own, the measurement on a tiny run
(a stand-in backbone trained on generated red/blue images), the command line, the model card and bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_image_folder, write_image
from tests.core.test_cli import read_progress, run_cli
from tests.core.test_events import assert_each_phase_announced, phase_story
from tests.core.test_finetune import read, standin, trained_run  # noqa: F401 - fixtures
from tlcore.adversarial.corruptions import (CORRUPTION_SETTINGS, CORRUPTIONS, LEVELS, SEVERITIES, CorruptionConfig,
                                            corrupt, corruption_accuracy, corruptions_args, random_corruption,
                                            run_corruptions)
from tlcore.io.errors import TLError
from tlcore.models.run_files import corruptions_result


def textured(size: int = 64) -> np.ndarray:
    """A photo-like image: smooth gradients (what rotations and crops move) with a fixed fine texture (what blur
    and JPEG remove), never at 0 or 255 (what brightness and contrast change)."""
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([40 + 170 * x, 40 + 170 * y, 127 + 80 * np.sin(12 * x) * np.cos(9 * y)], -1)
    texture = np.random.default_rng(7).normal(0, 12, (size, size, 3))
    return np.clip(smooth + texture, 1, 254).astype(np.uint8)


def change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_changes_the_image_keeps_its_form_and_grows_with_severity(name, size):
    image = textured(size)
    before = image.copy()
    changes = []
    for severity in LEVELS:
        out = corrupt(image, name, severity, seed=3)
        assert out.shape == image.shape and out.dtype == np.uint8  # uint8: 0..255 by construction
        changes.append(change(out, image))
    np.testing.assert_array_equal(image, before)  # the input is left alone
    assert changes[0] > 0, (name, changes)
    assert changes[0] < changes[1] < changes[2], (name, changes)


def test_severities_are_one_table_of_three_values_per_corruption():
    assert CORRUPTIONS == ("blur", "noise", "brightness", "contrast", "jpeg", "rotation", "crop_shift")
    assert all(len(values) == len(LEVELS) == 3 for values in SEVERITIES.values())


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corruption_is_the_same_for_the_same_seed(name):
    image = textured()
    np.testing.assert_array_equal(corrupt(image, name, 2, seed=5), corrupt(image, name, 2, seed=5))


def test_only_the_noise_depends_on_the_seed():
    image = textured()
    assert not np.array_equal(corrupt(image, "noise", 1, seed=0), corrupt(image, "noise", 1, seed=1))
    np.testing.assert_array_equal(corrupt(image, "blur", 3, seed=0), corrupt(image, "blur", 3, seed=1))
    a, b = (random_corruption(image, np.random.default_rng(4)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("args, message", [
    (("fog", 1), "unknown corruption 'fog'; choose one of blur, noise"),
    (("blur", 4), "severity 4 must be 1, 2 or 3"),
    (("blur", 0), "severity 0 must be 1, 2 or 3"),
])
def test_an_unknown_corruption_or_severity_is_one_sentence(args, message):
    with pytest.raises(TLError, match=message):
        corrupt(textured(), *args)


def test_a_corruption_refuses_what_is_not_an_rgb_uint8_image():
    with pytest.raises(TLError, match="RGB uint8 image"):
        corrupt(textured().astype(np.float32), "blur", 1)
    with pytest.raises(TLError, match="RGB uint8 image"):
        corrupt(textured()[..., 0], "noise", 1)


def test_accuracy_under_corruptions_counts_each_point_and_every_photo():
    # A "model" that reads the red channel's mean: bright red is class 1. Darkening breaks it, noise barely.
    images = np.stack([np.full((16, 16, 3), v, np.uint8) for v in (40, 60, 200, 220)])
    labels = [0, 0, 1, 1]

    def predict(batch):
        red = batch[..., 0].mean(axis=(1, 2))
        return np.stack([red <= 128, red > 128], axis=1).astype(np.float32)

    counts, points = [], []
    result = corruption_accuracy(predict, images, labels, batch_size=3, on_count=lambda d, t: counts.append((d, t)),
                                 on_progress=lambda step, logs: points.append((step, logs)))
    assert result["clean_accuracy"] == 1.0 and result["n"] == 4
    assert [(r["corruption"], r["severity"]) for r in result["results"]] == [(c, s) for c in CORRUPTIONS
                                                                              for s in LEVELS]
    brightness = {r["severity"]: r["accuracy"] for r in result["results"] if r["corruption"] == "brightness"}
    assert brightness == {1: 1.0, 2: 0.5, 3: 0.5}  # 200 * 0.5 = 100: the bright photos read as dark
    assert result["mean_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in result["results"]]))
    total = (1 + 3 * len(CORRUPTIONS)) * 4
    assert counts[0] == (0, total) and counts[-1] == (total, total)
    assert [s for s, _ in points] == list(range(3 * len(CORRUPTIONS)))


def test_the_job_command_line_gives_the_worker_every_setting_back():
    from tests.core.test_settings import _parsed
    from tlcore.cli.options import config_from_args

    config = CorruptionConfig(limit=7, seed=3, batch_size=5)
    assert config_from_args(CorruptionConfig, _parsed(corruptions_args("r", config)), CORRUPTION_SETTINGS) == config
    parsed = _parsed(corruptions_args("-run", config, data="photos"))
    assert parsed.run_dir == "./-run" and parsed.data == "photos"
    assert _parsed(corruptions_args("r")).data is None
    with pytest.raises(TLError, match="photos must be a whole number >= 1, got 0"):
        corruptions_args("r", CorruptionConfig(limit=0))


# On a tiny trained run ---------------------------------------------------------------------------------------

def test_a_run_is_measured_on_its_held_out_photos_and_the_result_saved(trained_run):
    run_dir, _ = trained_run
    phases = []
    result = run_corruptions(run_dir, config=CorruptionConfig(limit=3),
                             on_phase=lambda phase, done=None, total=None, **_: phases.append((phase, done, total)))
    assert result["source"] == "test" and result["n"] == 3  # 4 test photos, 3 chosen
    assert 0 <= result["clean_accuracy"] <= 1 and 0 <= result["mean_accuracy"] <= 1
    assert len(result["results"]) == 3 * len(CORRUPTIONS)
    assert {(r["corruption"], r["severity"]) for r in result["results"]} == {(c, s) for c in CORRUPTIONS
                                                                             for s in LEVELS}
    assert phases[0] == ("loading", None, None) and phases[-1] == ("measuring", 66, 66)
    saved = corruptions_result(run_dir)
    assert saved["results"] == result["results"] and saved["severities"] == {k: list(v) for k, v in SEVERITIES.items()}
    # Measured again with the same seed: the same figures (deterministic).
    again = run_corruptions(run_dir, config=CorruptionConfig(limit=3), save=False)
    assert again["results"] == result["results"] and again["clean_accuracy"] == result["clean_accuracy"]


def test_a_labelled_folder_is_measured_and_its_unreadable_photos_listed(trained_run, tmp_path):
    run_dir, _ = trained_run
    data = make_image_folder(tmp_path / "photos", n_per_class=2, seed=5)
    (data / "red" / "broken.png").write_bytes(b"not a picture")
    result = run_corruptions(run_dir, data, save=False)
    assert result["source"] == "folder" and result["n"] == 4
    assert corruptions_result(run_dir) is None  # save=False leaves the run as it was


def test_the_model_card_summarises_the_corruptions(trained_run):
    from tlcore.export.bundle import model_card

    run_dir, _ = trained_run
    assert "Everyday corruptions" not in model_card({"exports": []}, run_dir)
    run_corruptions(run_dir, config=CorruptionConfig(limit=2))
    card = model_card({"exports": []}, run_dir)
    assert "## Everyday corruptions" in card and "| blur |" in card and "| crop shift |" in card
    saved = corruptions_result(run_dir)
    assert f"{saved['mean_accuracy']:.1%}" in card and f"{saved['clean_accuracy']:.1%}" in card


@pytest.mark.parametrize("case, message", [
    ("no model", "is not a run directory"),
    ("no held-out photos", "kept no held-out photos"),
    ("unreadable photos", "no readable photos in"),
    ("unknown class", "is not one the model knows"),
])
def test_bad_inputs_are_one_sentence(trained_run, tmp_path, case, message):
    run_dir, _ = trained_run
    data = None
    if case == "no model":
        run_dir = tmp_path / "empty"
        run_dir.mkdir()
    elif case == "no held-out photos":
        samples = read(run_dir, "samples.json")
        (run_dir / "samples.json").write_text(json.dumps([{**s, "split": "train"} for s in samples]))
    elif case == "unreadable photos":
        data = tmp_path / "bad"
        for name in ("red", "blue"):
            (data / name).mkdir(parents=True)
            (data / name / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    else:
        data = tmp_path / "other"
        write_image(data / "purple" / "a.png", (128, 0, 128))
        write_image(data / "red" / "a.png", (220, 30, 30))
    with pytest.raises(TLError, match=message) as caught:
        run_corruptions(run_dir, data)
    assert "\n" not in str(caught.value)


# The command line --------------------------------------------------------------------------------------------

def test_cli_json_follows_the_promised_shape_and_the_table_reads(trained_run, tmp_path):
    run_dir, _ = trained_run
    progress = tmp_path / "events.jsonl"
    code, out, err = run_cli(["corruptions", run_dir, "--limit", "2", "--json", "--progress", progress])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert {"clean_accuracy", "results", "mean_accuracy"} <= set(result)
    assert all(set(r) == {"corruption", "severity", "accuracy"} for r in result["results"])
    assert len(result["results"]) == 21 and result["n"] == 2
    events = read_progress(progress)
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "measuring"]
    assert [e["type"] for e in events if e["type"] != "phase"] == ["start"] + ["corruption"] * 21 + ["done"]

    data = make_image_folder(tmp_path / "photos", n_per_class=1)
    code, out, err = run_cli(["corruptions", run_dir, data])
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("accuracy on 2 photos of the folder: clean ")
    assert lines[1].split() == ["severity", "1", "2", "3"]
    assert [line.split()[0] for line in lines[2:]] == list(CORRUPTIONS)


def test_cli_bad_inputs_exit_2_with_one_line(trained_run, tmp_path):
    run_dir, _ = trained_run
    for argv, fragment in ((["corruptions", tmp_path], "is not a run directory"),
                           (["corruptions", run_dir, tmp_path / "missing"], "missing"),
                           (["corruptions", run_dir, "--limit", "0"], "photos must be a whole number >= 1, got 0")):
        code, out, err = run_cli(argv)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and fragment in err, (argv, err)


def test_harden_can_mix_in_corrupted_copies(trained_run, tmp_path):
    progress = tmp_path / "events.jsonl"
    run_dir, _ = trained_run
    code, out, err = run_cli(["harden", run_dir, "--out", tmp_path / "hard", "--epochs", "1", "--epsilons", "0",
                              "--curve-images", "2", "--curve-steps", "1", "--corruption-augment",
                              "--progress", progress, "--json"])
    assert code == 0, err
    events = read_progress(progress)
    assert phase_story(events) == ["starting", "loading", "measuring", "embedding", "augmenting", "hardening",
                                   "measuring", "evaluating", "saving"]
    assert read(tmp_path / "hard", "config.json")["adversarial_training"]["corruption_augment"] is True
