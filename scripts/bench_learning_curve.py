"""Will more photos help? The learning curve of the shared ants and bees photos, timed uncached and cached.

Runs ``python -m tlcore learning-curve ../shared/datasets/hymenoptera --json`` twice in a fresh cache folder:
first with nothing cached (TensorFlow's import, Lite0's engine prepared for this machine, every photo embedded),
then again (every embedding from the cache: what the Train page's panel costs once the photos were trained on).
Writes the points, the per-class figures, the extrapolation, the seconds and the CPU into the
``learning_curve`` section of docs/BENCHMARKS.md.

    .venv/bin/python scripts/bench_learning_curve.py [DATA]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import ROOT, cpu_description, replace_section  # noqa: E402  (scripts/ is this file's folder)

DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"


def run(data: Path, cache: Path) -> tuple[dict, float]:
    """The curve's JSON and the command's wall-clock seconds (process start to exit)."""
    env = {**os.environ, "TLCORE_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tlcore", "learning-curve", str(data), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"learning-curve failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    if not data.is_dir():
        raise SystemExit(f"no photos at {data} (see ../shared/datasets/README.md)")
    with tempfile.TemporaryDirectory(prefix="tl-curve-") as cache:
        cold, cold_s = run(data, Path(cache))
        warm, warm_s = run(data, Path(cache))
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    rows = "\n".join(f"| {p['fraction']:.0%} | {p['photos_per_class']:g} | {pct(p['val_accuracy'])} | {pct(p['std'])} | "
                     + " / ".join(pct(r) for r in p["runs"]) + " |" for p in warm["points"])
    classes = "\n".join(
        f"| {name} | {' → '.join(pct(p['val_accuracy']) for p in e['points'])} | {e['extrapolation']['photos_per_class']:g} "
        f"| {pct(e['extrapolation']['expected_accuracy'])} ({e['extrapolation']['gain'] * 100:+.1f}) |"
        for name, e in warm["per_class"].items())
    x, fit = warm["extrapolation"], warm["fit"]
    most = (f"{x['class_gaining_most']} (+{x['class_gain'] * 100:.1f} points)" if x["class_gaining_most"]
            else "none (no class is expected to gain half a point)")
    same = "the same" if cold["points"] == warm["points"] else "NOT the same"
    body = f"""## Learning curve: will more photos help? (ants vs bees, EfficientNet-Lite0)

`python -m tlcore learning-curve ../shared/datasets/hymenoptera --json` with its defaults: heads (the Train page's:
dropout 0.2, Adam 1e-3, batches of 32, as many steps as 20 epochs of the whole training split) on 10, 25, 50, 75 and
100% of the {warm['n_train']} training photos (stratified, nested, {warm['repeats']} subsets and seeds per share), each
scored on the {warm['n_val']} validation photos. Measured by `scripts/bench_learning_curve.py` on {date.today().isoformat()}.

| share | photos per class | validation accuracy | std | the {warm['repeats']} heads |
|---|---|---|---|---|
{rows}

| class | recall, 10% → 100% | photos now | with twice the photos |
|---|---|---|---|
{classes}

- Fit: {fit['method'].replace('_', ' ')} `accuracy = {fit['a']:.3f} - {fit['b']:.3f} * n^-{fit['c']:.3f}` (RMS distance
  {fit['rmse']:.4f}). With twice the photos ({x['more_photos_per_class']:g} per class instead of {x['photos_per_class']:g}),
  expect about **{pct(x['expected_accuracy'])}** (now {pct(x['accuracy'])}). Class that would gain most: {most}.
- Time, uncached (a fresh cache: TensorFlow's import, Lite0's engine prepared for this machine, {cold['computed']}
  photos embedded): **{cold_s:.1f} s** wall clock ({cold['seconds']['embedding']:.1f} s embedding,
  {cold['seconds']['heads']:.1f} s for the {len(warm['points']) * warm['repeats']} heads).
- Time, cached ({warm['cache_hits']} embeddings from the cache, as after training on these photos): **{warm_s:.1f} s**
  wall clock, of which {warm['seconds']['total']:.1f} s of work ({warm['seconds']['heads']:.1f} s for the heads); the
  rest is the process start and TensorFlow's import. The two runs' curves are {same}.
- CPU: {cpu_description()}.
"""
    replace_section("learning_curve", body)
    print(body)


if __name__ == "__main__":
    main()
