"""Validation accuracy against photos per class: the measurements behind the data tiers of tlcore.data.advice.

A frozen EfficientNet-Lite0 (offline ImageNet weights) embeds the shared
ants/bees photos once (tlcore's own extraction and feature cache); then, for
each number of training photos per class, heads are trained exactly as
phase 1 trains them (``HeadTrainer`` with ``TrainConfig``'s defaults: 20
epochs, batch 32, learning rate 1e-3, dropout 0.2) on a random draw of that
many photos per class from ``train/``, several seeds each, and scored on
every photo of ``val/`` (70 ants, 83 bees). The built-in shapes sample is
measured the same way: heads trained on draws from the very 40 photos per
class the Data page loads, scored on 100 fresh shapes per class.

Usage: ``python scripts/bench_data_tiers.py [--seeds 10]`` (also run by
``make bench``). Writes the ``data_tiers`` section of docs/BENCHMARKS.md; the
last line printed is the JSON of all numbers. The photos are read from
``../shared/datasets/hymenoptera`` and never copied.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
SIZES = (5, 10, 20, 40, 80, None)  # photos per class to train on; None: every training photo
SAMPLE_SIZES = (5, 10, 20, 40)  # the sample has 40 per class
SAMPLE_HELD_OUT = 100  # fresh shapes per class to score the sample's heads on
BACKBONE = "efficientnet_lite0"

from benchdoc import cpu_description, replace_section  # noqa: E402  (scripts/ is this file's folder)


def files(source: Path, split: str | None = None) -> tuple[list[str], list[str]]:
    """(paths, labels) of a folder of class folders as tlcore lists them; ``split``: only that split's photos."""
    from tlcore.data.datasets import load_dataset

    samples = [s for s in load_dataset(source).samples if split is None or s.split == split]
    return [s.path for s in samples], [s.label for s in samples]


_HOLDER: list = []


def _backbone():
    if not _HOLDER:
        from tlcore.backbones.registry import create_backbone

        _HOLDER.append(create_backbone(BACKBONE, weights="imagenet"))
    return _HOLDER[0]


def embed(paths: list[str], labels: list[str], classes: list[str], copy: int = 0):
    """Features and class indices of the decodable photos, through tlcore's extraction and feature cache.

    ``copy`` > 0: the features of augmented copy ``copy`` of each photo, made as training with
    augmentation on makes them (TrainConfig's strength, seed 0), under this script's own cache key.
    """
    import numpy as np

    from tlcore.backbones.registry import get_spec
    from tlcore.data.augment import AugmentConfig, augment_image
    from tlcore.training.config import TrainConfig
    from tlcore.training.engine import fast_encoder
    from tlcore.training.features import FeatureCache, extract_features
    from tlcore.training.frozen import weights_key

    size = get_spec(BACKBONE).input_size
    key = weights_key(BACKBONE, "imagenet")
    transform = None
    if copy:
        s = TrainConfig.augment_strength
        look = AugmentConfig(brightness=s, contrast=s, saturation=s)
        key = f"{key}|bench-data-tiers-augment(s={s},copy={copy})"

        def transform(image, sha):
            return augment_image(image, np.random.default_rng([0, copy, int(sha[:15], 16)]), look)

    result = extract_features(paths, key, lambda: fast_encoder(_backbone, weights_key(BACKBONE, "imagenet"), size),
                              size, FeatureCache(), transform=transform)
    if result.skipped and not copy:
        print(f"note: {len(result.skipped)} photo(s) cannot be read: {[s['path'] for s in result.skipped]}")
    y = np.array([classes.index(labels[i]) for i in result.kept])
    return result.features, y, result.kept


def head_accuracy(x_train, y_train, x_val, y_val, n_classes: int, seed: int) -> float:
    """Validation accuracy of one head trained as phase 1 trains it, with TrainConfig's defaults."""
    import keras

    from tlcore.models.classifier import build_head
    from tlcore.training.config import TrainConfig
    from tlcore.training.head_fit import HeadTrainer

    config = TrainConfig(seed=seed)
    keras.utils.set_random_seed(seed)
    head = build_head(x_train.shape[1], n_classes, config.dropout)
    trainer = HeadTrainer(head, config.lr, seed=seed)
    # Equal counts per class: "auto" class weights would not weigh anything.
    trainer.fit(x_train, y_train, epochs=config.epochs, batch_size=config.batch_size)
    return trainer.evaluate(x_val, y_val)[1]


def _summary(scores: list[float]) -> dict:
    return {"mean": statistics.fmean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "min": min(scores), "max": max(scores)}


def curve(x, y, x_val, y_val, sizes, seeds: int, augmented=()) -> list[dict]:
    """Accuracy (mean, spread) per number of training photos per class, over ``seeds`` random draws.

    ``augmented``: feature arrays of augmented copies, row for row with ``x``; when given, each draw
    is also scored with its photos' copies added, as training with augmentation on does.
    """
    import numpy as np

    classes = np.unique(y)
    rows = []
    for n in sizes:
        scores, with_aug, start = [], [], time.perf_counter()
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            take = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) if n else np.flatnonzero(y == c)
                                   for c in classes])
            scores.append(head_accuracy(x[take], y[take], x_val, y_val, len(classes), seed))
            if len(augmented):
                xa = np.concatenate([x[take], *(a[take] for a in augmented)])
                ya = np.concatenate([y[take]] * (1 + len(augmented)))
                with_aug.append(head_accuracy(xa, ya, x_val, y_val, len(classes), seed))
        per_class = n or int(min(np.sum(y == c) for c in classes))
        row = {"per_class": per_class, "all": n is None, "seeds": seeds, **_summary(scores),
               "seconds_per_head": (time.perf_counter() - start) / seeds / (2 if with_aug else 1)}
        if with_aug:
            row["augmented"] = _summary(with_aug)
        rows.append(row)
        aug = f"; augmented {row['augmented']['mean']:.3f} ± {row['augmented']['sd']:.3f}" if with_aug else ""
        print(f"{'all ' if n is None else ''}{per_class:>4} per class: {row['mean']:.3f} ± {row['sd']:.3f} "
              f"(min {row['min']:.3f}, max {row['max']:.3f}){aug}", flush=True)
    return rows


def table(rows: list[dict], counts: str) -> str:
    augmented = all("augmented" in r for r in rows)
    head = "| training photos per class | validation accuracy, mean | spread (sd) | worst | best |"
    rule = "|---|---|---|---|---|"
    if augmented:
        head += " with augmentation: mean | spread | worst |"
        rule += "---|---|---|"
    lines = [head, rule]
    for r in rows:
        n = f"{r['per_class']} ({counts})" if r["all"] else str(r["per_class"])
        line = f"| {n} | {r['mean']:.1%} | {r['sd'] * 100:.1f} points | {r['min']:.1%} | {r['max']:.1%} |"
        if augmented:
            a = r["augmented"]
            line += f" {a['mean']:.1%} | {a['sd'] * 100:.1f} points | {a['min']:.1%} |"
        lines.append(line)
    return "\n".join(lines)


def tiers_text(rows: list[dict]) -> str:
    """The tiers of tlcore.data.advice beside the accuracy measured at their share of training photos."""
    from tlcore.data.advice import MEASURED_ACCURACY, TIERS
    from tlcore.training.config import TrainConfig

    share = TrainConfig().split[0]  # a tier counts every split; training gets this share by default
    out = [f"Per class, every split counted; at the default split {share:.0%} of them are trained on.", ""]
    for name, n in TIERS.items():
        near = min(rows, key=lambda r: abs(r["per_class"] - n * share))
        quoted = MEASURED_ACCURACY[name]
        agrees = "agrees with" if abs(near["mean"] - quoted) < 0.01 else "**differs from**"
        out.append(f"- `{name}`: {n} photos per class ({n * share:.0f} to train on); measured with "
                   f"{near['per_class']}: {near['mean']:.1%} on average, {near['min']:.1%} at worst "
                   f"({agrees} the {quoted:.0%} the texts quote)")
    return "\n".join(out)


def augmentation_text(rows: list[dict]) -> str:
    """What augmentation changed, against the spread between draws."""
    gains = [(r["augmented"]["mean"] - r["mean"]) * 100 for r in rows]
    spread = statistics.fmean(r["sd"] for r in rows) * 100
    return (f"With the backbone frozen, augmentation changed the mean accuracy by {min(gains):+.1f} to "
            f"{max(gains):+.1f} points, against a spread of {spread:.1f} points between draws: it is no "
            "substitute for photos, which is why the advice asks for photos first.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="random draws (and head seeds) per size")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: the shared photos are not at {DATA} (see ../shared/datasets/README.md)")
        return
    from tlcore.data.sample_data import SAMPLE_CLASSES, write_sample_dataset
    from tlcore.lab.workspace import Workspace
    from tlcore.training.config import TrainConfig

    t0 = time.perf_counter()
    train_paths, train_labels = files(DATA, "train")
    classes = sorted(set(train_labels))
    x, y, kept = embed(train_paths, train_labels, classes)
    x_val, y_val, _ = embed(*files(DATA, "val"), classes)
    kept_paths, kept_labels = [train_paths[i] for i in kept], [train_labels[i] for i in kept]
    augmented = [embed(kept_paths, kept_labels, classes, copy)[0] for copy in range(1, TrainConfig.augment_copies + 1)]
    counts = "/".join(str(int((y == i).sum())) for i in range(len(classes)))
    print(f"hymenoptera: {len(y)} training and {len(y_val)} validation photos embedded", flush=True)
    hym = curve(x, y, x_val, y_val, SIZES, args.seeds, augmented)

    per_sample = Workspace.load_sample.__defaults__[0]  # what the Data page's button loads
    with tempfile.TemporaryDirectory(prefix="bench-tiers-") as tmp:
        # The Data page's sample is seed 0; fresh shapes from another seed to score on.
        sample = write_sample_dataset(Path(tmp) / "sample", per_class=per_sample)
        fresh = write_sample_dataset(Path(tmp) / "fresh", per_class=SAMPLE_HELD_OUT, seed=1)
        sx, sy, _ = embed(*files(sample), list(SAMPLE_CLASSES))
        sx_val, sy_val, _ = embed(*files(fresh), list(SAMPLE_CLASSES))
    print(f"sample: {len(sy)} photos, scored on {len(sy_val)} fresh ones", flush=True)
    shapes = curve(sx, sy, sx_val, sy_val, [n for n in SAMPLE_SIZES if n <= per_sample], args.seeds)

    seconds = time.perf_counter() - t0
    body = f"""## Data tiers: accuracy against photos per class

`scripts/bench_data_tiers.py`: EfficientNet-Lite0 with its offline ImageNet weights, frozen; each head
trained as phase 1 trains it (`HeadTrainer`, `TrainConfig` defaults: 20 epochs, batch 32, learning rate 1e-3,
dropout 0.2) on a random draw of N training photos per class, a new draw and head seed for each of the
{args.seeds} seeds. "With augmentation" adds {TrainConfig.augment_copies} augmented copies of each drawn photo (flip,
brightness, contrast and saturation up to {TrainConfig.augment_strength:g}), as training with augmentation on does.
These figures ground the tiers of `tlcore/data/advice.py`, which the Data page, the health report
(`python -m tlcore check`), the training alarm `few_images`, the checklist and the README all use.

- Date: {date.today().isoformat()}
- CPU: {cpu_description()}; run time {seconds:.0f} s, embedding included (a head trains in
  about {statistics.fmean(r['seconds_per_head'] for r in hym):.2f} s on cached features)

### Ants vs bees (`../shared/datasets/hymenoptera`), scored on all {len(y_val)} photos of `val/`

{table(hym, counts + " " + "/".join(classes))}

### The built-in shapes sample (3 classes), scored on {SAMPLE_HELD_OUT} fresh shapes per class

Draws from the {per_sample} photos per class the Data page's sample button loads (seed 0); the
fresh shapes are drawn with seed 1.

{table(shapes, str(per_sample))}

### The tiers

{tiers_text(hym)}

{augmentation_text(hym)} Ants and bees are an easy pair for an ImageNet backbone: classes that look alike,
or photos unlike ImageNet's (scans, microscopy, factory parts), need more photos for the same accuracy.
"""
    replace_section("data_tiers", body)
    print(json.dumps({"hymenoptera": hym, "sample": shapes, "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
