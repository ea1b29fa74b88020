"""A 2-D map of the photos' embeddings: which classes overlap, which photos sit among another class.

PCA first (to at most 50 dimensions: t-SNE's usual preparation, and it removes the noise of a
1,280-wide embedding), then t-SNE with a fixed seed, so the same photos always draw the same map.
With few photos t-SNE has no neighbourhoods to keep, so the first two principal components are the map.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PCA_DIMS", "TSNE_MIN", "project"]

PCA_DIMS = 50  # dimensions kept before t-SNE
TSNE_MIN = 30  # below this many photos, PCA alone (t-SNE's perplexity needs neighbours)


def project(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """One 2-D point ``(n, 2)`` per row of ``features`` ``(n, d)``, the same for the same input and seed."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2))
    x = x.reshape(n, -1)
    if n < 3 or x.shape[1] < 2:  # PCA needs two samples and two features for two components
        out = np.zeros((n, 2))
        out[:, : min(2, x.shape[1])] = (x - x.mean(axis=0))[:, :2]
        return out
    # One native thread: t-SNE's many small steps each wait on the thread pool otherwise (245 photos took 41-47 s
    # on 2 cores with the default pools, 2.3 s with one thread); one thread also makes the map the same anywhere.
    with threadpool_limits(1):
        reduced = PCA(n_components=min(PCA_DIMS, n, x.shape[1]), random_state=seed).fit_transform(x)
        if n < TSNE_MIN:
            return reduced[:, :2]
        # Perplexity about a third of the photos at most (t-SNE needs more photos than 3 x perplexity).
        perplexity = min(30.0, (n - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
