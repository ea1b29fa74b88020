"""How many photos per class: the one home of the data tiers (enough to start, good, great).

Every place that advises on the amount of data says these numbers through
this module: the Data page and its counts chart, the health report (and
``python -m tlcore check``), the training alarm ``few_images``, the
checklist, the diagnosis remedies and the README.
"""
from __future__ import annotations

from typing import Mapping

__all__ = ["TIERS", "TIER_NAMES", "TIER_WORDS", "MEASURED_ACCURACY", "tier_of", "data_tier", "tier_sentence",
           "tier_values"]

# Photos per class (every split counted, as the Data page counts them) from which a dataset is in each
# tier, for transfer learning with a frozen pretrained backbone. Grounded on ants vs bees with the default
# EfficientNet-Lite0 (docs/BENCHMARKS.md "Data tiers", scripts/bench_data_tiers.py, 10 random draws each),
# training on 80% of the photos as the default split does:
#   start  25 (20 to train on): 91% validation accuracy on average, 86% for the worst draw;
#   good   50 (40 to train on): 93%, 90% at worst;
#   great 150 (120 to train on): 94%, within a point from one draw to another, near the published 95%.
# Below start (5 or 10 to train on: 85% or 89%, 81% at worst) scores swing by several points between runs.
# Ants and bees are an easy pair for an ImageNet backbone: classes that look alike, or photos unlike
# ImageNet's (scans, microscopy, factory parts), need more photos for the same accuracy.
TIERS = {"start": 25, "good": 50, "great": 150}
TIER_NAMES = ("too_few", *TIERS)  # lowest first; "too_few" is below "start"
# Each tier in tlcore's English messages (the dashboard's words are in ui/locales, "tier.<name>").
TIER_WORDS = {"too_few": "too few to start", "start": "enough to start", "good": "good", "great": "great"}
# The mean validation accuracies above, for texts that quote them.
MEASURED_ACCURACY = {"start": 0.91, "good": 0.93, "great": 0.94}


def tier_of(photos: int) -> str:
    """The tier of a class with ``photos`` photos: ``too_few``, ``start``, ``good`` or ``great``."""
    reached = [name for name, least in TIERS.items() if photos >= least]
    return reached[-1] if reached else "too_few"


def data_tier(counts: Mapping[str, int]) -> dict | None:
    """The tier of a dataset, which is its smallest class's, or None when no class has photos.

    ``counts`` maps class names to photos (every split). Returns ``{tier, class, photos, next, missing}``:
    the smallest class with photos, its count, the next tier up (None at ``great``) and the photos that
    class lacks to reach it (0 at ``great``).
    """
    present = {name: int(n) for name, n in counts.items() if n and n > 0}
    if not present:
        return None
    smallest = min(present, key=lambda name: (present[name], name))
    photos = present[smallest]
    tier = tier_of(photos)
    up = TIER_NAMES[TIER_NAMES.index(tier) + 1] if tier != TIER_NAMES[-1] else None
    return {"tier": tier, "class": smallest, "photos": photos, "next": up,
            "missing": TIERS[up] - photos if up else 0}


def tier_sentence() -> str:
    """The tiers in one English phrase, for tlcore's messages (the dashboard words them in ui/locales)."""
    return (f"{TIERS['start']} photos per class are enough to start, {TIERS['good']} are good and "
            f"{TIERS['great']} great")


def tier_values() -> dict:
    """The tiers and their measured accuracies as keyword values for texts: ``start``, ``good``, ``great``
    (photos per class) and ``acc_start``, ``acc_good``, ``acc_great`` (fractions)."""
    return {**TIERS, **{f"acc_{name}": value for name, value in MEASURED_ACCURACY.items()}}
