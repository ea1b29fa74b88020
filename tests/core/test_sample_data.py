"""The built-in shapes dataset: what it writes, reproducibility, and (slow) that transfer learning matters on it."""
from __future__ import annotations

import numpy as np
import pytest

from tlcore.data.datasets import load_dataset
from tlcore.data.images import load_image
from tlcore.data.sample_data import SAMPLE_CLASSES, make_shape_image, write_sample_dataset


def files_by_class(root):
    return {d.name: sorted(p.name for p in d.iterdir()) for d in sorted(root.iterdir()) if d.is_dir()}


def contents(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_writes_per_class_pngs_for_every_class(tmp_path):
    root = write_sample_dataset(tmp_path / "shapes", per_class=4, size=32, seed=0)
    assert root == tmp_path / "shapes"
    listing = files_by_class(root)
    assert sorted(listing) == sorted(SAMPLE_CLASSES) and len(SAMPLE_CLASSES) == 3
    for shape, names in listing.items():
        assert len(names) == 4
        assert all(n.startswith(f"{shape}_") and n.endswith(".png") for n in names)
    for path in root.rglob("*.png"):
        img = load_image(path)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        assert img.std() > 5  # a textured picture, not a blank


def test_same_seed_gives_identical_files(tmp_path):
    a = contents(write_sample_dataset(tmp_path / "a", per_class=3, size=32, seed=7))
    b = contents(write_sample_dataset(tmp_path / "b", per_class=3, size=32, seed=7))
    assert len(a) == 9
    assert a == b


def test_different_seeds_give_different_images(tmp_path):
    a = contents(write_sample_dataset(tmp_path / "a", per_class=3, size=32, seed=1))
    b = contents(write_sample_dataset(tmp_path / "b", per_class=3, size=32, seed=2))
    assert a.keys() == b.keys()
    assert all(a[name] != b[name] for name in a)


def test_images_within_a_dataset_all_differ(tmp_path):
    files = contents(write_sample_dataset(tmp_path / "s", per_class=5, size=32, seed=0))
    assert len(set(files.values())) == len(files) == 15


def test_loads_as_a_three_class_dataset(tmp_path):
    root = write_sample_dataset(tmp_path / "shapes", per_class=5, size=24)
    dataset = load_dataset(root)
    assert dataset.classes == sorted(SAMPLE_CLASSES)
    assert len(dataset.samples) == 15
    assert not dataset.has_splits
    assert {s.label for s in dataset.samples} == set(SAMPLE_CLASSES)
    assert all(s.label in s.path for s in dataset.samples)


def test_make_shape_image_size_and_mode():
    img = make_shape_image("triangle", np.random.default_rng(0), size=40)
    assert img.size == (40, 40) and img.mode == "RGB"


def test_unknown_shape_is_a_value_error():
    with pytest.raises(ValueError) as info:
        make_shape_image("hexagon", np.random.default_rng(0))
    assert "'hexagon'" in str(info.value)
    assert all(name in str(info.value) for name in SAMPLE_CLASSES)


@pytest.mark.slow
def test_transfer_learning_beats_random_weights_on_the_sample(tmp_path, lite0_engine_cached):
    """The sample's point: ImageNet features separate the shapes, a random backbone does not."""
    from tlcore.training.config import TrainConfig
    from tlcore.training.pipeline import train

    data = write_sample_dataset(tmp_path / "shapes", per_class=20)
    pretrained = train(data, TrainConfig())
    scratch = train(data, TrainConfig(weights=None))
    assert pretrained["n_test"] == scratch["n_test"] == 6  # the same split for both
    assert pretrained["test_accuracy"] >= 0.8, pretrained["test"]
    assert pretrained["val_accuracy"] >= 0.8, pretrained["val"]
    assert pretrained["test_accuracy"] > scratch["test_accuracy"], (pretrained["test"], scratch["test"])
    assert pretrained["test_accuracy"] + pretrained["val_accuracy"] > scratch["test_accuracy"] + scratch["val_accuracy"]
