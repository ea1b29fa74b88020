"""The data tiers: one count per tier, the tier of a count and of a dataset's smallest class."""
from __future__ import annotations

import pytest

from tlcore.data.advice import MEASURED_ACCURACY, TIER_NAMES, TIERS, data_tier, tier_of, tier_sentence


def test_the_tiers_rise_in_order():
    assert TIER_NAMES == ("too_few", "start", "good", "great")
    counts = list(TIERS.values())
    assert counts == sorted(counts) and counts[0] > 0
    assert list(MEASURED_ACCURACY) == list(TIERS)


@pytest.mark.parametrize("photos, tier", [
    (0, "too_few"), (1, "too_few"), (24, "too_few"), (25, "start"), (40, "start"), (49, "start"),
    (50, "good"), (149, "good"), (150, "great"), (10_000, "great"),
])
def test_the_tier_of_a_count(photos, tier):
    assert TIERS == {"start": 25, "good": 50, "great": 150}  # the figures docs/BENCHMARKS.md measured
    assert tier_of(photos) == tier


def test_a_dataset_is_in_its_smallest_class_tier():
    assert data_tier({"ants": 200, "bees": 40}) == {"tier": "start", "class": "bees", "photos": 40, "next": "good",
                                                    "missing": 10}
    assert data_tier({"a": 8, "b": 8, "empty": 0}) == {"tier": "too_few", "class": "a", "photos": 8,
                                                        "next": "start", "missing": 17}
    assert data_tier({"a": 150, "b": 300}) == {"tier": "great", "class": "a", "photos": 150, "next": None,
                                               "missing": 0}


def test_no_photos_have_no_tier():
    assert data_tier({}) is None and data_tier({"a": 0, "b": 0}) is None


def test_the_sentence_quotes_the_tiers():
    assert tier_sentence() == "25 photos per class are enough to start, 50 are good and 150 great"


def test_texts_get_the_tiers_and_their_accuracies():
    from tlcore.data.advice import tier_values

    assert tier_values() == {"start": 25, "good": 50, "great": 150, "acc_start": 0.91, "acc_good": 0.93,
                             "acc_great": 0.94}
