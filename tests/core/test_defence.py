"""Robustness curves of a saved run and adversarial training of its head (tlcore.adversarial.defence), on a
small stand-in backbone trained on generated red/blue images."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.core.test_finetune import read, standin, trained_run  # noqa: F401 - fixtures
from tlcore.models.classifier import logits_function
from tlcore.adversarial.defence import HardenConfig, harden, run_robustness, split_images
from tlcore.io.errors import TLError
from tlcore.models.run import load_run

EPSILONS = (0.0, 0.01, 0.05)


def test_split_images_decodes_the_runs_held_out_split(trained_run):
    run_dir, _ = trained_run
    run = load_run(run_dir)
    images, labels, split = split_images(run, run_dir, "held-out")
    samples = json.loads((run_dir / "samples.json").read_text())
    assert split == "test"  # a test split exists, so it is the held-out one
    assert len(images) == len(labels) == sum(s["split"] == "test" for s in samples)
    assert images.dtype == np.uint8 and images.shape[1:] == (run.input_size, run.input_size, 3)
    limited, _, _ = split_images(run, run_dir, "train", limit=3)
    assert len(limited) == 3


def test_robustness_curve_starts_at_clean_accuracy_and_never_rises_under_pgd(trained_run):
    run_dir, _ = trained_run
    events = []
    curve = run_robustness(run_dir, EPSILONS, steps=3, on_progress=lambda step, logs: events.append(logs))
    run = load_run(run_dir)
    images, labels, _ = split_images(run, run_dir, "held-out")
    clean = float((np.asarray(logits_function(run.model)(images.astype(np.float32))).argmax(1) == labels).mean())
    assert curve["epsilons"] == list(EPSILONS) and curve["n"] == len(labels)
    assert curve["fgsm"][0] == curve["pgd"][0] == clean
    assert curve["pgd"][-1] <= curve["pgd"][0]
    assert [(e["method"], e["epsilon"]) for e in events] == [(m, e) for m in ("fgsm", "pgd") for e in EPSILONS]


def test_robustness_refuses_an_epsilon_outside_the_pixel_range(trained_run):
    run_dir, _ = trained_run
    with pytest.raises(TLError, match="epsilon 3"):
        run_robustness(run_dir, (0.0, 3))


def test_harden_trains_the_head_on_adversarial_images_and_saves_a_loadable_run(trained_run, tmp_path):
    run_dir, _ = trained_run
    before_model = load_run(run_dir)
    epochs = []
    result = harden(run_dir, HardenConfig(epsilon=0.02, epochs=2, curve_images=4, curve_steps=2),
                    out=tmp_path / "hardened", epsilons=EPSILONS, on_epoch=lambda e, logs: epochs.append(logs))
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["phase"] == "adversarial" for e in epochs)
    assert result["run_dir"] == str(tmp_path / "hardened")
    assert result["backbone"] == "efficientnet_lite0"  # the run lists label runs by it
    for name in ("before", "after"):
        assert result[name]["epsilons"] == list(EPSILONS) and len(result[name]["pgd"]) == len(EPSILONS)
    hardened = load_run(tmp_path / "hardened")
    # The head changed, the backbone did not (it stays frozen).
    before_head = before_model.model.get_layer("head").get_layer("head_dense").get_weights()[0]
    after_head = hardened.model.get_layer("head").get_layer("head_dense").get_weights()[0]
    assert not np.allclose(before_head, after_head)
    for a, b in zip(before_model.model.get_layer("efficientnet_lite0").get_weights(),
                    hardened.model.get_layer("efficientnet_lite0").get_weights()):
        np.testing.assert_array_equal(a, b)
    metrics = read(tmp_path / "hardened", "metrics.json")
    assert metrics["adversarial_training"]["epsilon"] == 0.02
    assert read(tmp_path / "hardened", "config.json")["adversarial_training"]["epochs"] == 2
    # The Evaluate page's files are there, for the hardened model.
    predictions = read(tmp_path / "hardened", "predictions.json")
    assert {p["split"] for p in predictions} == {"val", "test"}
    assert read(tmp_path / "hardened", "samples.json") == read(run_dir, "samples.json")


@pytest.mark.parametrize("config, message", [
    (HardenConfig(epsilon=0), "training epsilon must be above 0 and at most 1, got 0"),
    (HardenConfig(epsilon=2), "got 2"),
    (HardenConfig(epochs=0), "epochs must be a whole number >= 1, got 0"),
])
def test_harden_refuses_bad_settings(trained_run, tmp_path, config, message):
    run_dir, _ = trained_run
    with pytest.raises(TLError, match=message):
        harden(run_dir, config, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()
