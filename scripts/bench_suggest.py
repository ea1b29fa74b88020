"""Labelling help on real photos: how right the suggestions are, and how fast.

A Lite0 run (offline ImageNet weights, ``TrainConfig``'s defaults, as the Train page makes it) is trained on
``--labelled`` photos per class drawn from ``train/`` of the shared ants/bees photos (seed 0); every other
training photo is then given to :func:`tlcore.models.suggest.suggest` as unlabelled, exactly as
``python -m tlcore suggest RUN PHOTOS`` does. Reported: the accuracy of the suggestions overall, among the most
confident half and at or above the default threshold (``SuggestConfig.threshold``), and the seconds per photo of
the suggestion pass (decoding and prediction; the model's load is timed apart), with the CPU.

Usage: ``python scripts/bench_suggest.py [--labelled 30]``. Writes the ``suggest`` section of
docs/BENCHMARKS.md; the last line printed is the JSON of all numbers. The photos are read from
``../shared/datasets/hymenoptera`` and never copied (the training folder holds links to them, in a temporary
folder).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"

from benchdoc import cpu_description, replace_section  # noqa: E402  (scripts/ is this file's folder)

ROUND = 100  # the Data page's photos per round (ui/views/suggest.py, MAX_PHOTOS)


def link_folder(root: Path, files: dict[str, list[Path]]) -> Path:
    """``root/<class>/<name>`` linking to each photo: a folder of class folders without copying a photo."""
    for label, paths in files.items():
        (root / label).mkdir(parents=True)
        for p in paths:
            (root / label / p.name).symlink_to(p)
    return root


def measure(labelled: int, seed: int = 0) -> dict:
    from tlcore.models.model_files import load_model_file
    from tlcore.models.suggest import SuggestConfig, suggest_labels
    from tlcore.data.unlabelled import UnlabelledPhoto
    from tlcore.training.config import TrainConfig
    from tlcore.training.pipeline import train

    rng = random.Random(seed)
    chosen, rest = {}, []
    for class_dir in sorted(p for p in (DATA / "train").iterdir() if p.is_dir()):
        photos = sorted(class_dir.iterdir())
        rng.shuffle(photos)
        chosen[class_dir.name] = photos[:labelled]
        rest += [(p, class_dir.name) for p in photos[labelled:]]
    with tempfile.TemporaryDirectory(prefix="bench-suggest-") as tmp:
        data = link_folder(Path(tmp) / "labelled", chosen)
        start = time.perf_counter()
        summary = train(data, TrainConfig(split=(0.8, 0.2, 0.0), seed=seed), out=Path(tmp) / "run")
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model = load_model_file(Path(tmp) / "run")
        load_seconds = time.perf_counter() - start
        photos = [UnlabelledPhoto(str(p), p) for p, _ in rest]
        truth = {str(p): label for p, label in rest}
        config = SuggestConfig()
        suggest_labels(model, photos[:config.batch_size], config)  # the first batch builds Keras's function
        start = time.perf_counter()
        result = suggest_labels(model, photos, config)
        seconds = time.perf_counter() - start
    rows = result.rows  # least confident first
    right = [truth[s.path] == s.suggested for s in rows]
    half = right[len(right) - len(right) // 2:]  # the most confident half
    sure = [truth[s.path] == s.suggested for s in result.sure(config.threshold)]
    return {
        "labelled_per_class": labelled, "train_photos": summary["n_train"], "val_photos": summary["n_val"],
        "val_accuracy": summary["val_accuracy"], "unlabelled": len(photos), "suggested": len(rows),
        "skipped": len(result.skipped), "accuracy": sum(right) / len(right),
        "confident_half": {"n": len(half), "accuracy": sum(half) / len(half),
                           "lowest_confidence": rows[len(rows) - len(half)].confidence},
        "least_confident_half": {"n": len(right) - len(half),
                                 "accuracy": sum(right[:len(right) - len(half)]) / (len(right) - len(half))},
        "threshold": {"value": config.threshold, "n": len(sure), "accuracy": sum(sure) / len(sure) if sure else None},
        "mistakes_in_first_quarter": sum(not r for r in right[:len(right) // 4]), "mistakes": sum(not r for r in right),
        "seconds": seconds, "seconds_per_photo": seconds / len(photos), "batch_size": config.batch_size,
        "load_seconds": load_seconds, "train_seconds": train_seconds, "cpu": cpu_description(), "date": date.today().isoformat(),
    }


def section(r: dict) -> str:
    return f"""## Labelling help: suggestions for unlabelled photos

`scripts/bench_suggest.py`: a Lite0 run (offline ImageNet weights, `TrainConfig` defaults, split 80/20/0) trained
on {r['labelled_per_class']} photos per class drawn from `train/` of `../shared/datasets/hymenoptera` (seed 0;
{r['train_photos']} to train, {r['val_photos']} to validate, {r['val_accuracy']:.1%} validation accuracy); the other
{r['unlabelled']} training photos given to `tlcore.models.suggest` as unlabelled, as `python -m tlcore suggest` and
the Data page's "Labelling help" panel give them.

- Date: {r['date']}
- CPU: {r['cpu']}

| | photos | suggestions right |
|---|---|---|
| all | {r['suggested']} | {r['accuracy']:.1%} |
| the most confident half (confidence from {r['confident_half']['lowest_confidence']:.1%}) | {r['confident_half']['n']} | {r['confident_half']['accuracy']:.1%} |
| the least confident half (shown first) | {r['least_confident_half']['n']} | {r['least_confident_half']['accuracy']:.1%} |
| at or above the default threshold {r['threshold']['value']:.0%} (pre-selected on the page) | {r['threshold']['n']} | {'–' if r['threshold']['accuracy'] is None else format(r['threshold']['accuracy'], '.1%')} |

{r['mistakes_in_first_quarter']} of the {r['mistakes']} wrong suggestions are in the first quarter of the list
(least confident first): labelling those by hand catches them.

Speed: {r['seconds_per_photo']:.3f} s per photo ({r['seconds']:.1f} s for {r['unlabelled']} photos at batch
{r['batch_size']}: decoding the JPEGs and the Keras model; the first batch, which builds the model's function, is
run before timing), plus {r['load_seconds']:.1f} s to load the run once. The Data page therefore predicts inline
with a progress bar rather than as a background job: a few dozen photos take about
{30 * r['seconds_per_photo']:.1f} s, and a round of {ROUND} photos (`MAX_PHOTOS` of `ui/views/suggest.py`; more
wait for the next round) about {ROUND * r['seconds_per_photo']:.0f} s."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=int, default=30, help="labelled training photos per class")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared photos not found at {DATA}")
    result = measure(args.labelled)
    replace_section("suggest", section(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
