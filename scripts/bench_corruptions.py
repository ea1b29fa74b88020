"""Benchmark the everyday corruptions on the shared ants/bees photos and write its section of docs/BENCHMARKS.md.

Trains the default backbone (EfficientNet-Lite0, offline ImageNet weights, head only) with the README's CLI
command, then measures ``python -m tlcore corruptions RUN --json`` on the run's held-out photos (``val/``, all
153 of them): accuracy clean and under blur, noise, brightness, contrast, JPEG, rotation and a crop shift at
three severities each, the mean, and the seconds taken. Everything runs as a user would: fresh ``python -m
tlcore`` processes with a cold feature cache in a temporary folder. The severities' values are quoted from
``tlcore.adversarial.corruptions.SEVERITIES``, their one home.

Usage: ``python scripts/bench_corruptions.py [--run DIR]`` (``--run``: measure an existing run instead of
training one). Skips, with a message and exit status 0, when the photos are absent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

from bench_core import machine, run_cli
from benchdoc import replace_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
REL_DATA = "../shared/datasets/hymenoptera"


def pct(x: float) -> str:
    return f"{x:.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="measure this run instead of training one")
    args = parser.parse_args()
    if not (DATA / "train").is_dir() or not (DATA / "val").is_dir():
        print(f"skipped: the shared photos are not in {DATA}", file=sys.stderr)
        return 0
    sys.path.insert(0, str(ROOT))
    from tlcore.adversarial.corruptions import CORRUPTIONS, SEVERITIES, SEVERITY_UNITS

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        train_wall = None
        run_dir = args.run
        if run_dir is None:
            run_dir = Path(tmp) / "hym"
            print("training ...", flush=True)
            trained, train_wall = run_cli(["train", str(DATA), "--out", str(run_dir)], cache)
            val_accuracy = trained["val_accuracy"]
        else:
            val_accuracy = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("val_accuracy")
        print("measuring the corruptions ...", flush=True)
        result, wall = run_cli(["corruptions", str(run_dir)], cache)
    load_after = os.getloadavg()[0]

    by = {(r["corruption"], r["severity"]): r["accuracy"] for r in result["results"]}
    rows = []
    for name in CORRUPTIONS:
        values = SEVERITIES[name]
        accuracies = [by[(name, s)] for s in (1, 2, 3)]
        rows.append(f"| {name.replace('_', ' ')} | {SEVERITY_UNITS[name]} | "
                    + " | ".join(f"{pct(a)} ({v:g})" for a, v in zip(accuracies, values))
                    + f" | {pct(sum(accuracies) / 3)} |")
    worst = min(result["results"], key=lambda r: r["accuracy"])
    per_image = result["seconds"] / (result["n"] * (1 + 3 * len(CORRUPTIONS))) * 1000
    trained_line = (f"training {train_wall:.0f} s, " if train_wall is not None else "")
    body = f"""
## Everyday corruptions: ants vs bees, EfficientNet-Lite0

Commands (run by `scripts/bench_corruptions.py`, fresh processes, cold feature cache):

```
python -m tlcore train {REL_DATA} --out runs/hym --json
python -m tlcore corruptions runs/hym --json
```

Default backbone (EfficientNet-Lite0, offline ImageNet weights, head only), validation accuracy
{pct(val_accuracy) if val_accuracy is not None else "–"} after training. Measured on the run's held-out photos: {result['n']} photos of
`val/` ({result['source']} split), each corrupted at the model's input size (224 x 224), the noise drawn from
seed {result['settings']['seed']} plus the photo's index. The severities are `SEVERITIES` in
`tlcore/adversarial/corruptions.py` (their values in brackets below).

- Date: {date.today().isoformat()}
- Machine: {machine()}
- Times: {trained_line}corruptions command {wall:.0f} s wall, of which {result['seconds']:.1f} s measuring
  ({result['n']} photos x 22 passes, clean and 21 corrupted: {per_image:.1f} ms per photo and pass, corrupting and
  predicting in batches of {result['settings']['batch_size']})
- 1-minute load average before and after: {load_before:.1f} and {load_after:.1f} (times are only
  comparable between runs on an otherwise idle machine; accuracies do not depend on it)

Clean accuracy **{pct(result['clean_accuracy'])}**; mean accuracy under the 21 corruptions
**{pct(result['mean_accuracy'])}**; the worst, {worst['corruption'].replace('_', ' ')} at severity {worst['severity']}:
{pct(worst['accuracy'])}.

| corruption | unit | severity 1 | severity 2 | severity 3 | mean |
|---|---|---:|---:|---:|---:|
""" + "\n".join(rows) + "\n"
    replace_section("corruptions", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
