"""The head's feature standardisation, used for random-weight backbones."""
from __future__ import annotations

import numpy as np

from tests.conftest import SMALL_INPUT
from tlcore.models.classifier import build_head
from tlcore.models.run import load_run
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import train


def test_standardize_rescales_tiny_features_to_unit_scale(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(5e-12, 2e-13, (64, 6)).astype(np.float32)
    features[:, 5] = 3e-12  # a constant feature carries no information
    head = build_head(6, 2, standardize=True)
    layer = head.get_layer("head_standardize")
    layer.set_statistics(features)
    out = np.asarray(layer(features))
    np.testing.assert_allclose(out[:, :5].mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(out[:, :5].std(axis=0), 1, rtol=1e-2)
    assert np.all(out[:, 5] == 0)


def test_head_without_standardize_has_no_such_layer():
    head = build_head(4, 3)
    assert [layer.name for layer in head.layers] == ["head_dropout", "head_dense"]


def test_random_weight_run_learns_colours_and_reloads_identically(image_folder, tmp_path):
    # Random features have arbitrary scale; standardised, a head can still separate red from blue.
    result = train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=15, lr=1e-2, split=(0.5, 0.25, 0.25)),
                   out=tmp_path / "run")
    assert result["history"][-1]["accuracy"] > 0.75
    run = load_run(tmp_path / "run")
    assert run.model.get_layer("head").get_layer("head_standardize") is not None
    paths = sorted(str(p) for p in image_folder.rglob("*.png"))
    probs, kept, _ = run.predict_files(paths)
    again, _, _ = load_run(tmp_path / "run").predict_files(paths)
    np.testing.assert_allclose(probs, again, rtol=1e-5)
    labels = [p.split("/")[-2] for p in paths]
    accuracy = np.mean([run.classes[i] == lab for i, lab in zip(probs.argmax(axis=1), labels)])
    assert accuracy > 0.75
