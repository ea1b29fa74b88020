"""Suspicious labels: photos whose given class the rest of the data disagrees with.

Each photo's class probabilities come from a logistic-regression head that never saw it (k stratified
folds of the cached embeddings, a fixed seed), so a photo cannot vouch for its own label. cleanlab then
ranks the photos whose given class looks wrong, least self-confident first. The heads train on
embeddings, not photos: a few hundred photos take well under a second.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..io.errors import TLError

__all__ = ["FOLDS", "check_folds", "out_of_fold_probs", "rank_label_issues", "find_label_issues"]

# Five folds: each head trains on 80% of the photos, as a training run's head does, and five heads take
# under a second on a few hundred embeddings.
FOLDS = 5
# Regularisation of each fold's head, on standardised embeddings: stronger than scikit-learn's default (1.0), so a
# head does not learn the flipped labels of its training folds (on ants and bees with 10% flipped, 0.1 found as
# many flipped photos among the first N as 0.001-0.01 and more of them in all than any; scripts/bench_labels.py).
_C = 0.1


def check_folds(labels: np.ndarray, classes: Sequence[str], folds: int) -> None:
    """Raise :class:`TLError`, in one sentence, for data the folds cannot handle: fewer than two classes, or a
    class with fewer photos than folds (each fold must hold at least one photo of every class)."""
    if folds < 2:
        raise TLError(f"checking labels needs at least 2 folds, got {folds}")
    counts = np.bincount(labels, minlength=len(classes))
    present = [c for c, n in zip(classes, counts) if n]
    if len(present) < 2:
        only = f"only {present[0]!r}" if present else "none"
        raise TLError(f"checking labels needs photos in at least two classes; found {only}")
    for name, n in zip(classes, counts):
        if 0 < n < folds:
            raise TLError(f"class {name!r} has only {n} photo(s); checking labels needs at least {folds} per class "
                          f"(one for each of the {folds} folds)")


def out_of_fold_probs(features: np.ndarray, labels: Sequence[int], n_classes: int, folds: int = FOLDS,
                      seed: int = 0) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` of each photo from a head trained on the other folds.

    Stratified ``folds`` (shuffled with ``seed``), a standardising logistic-regression head per fold
    (scikit-learn's ``cross_val_predict``). A class with no photos gets probability 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, np.float64)
    y = np.asarray(labels, int)
    head = make_pipeline(StandardScaler(), LogisticRegression(C=_C, max_iter=2000))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    present = np.unique(y)
    # One native thread: these heads are small, and the thread pools' waits cost more than they share
    # (245 Lite0 embeddings: 1.4 s with the default pools, 0.5 s with one thread on 2 cores).
    with threadpool_limits(1):
        probs = cross_val_predict(head, x, y, cv=split, method="predict_proba")
    full = np.zeros((len(y), n_classes))
    full[:, present] = probs  # cross_val_predict's columns are the classes present, in order
    return full


def rank_label_issues(labels: Sequence[int], probs: np.ndarray) -> list[int]:
    """Indices of the photos whose label is probably wrong, most suspicious first.

    cleanlab's ``find_label_issues`` ranked by self-confidence (the probability of the given class);
    without cleanlab, the photos whose most probable class is not the given one, by the same ranking.
    """
    y = np.asarray(labels, int)
    try:
        from cleanlab.filter import find_label_issues as cleanlab_issues
    except ImportError:  # requirements.txt installs it; the fallback keeps the check usable without
        self_confidence = probs[np.arange(len(y)), y]
        wrong = np.where(probs.argmax(axis=1) != y)[0]
        return [int(i) for i in wrong[np.argsort(self_confidence[wrong], kind="stable")]]
    present = np.unique(y)
    # cleanlab wants classes numbered 0..k-1, each with a photo: drop the empty ones.
    remap = {int(c): i for i, c in enumerate(present)}
    ranked = cleanlab_issues(np.array([remap[int(v)] for v in y]), probs[:, present],
                             return_indices_ranked_by="self_confidence")
    return [int(i) for i in ranked]


def find_label_issues(features: np.ndarray, labels: Sequence[int], classes: Sequence[str], paths: Sequence[str],
                      folds: int = FOLDS, seed: int = 0) -> list[dict]:
    """The photos whose label is probably wrong, most suspicious first.

    ``features`` are the photos' embeddings, ``labels`` their given class indices into ``classes``,
    ``paths`` their files. Each issue is ``{"path", "given", "suggested", "confidence"}``: ``suggested``
    is the class the out-of-fold head finds most probable, ``confidence`` its probability. Raises
    :class:`TLError` when there are fewer than two classes or a class has fewer photos than ``folds``.
    """
    y = np.asarray(labels, int)
    if len(features) != len(y) or len(paths) != len(y):
        raise TLError(f"{len(features)} embeddings, {len(y)} labels and {len(paths)} paths: they must match")
    check_folds(y, classes, folds)
    probs = out_of_fold_probs(features, y, len(classes), folds, seed)
    issues = []
    for i in rank_label_issues(y, probs):
        best = int(probs[i].argmax())
        issues.append({"path": str(paths[i]), "given": classes[y[i]], "suggested": classes[best],
                       "confidence": round(float(probs[i, best]), 4)})
    return issues
