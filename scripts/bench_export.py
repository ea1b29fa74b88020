"""Benchmark TFLite export on the shared ants/bees photos and write its section of docs/BENCHMARKS.md.

Trains the default backbone with the README's CLI command, exports the run to
the four TFLite formats (plus INT8 with uint8 input and output) calibrating on
``train/`` and verifying against Keras on ``val/``, then records size, accuracy,
agreement, latency and conversion time per format, a pass/fail line for each of
issue 4's criteria, and how INT8 accuracy moves with the calibration sample.
Everything runs as a user would: fresh ``python -m tlcore`` processes with a
cold feature cache in a temporary folder.

Usage: ``make bench`` (or ``python scripts/bench_export.py [--no-sweep]``).
Skips, with a message and exit status 0, when the photos are absent.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

from bench_core import machine, run_cli
from benchdoc import DOC, replace_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
REL_DATA = "../shared/datasets/hymenoptera"
FORMATS = ("tflite-float32", "tflite-float16", "tflite-dynamic", "tflite-int8")

# Issue 4's "Done when" thresholds.
INT8_MAX_DROP_POINTS = 1.0
INT8_MAX_SIZE_RATIO = 0.35
FLOAT32_MIN_AGREEMENT = 0.99

# All 245 training photos: within the recommended 100-500, and with every photo in the
# sample the result no longer depends on which ones the seed happens to draw.
CALIBRATION_SAMPLES = 245
SWEEP = [(100, 0), (100, 1), (100, 2), (200, 0), (200, 1), (200, 2)]


def export(run_dir: Path, formats: list[str], out: Path, cache: Path, samples: int, seed: int = 0,
           int8_io: bool = False) -> tuple[dict, float]:
    args = ["export", str(run_dir), "--format", ",".join(formats), "--out", str(out),
            "--calibration", str(DATA / "train"), "--calibration-samples", str(samples), "--seed", str(seed),
            "--verify", str(DATA / "val")]
    return run_cli(args + (["--int8-io"] if int8_io else []), cache)


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def points(e: dict) -> float:
    v = e["verification"]
    return (v["tflite_accuracy"] - v["keras_accuracy"]) * 100


def format_row(label: str, e: dict, float32_bytes: int) -> str:
    v = e["verification"]
    return (f"| {label} | `{Path(e['path']).name}` | {e['size_bytes'] / 1e6:.2f} | "
            f"{e['size_bytes'] / float32_bytes:.3f} | {pct(v['keras_accuracy'])} | {pct(v['tflite_accuracy'])} | "
            f"{points(e):+.1f} | {pct(v['agreement'])} | {v['max_probability_difference']:.3f} | "
            f"{v['latency_ms']:.1f} | {v['keras_latency_ms']:.1f} | {e['convert_seconds']:.1f} |")


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES)
    parser.add_argument("--no-sweep", action="store_true",
                        help="skip the INT8 calibration-sample sweep (saves about 5 minutes)")
    args = parser.parse_args()
    if not (DATA / "train").is_dir() or not (DATA / "val").is_dir():
        print(f"bench_export: skipped, the shared photos are missing at {DATA} "
              "(see ../shared/datasets/README.md)")
        return

    t_script = time.perf_counter()
    load_before = os.getloadavg()[0]
    n = args.calibration_samples
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        cache, run_dir = tmp / "cache", tmp / "run"
        print("training ...", flush=True)
        trained, train_wall = run_cli(["train", str(DATA), "--out", str(run_dir)], cache)
        print("exporting the four TFLite formats ...", flush=True)
        main_run, main_wall = export(run_dir, list(FORMATS), tmp / "exports", cache, n)
        print("exporting INT8 with uint8 input and output ...", flush=True)
        io_run, io_wall = export(run_dir, ["tflite-int8"], tmp / "uint8io" / "model_int8_uint8io.tflite", cache, n,
                                 int8_io=True)
        sweep = []
        if not args.no_sweep:
            for samples, seed in SWEEP:
                print(f"INT8 calibration sweep: {samples} images, seed {seed} ...", flush=True)
                r, _ = export(run_dir, ["tflite-int8"], tmp / f"int8_{samples}_{seed}.tflite", cache, samples, seed)
                sweep.append((samples, seed, r))
    script_seconds = time.perf_counter() - t_script
    load_after = os.getloadavg()[0]

    by_format = {e["format"]: e for e in main_run["exports"]}
    f32, int8 = by_format["tflite-float32"], by_format["tflite-int8"]
    io = {k: io_run[k] for k in ("format", "path", "size_bytes", "convert_seconds", "verification")}
    rows = [format_row(fmt, by_format[fmt], f32["size_bytes"]) for fmt in FORMATS]
    rows.append(format_row("tflite-int8, uint8 I/O", io, f32["size_bytes"]))
    table = "\n".join([
        "| format | file | size MB | × float32 size | Keras accuracy | TFLite accuracy | change (points) "
        "| top-1 agreement | max probability difference | TFLite ms/image | Keras ms/image | conversion s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])

    drop = round(-points(int8), 6)  # exactly one point is allowed; floats would make it 1.0000000000000009
    ratio = int8["size_bytes"] / f32["size_bytes"]
    agreement = f32["verification"]["agreement"]
    n_val = main_run["verification_data"]["n"]
    criteria = "\n".join([
        f"- INT8 accuracy within {INT8_MAX_DROP_POINTS:.0f} point of Keras: {verdict(drop <= INT8_MAX_DROP_POINTS)} "
        f"({pct(int8['verification']['tflite_accuracy'])} vs {pct(int8['verification']['keras_accuracy'])}, "
        f"{points(int8):+.1f} points; one photo of {n_val} is {100 / n_val:.2f} points)",
        f"- INT8 file at most {INT8_MAX_SIZE_RATIO}× the float32 file: {verdict(ratio <= INT8_MAX_SIZE_RATIO)} "
        f"({int8['size_bytes'] / 1e6:.2f} MB / {f32['size_bytes'] / 1e6:.2f} MB = {ratio:.3f}×)",
        f"- float32 TFLite top-1 agreement with Keras at least {FLOAT32_MIN_AGREEMENT:.0%}: "
        f"{verdict(agreement >= FLOAT32_MIN_AGREEMENT)} ({pct(agreement)})",
    ])

    sweep_text = ""
    if sweep:
        all_train = int8["calibration_samples"] >= trained["n_train"]
        label = f"{int8['calibration_samples']} (all of `train/`)" if all_train else str(int8["calibration_samples"])
        sweep_rows = [f"| {label} | {'any' if all_train else 0} | {pct(int8['verification']['tflite_accuracy'])} | "
                      f"{points(int8):+.1f} | {pct(int8['verification']['agreement'])} |"]
        for samples, seed, r in sweep:
            v = r["verification"]
            sweep_rows.append(f"| {samples} | {seed} | {pct(v['tflite_accuracy'])} | "
                              f"{(v['tflite_accuracy'] - v['keras_accuracy']) * 100:+.1f} | {pct(v['agreement'])} |")
        worst = max([drop] + [(r["verification"]["keras_accuracy"] - r["verification"]["tflite_accuracy"]) * 100
                              for _, _, r in sweep])
        sweep_text = f"""
### INT8 accuracy against the calibration sample

Same trained run, float input and output, `--calibration-samples N --seed S` (the seed
chooses which N training photos calibrate; with all {trained['n_train']} of them it changes nothing).

| calibration photos | seed | INT8 accuracy | change (points) | top-1 agreement |
|---|---|---|---|---|
{chr(10).join(sweep_rows)}

Worst loss over these samples: {worst:.1f} points (limit {INT8_MAX_DROP_POINTS:.0f}).
"""

    warnings = main_run["warnings"] + io_run["warnings"]
    warning_text = "; ".join(w["message"] for w in warnings) if warnings else "none"
    body = f"""## Export: ants vs bees, EfficientNet-Lite0 to TFLite

Commands (run by `scripts/bench_export.py`, fresh processes, cold feature cache):

```
python -m tlcore train {REL_DATA} --out runs/hym --json
python -m tlcore export runs/hym --format {','.join(FORMATS)} --out exports \\
    --calibration {REL_DATA}/train --calibration-samples {n} --verify {REL_DATA}/val --json
python -m tlcore export runs/hym --format tflite-int8 --int8-io --out exports/model_int8_uint8io.tflite \\
    --calibration {REL_DATA}/train --calibration-samples {n} --verify {REL_DATA}/val --json
```

Default backbone (EfficientNet-Lite0, offline ImageNet weights, head only), Keras validation
accuracy {pct(trained['val_accuracy'])}; INT8 calibrated on {int8['calibration_samples']} photos of `train/`,
every model checked on the {n_val} photos of `val/`.

- Date: {date.today().isoformat()}
- Machine: {machine()}
- Script run time: {script_seconds:.0f} s (training {train_wall:.0f} s, four formats {main_wall:.0f} s,
  uint8 I/O INT8 {io_wall:.0f} s{', calibration sweep the rest' if sweep else ''})
- 1-minute load average before and after: {load_before:.1f} and {load_after:.1f} (seconds and
  milliseconds are only comparable between runs on an otherwise idle machine; sizes and accuracies
  do not depend on it)

{table}

"× float32 size" is the file's size over the float32 file's. "Change" is TFLite minus Keras
accuracy on `val/`; "top-1 agreement" is the share of photos where both pick the same class.
Latencies are the median of single-photo calls after a warm-up (TFLite with LiteRT on
{os.cpu_count()} threads, Keras `predict` on one photo). Conversion seconds of the first
TFLite format of each command (float32, and the uint8 I/O INT8) include writing the batch-1
SavedModel the converter reads; INT8's include calibration. Export warnings: {warning_text}.

### Issue 4 criteria

{criteria}
{sweep_text}"""
    text = replace_section("export", body, DOC)
    print(body)
    print(f"wrote the export section of {DOC.relative_to(ROOT)} ({len(text.splitlines())} lines in all)")


if __name__ == "__main__":
    main()
