"""augment_image(): shape and type kept, reproducible, flips, and stays within the configured ranges."""
from __future__ import annotations

import numpy as np
import pytest

from tlcore.data.augment import AugmentConfig, augment_image

NO_PHOTOMETRIC = dict(brightness=0.0, contrast=0.0, saturation=0.0)


class FixedRandom:
    """A stand-in generator whose ``random()`` always returns ``value`` (flip happens below 0.5)."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value

    def uniform(self, low, high):  # never reached when the photometric ranges are 0
        raise AssertionError("uniform() called although every photometric range is 0")


def noisy_image(h=20, w=28, seed=0):
    """A colourful image with structure in both directions (so a flip is visible)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 216, (h, w, 3)).astype(np.uint8)
    img[:, : w // 3, 0] = 250  # a red band on the left
    return img


def saturation(img):
    """Mean distance of each pixel from its own grey level (ITU-R 601 luma, as Pillow uses)."""
    f = img.astype(np.float64)
    grey = f @ np.array([0.299, 0.587, 0.114])
    return np.abs(f - grey[..., None]).mean()


def test_keeps_shape_and_dtype():
    img = noisy_image()
    out = augment_image(img, np.random.default_rng(0))
    assert out.shape == img.shape
    assert out.dtype == np.uint8


def test_does_not_modify_its_input():
    img = noisy_image()
    before = img.copy()
    augment_image(img, np.random.default_rng(3))
    np.testing.assert_array_equal(img, before)


def test_same_seed_same_output_and_different_seeds_differ():
    img = noisy_image()
    a = augment_image(img, np.random.default_rng(42))
    b = augment_image(img, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    others = [augment_image(img, np.random.default_rng(s)) for s in range(5)]
    assert any(not np.array_equal(a, o) for o in others)
    assert any(not np.array_equal(img, o) for o in others)  # it does change the image


def test_flip_mirrors_the_image_when_the_generator_says_so():
    img = noisy_image()
    config = AugmentConfig(flip=True, **NO_PHOTOMETRIC)
    np.testing.assert_array_equal(augment_image(img, FixedRandom(0.0), config), img[:, ::-1])
    np.testing.assert_array_equal(augment_image(img, FixedRandom(0.99), config), img)


def test_flip_off_never_flips():
    img = noisy_image()
    config = AugmentConfig(flip=False, **NO_PHOTOMETRIC)
    for seed in range(10):
        np.testing.assert_array_equal(augment_image(img, np.random.default_rng(seed), config), img)


def test_default_config_flips_about_half_the_time():
    img = noisy_image()
    config = AugmentConfig(flip=True, **NO_PHOTOMETRIC)
    rng = np.random.default_rng(0)
    flips = sum(np.array_equal(augment_image(img, rng, config), img[:, ::-1]) for _ in range(200))
    assert 60 <= flips <= 140


def test_brightness_stays_within_its_range():
    grey = np.full((16, 16, 3), 128, np.uint8)
    config = AugmentConfig(flip=False, brightness=0.2, contrast=0.0, saturation=0.0)
    ratios = [augment_image(grey, np.random.default_rng(s), config).mean() / 128 for s in range(60)]
    assert all(0.8 - 1 / 128 <= r <= 1.2 + 1 / 128 for r in ratios), (min(ratios), max(ratios))
    assert min(ratios) < 0.93 and max(ratios) > 1.07  # it does use the range, both ways


def test_contrast_stays_within_its_range():
    img = np.repeat(np.linspace(78, 178, 32)[None, :, None], 32, axis=0).repeat(3, axis=2).astype(np.uint8)
    config = AugmentConfig(flip=False, brightness=0.0, contrast=0.2, saturation=0.0)
    ratios = [augment_image(img, np.random.default_rng(s), config).astype(float).std() / img.std() for s in range(60)]
    assert all(0.78 <= r <= 1.22 for r in ratios), (min(ratios), max(ratios))
    assert min(ratios) < 0.93 and max(ratios) > 1.07


def test_saturation_stays_within_its_range():
    img = np.zeros((16, 16, 3), np.uint8)
    img[...] = (160, 100, 120)  # a muted colour: no clipping at +20 %
    config = AugmentConfig(flip=False, brightness=0.0, contrast=0.0, saturation=0.2)
    base = saturation(img)
    ratios = [saturation(augment_image(img, np.random.default_rng(s), config)) / base for s in range(60)]
    assert all(0.77 <= r <= 1.23 for r in ratios), (min(ratios), max(ratios))
    assert min(ratios) < 0.93 and max(ratios) > 1.07


@pytest.mark.parametrize("field, value", [
    ("brightness", -0.1), ("brightness", 1.0), ("contrast", 1.5), ("saturation", -2.0),
    ("saturation", float("nan")),
])
def test_invalid_range_is_a_value_error_naming_the_value(field, value):
    config = AugmentConfig(**{field: value})
    with pytest.raises(ValueError) as info:
        augment_image(noisy_image(), np.random.default_rng(0), config)
    assert field in str(info.value) and repr(value) in str(info.value)
