"""Suspicious labels on real photos: how many of the flipped labels the label check finds.

The shared ants/bees training photos (``../shared/datasets/hymenoptera/train``, never copied) are
embedded by a frozen EfficientNet-Lite0 (offline ImageNet weights, tlcore's own extraction and feature
cache); 10% of their labels, drawn with a fixed seed, are moved to the other class; the label check
(:func:`tlcore.analysis.labels.find_label_issues`: 5-fold logistic-regression heads, cleanlab's ranking)
then ranks the photos. Precision and recall are those of the flipped photos among the first N issues
(N = the number flipped), for several draws of the flipped photos.

Usage: ``python scripts/bench_labels.py [--draws 5]`` (``TLCORE_CACHE_DIR=<empty folder>`` to time a cold embedding) (also run by ``make bench``). Writes the
``labels`` section of docs/BENCHMARKS.md; the last line printed is the JSON of all numbers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
FLIPPED = 0.10

from benchdoc import cpu_description, replace_section  # noqa: E402  (scripts/ is this file's folder)


def one_draw(x, y, classes, paths, seed: int) -> dict:
    from tlcore.analysis.labels import find_label_issues

    rng = np.random.default_rng(seed)
    n = round(FLIPPED * len(y))
    flipped = rng.choice(len(y), size=n, replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + 1 + rng.integers(0, len(classes) - 1, size=n)) % len(classes)
    t0 = time.perf_counter()
    issues = find_label_issues(x, given, classes, paths, seed=seed)
    seconds = time.perf_counter() - t0
    where = {p: i for i, p in enumerate(paths)}
    found = {where[issue["path"]] for issue in issues[:n]}
    hits = len(found & set(flipped.tolist()))
    return {"seed": seed, "n": n, "issues": len(issues), "precision": hits / n,
            "recall_all": len({where[i["path"]] for i in issues} & set(flipped.tolist())) / n,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5, help="draws of the flipped photos")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: the shared photos are not at {DATA} (see ../shared/datasets/README.md)")
        return
    from tlcore.data.datasets import load_dataset
    from tlcore.lab.label_check import embed_photos

    samples = [s for s in load_dataset(DATA).samples if s.split == "train"]
    classes = sorted({s.label for s in samples})
    paths = [s.path for s in samples]
    y = np.array([classes.index(s.label) for s in samples])
    t0 = time.perf_counter()
    x = embed_photos(paths)
    embed_seconds = time.perf_counter() - t0
    rows = [one_draw(x, y, classes, paths, seed) for seed in range(args.draws)]
    from tlcore.analysis.embedding_map import project

    t0 = time.perf_counter()
    project(x)
    map_seconds = time.perf_counter() - t0
    for row in rows:
        print(json.dumps(row), flush=True)
    n = rows[0]["n"]
    precision = statistics.fmean(r["precision"] for r in rows)
    # Among the first N, precision and recall are the same count over the same N.
    worst = min(r["precision"] for r in rows)
    recall_all = statistics.fmean(r["recall_all"] for r in rows)
    seconds = statistics.fmean(r["seconds"] for r in rows)
    body = f"""## Suspicious labels: flipped labels found among ants and bees

`scripts/bench_labels.py`: the {len(y)} training photos of `../shared/datasets/hymenoptera/train`
({"/".join(str(int((y == i).sum())) for i in range(len(classes)))} {"/".join(classes)}) embedded by
EfficientNet-Lite0 with its offline ImageNet weights; {FLIPPED:.0%} of their labels (N = {n} photos, a new draw
for each of {args.draws} seeds) moved to the other class; `python -m tlcore check --labels`'s ranking
(`tlcore.analysis.labels`: out-of-fold probabilities of 5 stratified logistic-regression heads, cleanlab's
`find_label_issues` ranked by self-confidence).

| | mean of {args.draws} draws | worst draw |
|---|---|---|
| precision among the first N (= recall among the first N) | {precision:.1%} | {worst:.1%} |
| recall among every issue reported | {recall_all:.1%} | {min(r['recall_all'] for r in rows):.1%} |
| issues reported (N = {n}) | {statistics.fmean(r['issues'] for r in rows):.1f} | |
| seconds for the check on cached embeddings | {seconds:.2f} | {max(r['seconds'] for r in rows):.2f} |

- Date: {date.today().isoformat()}
- CPU: {cpu_description()}
- Embedding the {len(y)} photos took {embed_seconds:.1f} s ({'feature cache warm' if embed_seconds < 5 else 'an empty feature cache: the backbone built and converted, every photo embedded'});
  their embedding map (`tlcore.analysis.embedding_map.project`: PCA to 50 dimensions, then t-SNE) {map_seconds:.1f} s
"""
    replace_section("labels", body)
    print(json.dumps({"n": n, "precision": precision, "worst": worst, "recall_all": recall_all,
                      "seconds": seconds, "embed_seconds": embed_seconds, "map_seconds": map_seconds, "draws": rows}))


if __name__ == "__main__":
    main()
