"""The embedding map's projection (tlcore.analysis.embedding_map)."""
import numpy as np
import pytest

from tlcore.analysis.embedding_map import TSNE_MIN, project


@pytest.mark.parametrize("n", [0, 1, 2, 5, TSNE_MIN - 1, TSNE_MIN, 60])
def test_one_point_per_photo(n):
    x = np.random.default_rng(1).normal(size=(n, 20))
    points = project(x)
    assert points.shape == (n, 2) and np.all(np.isfinite(points))


def test_same_seed_same_map():
    x = np.random.default_rng(2).normal(size=(50, 20))
    assert np.array_equal(project(x, seed=3), project(x, seed=3))


def test_separated_classes_stay_apart():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(40, 20)), rng.normal(size=(40, 20)) + 20])
    points = project(x)
    a, b = points[:40], points[40:]
    # every point is nearer its own class's centre than the other's
    assert np.all(np.linalg.norm(a - a.mean(0), axis=1) < np.linalg.norm(a - b.mean(0), axis=1))


def test_one_feature_wide():
    assert project(np.arange(10.0).reshape(10, 1)).shape == (10, 2)
