"""Images made for the eye (tlcore.analysis.display): the heat maps' colour scale."""
from __future__ import annotations

import numpy as np
import pytest

from tlcore.analysis.display import colour_scale, contrast_limits, jet_colours, stretch_contrast
from tlcore.io.errors import TLError


def test_the_colour_scale_runs_from_the_coldest_to_the_hottest_heat_map_colour():
    scale = colour_scale(width=101, height=7)
    assert scale.shape == (7, 101, 3) and scale.dtype == np.uint8
    assert (scale == scale[:1]).all()  # every row the same
    np.testing.assert_array_equal(scale[0, 0], jet_colours(np.float32(0.0)))  # low: blue, as in the overlays
    np.testing.assert_array_equal(scale[0, -1], jet_colours(np.float32(1.0)))  # high: red
    np.testing.assert_array_equal(scale[0, 50], jet_colours(np.float32(0.5)))
    np.testing.assert_array_equal(scale[0], jet_colours(np.linspace(0, 1, 101, dtype=np.float32)))  # evenly spread
    left, right = scale[0, 0].astype(int), scale[0, -1].astype(int)
    assert left[2] > left[0] and right[0] > right[2]  # blue at the left, red at the right


@pytest.mark.parametrize("width, height", [(1, 10), (10, 0)])
def test_the_colour_scale_refuses_an_empty_size(width, height):
    with pytest.raises(TLError):
        colour_scale(width, height)


def faint(seed=0, size=32) -> np.ndarray:
    """An image like a grown "ideal" one: mid-grey with faint colour patterns (pixels about 128 +- 12)."""
    rng = np.random.default_rng(seed)
    return np.clip(128 + rng.normal(0, 6, (size, size, 3)) + np.array([4, -3, 1]), 0, 255).astype(np.uint8)


def test_the_stretch_spreads_each_channel_of_a_faint_image_over_the_full_range():
    image = faint()
    out = stretch_contrast(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    for c in range(3):
        before, after = np.percentile(image[..., c], [1, 99]), np.percentile(out[..., c], [1, 99])
        assert before[1] - before[0] < 40  # faint: a sixth of the range
        assert after[0] <= 3 and after[1] >= 252  # spread over (nearly) all of it
    # The order of the pixels is kept: brighter stays brighter within a channel.
    order = np.argsort(image[..., 0].ravel(), kind="stable")
    assert (np.diff(out[..., 0].ravel()[order].astype(int)) >= 0).all()


def test_the_stretch_uses_given_limits_so_a_series_is_stretched_alike():
    final = faint(seed=1)
    limits = contrast_limits(final)
    assert limits.shape == (2, 3) and (limits[1] > limits[0]).all()
    start = np.full((8, 8, 3), 128, np.uint8)  # the flat grey a series starts from
    stretched = stretch_contrast(start, limits)
    np.testing.assert_array_equal(stretched, stretch_contrast(start, limits))
    assert len(np.unique(stretched)) <= 3  # still flat: it is not stretched to its own (empty) range
    np.testing.assert_array_equal(stretch_contrast(start), start)  # alone, a flat image is left as it is


@pytest.mark.parametrize("low, high", [(50, 50), (-1, 99), (1, 101)])
def test_contrast_limits_refuse_percentiles_out_of_order(low, high):
    with pytest.raises(TLError):
        contrast_limits(faint(), low, high)
