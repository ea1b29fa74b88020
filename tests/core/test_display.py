"""Images made for the eye (tlcore.analysis.display): the heat maps' colour scale."""
from __future__ import annotations

import numpy as np
import pytest

from tlcore.analysis.display import colour_scale, jet_colours
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
