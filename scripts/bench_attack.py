"""Benchmark the adversarial attacks on the shared ants/bees photos and write its section of docs/BENCHMARKS.md.

Trains the default backbone with the README's CLI command, then on ``val/``:
untargeted PGD at epsilon 0.03 (10 steps), targeted PGD (20 steps) pushing
the ants towards 'bees' (saving the adversarial images, which are checked to
stay within epsilon of the photos), FGSM at 0.03, and the robustness curve
(FGSM and PGD accuracy against epsilon, ``python -m tlcore robustness``) on a
seeded subset of ``val/``. Records the figures, the time per image and the
largest L-infinity distance seen, with a pass/fail line for each of the
adversarial lab's "Done when" criteria. Everything runs as a user would: fresh
``python -m tlcore`` processes with a cold feature cache in a temporary folder.

Usage: ``make bench`` (or ``python scripts/bench_attack.py [--curve-images N]``).
Skips, with a message and exit status 0, when the photos are absent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from bench_core import machine, run_cli
from benchdoc import DOC, replace_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
REL_DATA = "../shared/datasets/hymenoptera"

# The adversarial lab's "Done when" settings and thresholds.
EPSILON = 0.03
PGD_STEPS = 10
TARGETED_STEPS = 20
TARGET = "bees"
MIN_CLEAN_ACCURACY = 0.9
MAX_PGD_ACCURACY = 0.2
MIN_TARGETED_SUCCESS = 0.9

CURVE_EPSILONS = [0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03]
# PGD costs 0.3-1.5 s per photo per 10 steps on a 2-core CPU: 64 photos keep the curve to a few minutes.
CURVE_IMAGES = 64


def attack(run_dir: Path, method: str, cache: Path, steps: int = PGD_STEPS, target: str | None = None,
           out: Path | None = None) -> tuple[dict, float, list[str]]:
    args = ["attack", str(run_dir), str(DATA / "val"), "--method", method, "--epsilon", str(EPSILON)]
    if method == "pgd":
        args += ["--steps", str(steps)]
    if target:
        args += ["--target", target]
    if out:
        args += ["--out", str(out)]
    result, wall = run_cli(args, cache)
    return result, wall, args


def saved_images_linf(out: Path, classes: list[str], size: int) -> tuple[int, float]:
    """How many PNGs ``--out`` wrote, and their largest L-inf distance (fraction of 0..255) from the photos."""
    sys.path.insert(0, str(ROOT))
    from tlcore.data.images import load_image

    originals = {}
    for name in classes:
        for path in sorted((DATA / "val" / name).iterdir()):
            originals[(name, path.stem)] = path
    worst, count = 0.0, 0
    for png in sorted(out.rglob("*.png")):
        original = load_image(originals[(png.parent.name, png.stem)], size).astype(np.int64)
        worst = max(worst, float(np.abs(load_image(png).astype(np.int64) - original).max()) / 255)
        count += 1
    return count, worst


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def command(args: list[str]) -> str:
    """The command as a user would type it (relative paths)."""
    text = " ".join(["python -m tlcore", *args, "--json"])
    return text.replace(str(DATA), REL_DATA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curve-images", type=int, default=CURVE_IMAGES,
                        help=f"val photos the robustness curve is measured on (default {CURVE_IMAGES}; 153 is all)")
    args = parser.parse_args()
    if not (DATA / "train").is_dir() or not (DATA / "val").is_dir():
        print(f"bench_attack: skipped, the shared photos are missing at {DATA} (see ../shared/datasets/README.md)")
        return

    t_script = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-attack-") as tmp:
        tmp = Path(tmp)
        cache, run_dir = tmp / "cache", tmp / "runs" / "hym"
        print("training ...", flush=True)
        trained, train_wall = run_cli(["train", str(DATA), "--out", str(run_dir)], cache)
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        size, classes = int(config["input_size"]), list(config["classes"])

        print(f"PGD, epsilon {EPSILON}, {PGD_STEPS} steps, on val/ ...", flush=True)
        pgd, pgd_wall, pgd_args = attack(run_dir, "pgd", cache)
        print(f"targeted PGD towards {TARGET!r}, {TARGETED_STEPS} steps ...", flush=True)
        out = tmp / "adversarial"
        targeted, targeted_wall, targeted_args = attack(run_dir, "pgd", cache, TARGETED_STEPS, TARGET, out)
        n_saved, saved_linf = saved_images_linf(out, classes, size)
        print(f"FGSM, epsilon {EPSILON} ...", flush=True)
        fgsm, fgsm_wall, fgsm_args = attack(run_dir, "fgsm", cache)

        print(f"robustness curve on {args.curve_images} val photos ...", flush=True)
        events_file = tmp / "curve-events.jsonl"
        curve_args = ["robustness", str(run_dir), "--epsilons", ",".join(f"{e:g}" for e in CURVE_EPSILONS),
                      "--steps", str(PGD_STEPS), "--limit", str(args.curve_images)]
        curve, curve_wall = run_cli(curve_args + ["--progress", str(events_file)], cache)
        events = [json.loads(line) for line in events_file.read_text(encoding="utf-8").splitlines()]
    script_seconds = time.perf_counter() - t_script
    load_after = os.getloadavg()[0]

    # Seconds per curve point, from the progress events' clocks (each point: attack + prediction).
    points = [e for e in events if e["type"] == "robustness"]
    starts = [next(e["time"] for e in events if e["type"] == "start")] + [e["time"] for e in points[:-1]]
    point_ms = {(e["method"], e["epsilon"]): (e["time"] - t0) / curve["n"] * 1000 for e, t0 in zip(points, starts)}
    curve_ms = {m: np.mean([ms for (method, eps), ms in point_ms.items() if method == m and eps > 0])
                for m in ("fgsm", "pgd")}

    curve_rows = "\n".join(
        f"| {eps:g} | {eps * 255:.2f} | {pct(curve['fgsm'][i])} | {pct(curve['pgd'][i])} |"
        for i, eps in enumerate(curve["epsilons"]))
    results = [("PGD, untargeted", PGD_STEPS, pgd),
               (f"PGD, targeted at '{TARGET}' (ants only)", TARGETED_STEPS, targeted),
               ("FGSM, untargeted", 1, fgsm)]
    attack_rows = "\n".join(
        f"| {label} | {steps} | {r['n']} | {pct(r['clean_accuracy'])} | {pct(r['adversarial_accuracy'])} | "
        f"{pct(r['success_rate'])} | {r['mean_linf']:.6f} | {r['max_linf']:.6f} | {r['ms_per_image']:.0f} |"
        for label, steps, r in results)

    fgsm_curve = curve["fgsm"]
    low = int(np.argmin(fgsm_curve))
    fgsm_note = ""
    if max(fgsm_curve[low:]) > fgsm_curve[low]:
        fgsm_note = (f"\n\nFGSM's accuracy is lowest at epsilon {curve['epsilons'][low]:g} "
                     f"({pct(fgsm_curve[low])}) and rises again beyond it ({pct(fgsm_curve[-1])} at "
                     f"{curve['epsilons'][-1]:g}): its single step follows the sign of the gradient at the clean "
                     "photo, which no longer points uphill far from it. PGD takes the gradient again at every "
                     "step, so its accuracy keeps falling.")
    max_linf = max(r["max_linf"] for _, _, r in results)
    ok_clean = pgd["clean_accuracy"] >= MIN_CLEAN_ACCURACY
    ok_pgd = pgd["adversarial_accuracy"] <= MAX_PGD_ACCURACY
    ok_targeted = targeted["success_rate"] >= MIN_TARGETED_SUCCESS
    ok_fgsm = fgsm["adversarial_accuracy"] < fgsm["clean_accuracy"]
    ok_linf = max_linf <= EPSILON and saved_linf <= EPSILON
    criteria = "\n".join([
        f"- PGD at epsilon {EPSILON} ({PGD_STEPS} steps) drops validation accuracy from >= {MIN_CLEAN_ACCURACY:.0%} "
        f"to <= {MAX_PGD_ACCURACY:.0%}: {verdict(ok_clean and ok_pgd)} ({pct(pgd['clean_accuracy'])} -> "
        f"{pct(pgd['adversarial_accuracy'])} on {pgd['n']} photos)",
        f"- Targeted PGD ({TARGETED_STEPS} steps) sends >= {MIN_TARGETED_SUCCESS:.0%} of ants to '{TARGET}': "
        f"{verdict(ok_targeted)} ({pct(targeted['success_rate'])} of {targeted['n']} ants)",
        f"- FGSM lowers accuracy: {verdict(ok_fgsm)} ({pct(fgsm['clean_accuracy'])} -> "
        f"{pct(fgsm['adversarial_accuracy'])})",
        f"- The L-infinity distance never exceeds epsilon: {verdict(ok_linf)} (largest {max_linf:.6f} over the three "
        f"commands' float images, {saved_linf:.6f} = {saved_linf * 255:.0f}/255 over the {n_saved} saved 8-bit PNGs, "
        f"epsilon {EPSILON} = {EPSILON * 255:.2f}/255; asserted for every method by `tests/core/test_attacks.py`)",
    ])

    curve_cmd = command(curve_args)
    body = f"""## Adversarial attacks: ants vs bees, EfficientNet-Lite0

Commands (run by `scripts/bench_attack.py`, fresh processes, cold feature cache):

```
python -m tlcore train {REL_DATA} --out runs/hym --json
{command(pgd_args).replace(str(run_dir), 'runs/hym')}
{command(targeted_args).replace(str(run_dir), 'runs/hym').replace(str(out), 'adversarial')}
{command(fgsm_args).replace(str(run_dir), 'runs/hym')}
{curve_cmd.replace(str(run_dir), 'runs/hym')}
```

Default backbone (EfficientNet-Lite0, offline ImageNet weights, head only), validation accuracy
{pct(trained['val_accuracy'])} after training. Epsilon is a fraction of the 0..255 pixel range
({EPSILON} = {EPSILON * 255:.2f} levels); PGD takes steps of 2.5 x epsilon / steps from a random start
inside the ball (the defaults). The attacks differentiate the whole model, preprocessing included.

- Date: {date.today().isoformat()}
- Machine: {machine()}
- Script run time: {script_seconds:.0f} s (training {train_wall:.0f} s, PGD {pgd_wall:.0f} s, targeted PGD
  {targeted_wall:.0f} s, FGSM {fgsm_wall:.0f} s, robustness curve {curve_wall:.0f} s; wall times include
  starting Python and TensorFlow and decoding the photos)
- 1-minute load average before and after: {load_before:.1f} and {load_after:.1f} (times are only
  comparable between runs on an otherwise idle machine; accuracies do not depend on it)

### Attacks on all of `val/` at epsilon {EPSILON}

| attack | steps | photos | clean accuracy | adversarial accuracy | success rate | mean L-inf | max L-inf | ms/photo |
|---|---|---|---|---|---|---|---|---|
{attack_rows}

"Success rate": untargeted, the share of correctly classified photos the attack made wrong;
targeted, the share of attacked photos now classified as '{TARGET}' (the bees of `val/` are left
out, so only the {targeted['n']} ants are attacked). L-inf distances are fractions of the pixel range.
"ms/photo" is the attack alone (gradient steps in batches of 16), not decoding or prediction.

### Robustness curve

Accuracy against epsilon on {curve['n']} photos of `{curve['split']}/` (a seeded random subset of its
{trained['n_val']}, to keep PGD's cost down; the full-`val/` figures at {EPSILON} are in the table above),
PGD with {curve['steps']} steps:

| epsilon | levels of 255 | FGSM accuracy | PGD accuracy |
|---|---|---|---|
{curve_rows}{fgsm_note}

Time per photo and curve point (attack and prediction, from the progress events): FGSM
{curve_ms['fgsm']:.0f} ms, PGD ({curve['steps']} steps) {curve_ms['pgd']:.0f} ms; the whole curve took
{curve['seconds']:.0f} s.

### Adversarial lab criteria

{criteria}
"""
    text = replace_section("attack", body, DOC)
    print(body)
    print(f"wrote the attack section of {DOC.relative_to(ROOT)} ({len(text.splitlines())} lines in all)")


if __name__ == "__main__":
    main()
