"""Export a trained run: TFLite (float32, float16, dynamic range, INT8), ONNX, a web page running the ONNX
model in the browser (:mod:`tlcore.export.web`), ``.keras`` and SavedModel.

Every TFLite export follows one contract: input float32 RGB pixels 0..255 of
shape ``[1, H, W, 3]`` (the backbone's normalisation is inside the graph),
output one probability per class, ``labels.txt`` beside the file. With
``int8_io`` an INT8 export takes uint8 pixels instead (microcontroller
style). The ONNX export keeps the same contract with a free batch,
``[batch, H, W, 3]``, and so does the web folder's ``model.onnx``. Each file is written to a temporary name and renamed
into place, so a failed conversion never leaves a partial file. TFLite and
ONNX exports (the :data:`VERIFIED_FORMATS`) are then checked against the
Keras model on held-out images (:mod:`tlcore.export.verify`).
Every file written is recorded as produced by this server
(:mod:`tlcore.io.produced`), so the dashboard may load it in its own process.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io.atomic import replace_dir, write_bytes_atomic
from ..io.errors import TLError
from ..data.images import ImageDecodeError, load_image
from ..io.produced import record_produced
from ..io.settings import as_positional, check_settings, setting, to_options
from ..jobs.events import CALIBRATING, CONVERTING, EVALUATING, LOADING, VERIFYING, PhaseCallback, no_phase
from ..models.conversion import TFLITE_FORMATS, convert_tflite, export_saved_model, tflite_converter
from ..models.onnx_conversion import convert_onnx
from ..models.run import RunModel, load_run
from ..models.run_files import held_out_samples, read_run_json
from ..training.alarms import alarm

__all__ = ["FORMATS", "TFLITE_FORMATS", "BUNDLED_FORMATS", "VERIFIED_FORMATS", "DEFAULT_FORMATS", "RECOMMENDED_CALIBRATION", "ExportConfig", "export_args", "default_filename", "calibration_files",
           "load_calibration", "export_formats", "export_model", "labelled_files"]

log = logging.getLogger("tlcore")

FORMATS = (*TFLITE_FORMATS, "keras", "saved-model", "onnx", "web")
# The files the bundle ZIP packs, with an example script each.
BUNDLED_FORMATS = (*TFLITE_FORMATS, "onnx")
# The exports run on the verification photos and compared with Keras (a web folder: its model.onnx, in ONNX Runtime;
# the browser itself is tested by tests/core/test_onnx_export.py).
VERIFIED_FORMATS = (*BUNDLED_FORMATS, "web")
_FILENAMES = {"tflite-float32": "model_float32.tflite", "tflite-float16": "model_float16.tflite",
              "tflite-dynamic": "model_dynamic.tflite", "tflite-int8": "model_int8.tflite",
              "keras": "model.keras", "saved-model": "saved_model", "onnx": "model.onnx",
              "web": "web"}
RECOMMENDED_CALIBRATION = (100, 500)
INT8_MAX_DROP = 0.01  # accuracy points (as a fraction) an INT8 export may lose before we say so

ProgressCallback = Callable[[int, dict], None]


@dataclass(frozen=True)
class ExportConfig:
    """Settings for an export; validated by :func:`export_formats`."""

    calibration_samples: int = setting(200, "how many calibration images for INT8 (100-500 recommended)", minimum=1,
                                       offered=(10, RECOMMENDED_CALIBRATION[1]), metavar="N",
                                       label="calibration size")
    int8_io: bool = setting(False, "INT8 model with uint8 input and output")
    seed: int = setting(0, "seed of the choice of calibration images")
    verify: bool = setting(True, "check each TFLite and ONNX file against Keras on the run's held-out photos (its test "
                                 "split, else its validation split) unless --verify gives other photos",
                           option="--no-verify", flag_help="do not check the TFLite and ONNX files against Keras")


# What the Export page offers first: the three TFLite files most devices take.
DEFAULT_FORMATS = ("tflite-float32", "tflite-float16", "tflite-int8")


def default_filename(fmt: str, int8_io: bool = False) -> str:
    """The file (or folder, for a SavedModel) name an export gets inside an output folder."""
    _check_format(fmt)
    if fmt == "tflite-int8" and int8_io:
        return "model_int8_uint8io.tflite"
    return _FILENAMES[fmt]


def export_args(config: ExportConfig, run_dir: str | Path, formats: Sequence[str], out: str | Path,
                bundle: str | Path | None = None) -> list[str]:
    """``tlcore export`` arguments that export ``run_dir`` to ``formats`` at ``out`` with ``config`` (and the
    bundle ZIP ``bundle``); checked first, so a refused setting starts no job."""
    for fmt in formats:
        _check_format(fmt)
    check_settings(config)
    args = ["export", as_positional(run_dir), f"--format={','.join(formats)}", f"--out={out}",
            *to_options(config, [f.name for f in fields(ExportConfig)])]
    return args + ([f"--bundle={bundle}"] if bundle else [])


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise TLError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _visible_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") or part == "__MACOSX"
                                             for part in p.relative_to(folder).parts))


def calibration_files(run_dir: str | Path, source: str | Path | None = None) -> list[str]:
    """Candidate calibration images: all files under ``source``, or the run's training split."""
    if source is None:
        samples = read_run_json(run_dir, "samples.json")
        files = [s["path"] for s in samples if s.get("split") == "train" and Path(s["path"]).is_file()]
        if not files:
            raise TLError("no calibration data: the run's training images are gone; give a folder of images")
        return files
    path = Path(source)
    if path.is_dir():
        files = _visible_files(path)
    elif path.is_file():
        from ..data.datasets import load_dataset

        files = [s.path for s in load_dataset(path).samples]
    else:
        raise TLError(f"calibration data {str(path)!r} does not exist")
    if not files:
        raise TLError(f"no calibration data: {str(path)!r} holds no files")
    return files


def load_calibration(files: Sequence[str], size: int, n: int, seed: int = 0,
                     on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, list[dict]]:
    """Up to ``n`` decodable images from ``files`` (shuffled with ``seed``) as uint8 ``(k, size, size, 3)``.

    Files that cannot be decoded are skipped and reported, not fatal. ``on_progress(done, total)`` hears
    each image read (``total``: as many as are wanted and there are files).
    """
    if n < 1:
        raise TLError(f"the calibration size must be at least 1 image, got {n}")
    order = list(files)
    random.Random(seed).shuffle(order)
    images, skipped = [], []
    wanted = min(n, len(order))
    for path in order:
        if len(images) >= n:
            break
        if on_progress:
            on_progress(len(images), wanted)
        try:
            images.append(load_image(path, size))
        except ImageDecodeError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
    if on_progress:
        on_progress(wanted, wanted)  # the last count, also when unreadable files left fewer images
    if not images:
        raise TLError("no calibration data: none of the calibration files is a readable image")
    return np.stack(images), skipped


def labelled_files(classes: Sequence[str], data) -> tuple[list[str], list[int], list[dict]]:
    """Files and class indices (in ``classes`` order) of labelled ``data``; unknown classes are an error."""
    from ..data.datasets import load_dataset

    dataset = load_dataset(data)
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise TLError(f"class {unknown[0]!r} in {str(data)!r} is not one the model knows ({', '.join(classes)})")
    return ([s.path for s in dataset.samples], [list(classes).index(s.label) for s in dataset.samples],
            list(dataset.skipped))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _write_keras(model, out: Path, run_config: dict | None = None) -> None:
    """``model.save`` to ``out``, plus the run's config as ``tlcore.json`` inside the archive.

    With that entry Transfer Lab reloads the file by rebuilding the
    architecture itself and reading only the weights (:mod:`tlcore.models.model_files`);
    Keras ignores the extra entry, so ``keras.saving.load_model`` still works.
    """
    import json
    import zipfile

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save(str(tmp / "model.keras"))
        if run_config is not None:
            with zipfile.ZipFile(tmp / "model.keras", "a") as archive:
                archive.writestr("tlcore.json", json.dumps(run_config, indent=2))
        os.replace(tmp / "model.keras", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _record(target: Path) -> None:
    """Record an export (each file of a SavedModel folder) as produced here, by content."""
    for path in sorted(target.rglob("*")) if target.is_dir() else [target]:
        if path.is_file():
            record_produced(path)


def _writeexport_saved_model(model, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        export_saved_model(model, tmp / "model", batch=None)
        replace_dir(tmp / "model", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_target(fmt: str, target: Path, int8_io: bool) -> None:
    """Refuse, before any work, a target an export would fail on or whose replacement would lose files."""
    if fmt == "web":
        from .web import missing_runtime

        reason = missing_runtime()
        if reason:
            raise TLError(reason)
        if target.exists() and not target.is_dir():
            raise TLError(f"{str(target)!r} is a file; a web export is written as a folder")
        if target.is_dir() and any(target.iterdir()) and not (target / "index.html").is_file():
            raise TLError(f"{str(target)!r} is a folder that is not a web export and exporting would replace it "
                          "with everything in it; choose a new folder")
    elif fmt == "saved-model":
        if target.exists() and not target.is_dir():
            raise TLError(f"{str(target)!r} is a file; a SavedModel is written as a folder")
        if target.is_dir() and any(target.iterdir()) and not (target / "saved_model.pb").is_file():
            raise TLError(f"{str(target)!r} is a folder that is not a SavedModel and exporting would replace it "
                          "with everything in it; choose a new folder")
    elif target.is_dir():
        raise TLError(f"{str(target)!r} is a folder; give the file to write, such as "
                      f"{str(target / default_filename(fmt, int8_io))!r}")


def _input_contract(run: RunModel, fmt: str, int8_io: bool) -> dict:
    size = run.input_size
    dtype = "uint8" if fmt == "tflite-int8" and int8_io else "float32"
    batch = 1 if fmt in TFLITE_FORMATS else None  # ONNX (the web's too), .keras and SavedModel take any batch
    return {"shape": [batch, size, size, 3], "dtype": dtype, "pixels": "RGB 0..255"}


def export_formats(
    run_dir: str | Path,
    formats: Sequence[str],
    out: str | Path,
    config: ExportConfig | None = None,
    calibration: str | Path | None = None,
    verify: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_phase: PhaseCallback | None = None,
) -> dict:
    """Export the run in ``run_dir`` to each of ``formats`` and check every TFLite and ONNX file.

    With one format ``out`` is the file to write (a folder for
    ``saved-model``); with several it is a folder and each export gets its
    :func:`default_filename`. ``labels.txt`` is written beside the exports.
    Calibration images come from ``calibration`` (a folder or zip) or else
    the run's training split; verification uses labelled ``verify`` data or
    else the run's held-out split (test, or validation when there is no test
    split) when ``config.verify``. ``on_progress(step, logs)`` hears about
    each stage; ``should_stop()`` is asked between formats. ``on_phase(phase,
    done=, total=, format=)`` hears each phase of :mod:`tlcore.jobs.events`
    before it starts, and its counts: ``loading`` the run, ``evaluating``
    the Keras model on the verification photos, ``calibrating`` (the INT8
    calibration photos read, then run by the converter), ``converting`` each
    format, ``verifying`` each TFLite and ONNX file on the verification photos.

    Returns ``{"run_dir", "exports": [...], "verification_data", "warnings",
    "stopped"}``; each export has ``format``, ``path``, ``size_bytes``,
    ``input`` and, for the :data:`VERIFIED_FORMATS`, ``verification`` (its
    ``exported_accuracy``, and for TFLite the same as ``tflite_accuracy``).
    """
    config = config or ExportConfig()
    formats = list(dict.fromkeys(formats))  # keep order, drop repeats
    if not formats:
        raise TLError(f"choose at least one export format: {', '.join(FORMATS)}")
    for fmt in formats:
        _check_format(fmt)
    check_settings(config)
    out = Path(out)
    if len(formats) == 1:
        targets = {formats[0]: out}
    else:
        if out.exists() and not out.is_dir():
            raise TLError(f"{str(out)!r} is a file; several formats need an output folder")
        targets = {fmt: out / default_filename(fmt, config.int8_io) for fmt in formats}
    for fmt, target in targets.items():
        _check_target(fmt, target, config.int8_io)

    progress = on_progress or (lambda step, logs: None)
    phase = on_phase or no_phase
    step = iter(range(10**6))
    t_start = time.perf_counter()
    phase(LOADING)
    run = load_run(run_dir)
    warnings: list[dict] = []

    verification_data = None
    reference = None
    if any(f in VERIFIED_FORMATS for f in formats) and (verify is not None or config.verify):
        from .verify import keras_reference

        if verify is not None:
            paths, y, skipped = labelled_files(run.classes, verify)
            verification_data = {"source": str(verify), "n": len(paths), "skipped": skipped}
        else:
            split, samples = held_out_samples(run_dir)
            paths = [s["path"] for s in samples if Path(s["path"]).is_file()]
            y = [run.classes.index(s["label"]) for s in samples if Path(s["path"]).is_file()]
            verification_data = {"source": f"run {split} split" if split else "none", "n": len(paths), "skipped": []}
        if paths:
            progress(next(step), {"stage": "reference", "format": "keras", "n": len(paths)})
            reference = keras_reference(run, paths, y, on_progress=lambda done, total: phase(
                EVALUATING, done=done, total=total))
            verification_data["skipped"] += reference["skipped"]
            verification_data["n"] = reference["n"]  # the images checked: the readable ones
            if not reference["n"]:
                reference = None
                warnings.append(alarm("unreadable_verification_data",
                                      f"the exports were not checked: none of the {len(paths)} verification images "
                                      "could be read; give labelled data to verify on", images=len(paths)))
        else:
            warnings.append(alarm("no_verification_data", "the exports were not checked: the run kept no held-out "
                                  "images; give labelled data to verify on"))

    calib = None
    if "tflite-int8" in formats:
        files = calibration_files(run_dir, calibration)
        progress(next(step), {"stage": "calibration", "format": "tflite-int8", "n": min(len(files), config.calibration_samples)})
        calib, calib_skipped = load_calibration(
            files, run.input_size, config.calibration_samples, config.seed,
            on_progress=lambda done, total: phase(CALIBRATING, done=done, total=total, format="tflite-int8"))
        low, high = RECOMMENDED_CALIBRATION
        if len(calib) < low:
            warnings.append(alarm("few_calibration_images", f"INT8 calibration used {len(calib)} images; {low}-{high} "
                                  "are recommended for stable quantisation ranges", n=len(calib), low=low, high=high))

    exports, stopped = [], False
    with tempfile.TemporaryDirectory(prefix="tlcore-export-") as tmp:
        converter = onnx = None  # converted once for all the formats that need them
        for fmt in formats:
            if should_stop is not None and should_stop():
                stopped = True
                break
            target = targets[fmt]
            progress(next(step), {"stage": "convert", "format": fmt})
            phase(CONVERTING, format=fmt)
            t0 = time.perf_counter()
            if fmt in TFLITE_FORMATS:
                if converter is None:
                    export_saved_model(run.model, Path(tmp) / "batch1", batch=1)
                    converter = tflite_converter(Path(tmp) / "batch1")
                data = convert_tflite(converter, fmt, calib if fmt == "tflite-int8" else None, config.int8_io,
                                      on_calibrate=_calibrating(phase, fmt))
                write_bytes_atomic(target, data)
            elif fmt in ("onnx", "web"):
                onnx = onnx or convert_onnx(run.model, run.classes)
                if fmt == "onnx":
                    write_bytes_atomic(target, onnx)
                else:
                    from .web import write_web_folder

                    write_web_folder(target, onnx, run.classes)
            elif fmt == "keras":
                _write_keras(run.model, target, run.config)
            else:
                _writeexport_saved_model(run.model, target)
            _record(target)
            labels = target.parent / "labels.txt"
            write_bytes_atomic(labels, "".join(f"{c}\n" for c in run.classes).encode("utf-8"))
            entry = {"format": fmt, "path": str(target), "labels": str(labels), "size_bytes": _size(target),
                     "input": _input_contract(run, fmt, config.int8_io),
                     "convert_seconds": round(time.perf_counter() - t0, 3)}
            if fmt == "tflite-int8":
                entry["calibration_samples"] = int(len(calib))
                entry["calibration_skipped"] = calib_skipped
            if fmt in VERIFIED_FORMATS and reference is not None:
                from .verify import compare

                progress(next(step), {"stage": "verify", "format": fmt, "n": reference["n"]})
                entry["verification"] = _named(fmt, compare(reference, _exported_model(fmt, target, run.classes),
                                                            run.classes, on_progress=lambda done, total, fmt=fmt: phase(
                                                                VERIFYING, done=done, total=total, format=fmt)))
                warnings += _verification_warnings(fmt, entry["verification"])
            exports.append(entry)
            progress(next(step), {"stage": "exported", "format": fmt, "size_bytes": entry["size_bytes"]})
    if reference is not None:
        verification_data["keras_accuracy"] = reference["accuracy"]
        verification_data["keras_latency_ms"] = reference["latency_ms"]
    return {"run_dir": str(run_dir), "exports": exports, "verification_data": verification_data,
            "warnings": warnings, "stopped": stopped, "seconds": round(time.perf_counter() - t_start, 3)}


def _exported_model(fmt: str, path: Path, classes: Sequence[str]):
    """The runtime a client would run the exported file with (LiteRT, ONNX Runtime), behind one interface."""
    if fmt in ("onnx", "web"):
        from ..models.onnx_model import OnnxModel

        return OnnxModel(path / "model.onnx" if fmt == "web" else path, classes)
    from ..models.tflite_model import TFLiteModel

    return TFLiteModel(path, classes)


def _named(fmt: str, verification: dict) -> dict:
    """A verification as the export JSON gives it: ``exported_accuracy`` for every format, and for a TFLite file
    also ``tflite_accuracy`` (its name before ONNX existed, which scripts and older job results use)."""
    if fmt in TFLITE_FORMATS:
        verification["tflite_accuracy"] = verification["exported_accuracy"]
        for row in verification["per_class"].values():
            row["tflite_accuracy"] = row["exported_accuracy"]
    return verification


def _calibrating(phase: PhaseCallback, fmt: str) -> Callable[[int, int], None]:
    """The converter's count of calibration images as the ``calibrating`` phase; once it has run them all, it
    quantises the model: ``converting`` again."""

    def on_calibrate(done: int, total: int) -> None:
        phase(CALIBRATING, done=done, total=total, format=fmt)
        if done >= total:
            phase(CONVERTING, format=fmt)

    return on_calibrate


def _verification_warnings(fmt: str, v: dict) -> list[dict]:
    out = []
    # Rounded: 0.90 - 0.89 is 0.010000000000000009 in floats, and exactly one point is allowed.
    drop = round(v["keras_accuracy"] - v["exported_accuracy"], 9)
    scores = {"points": drop * 100, "keras": v["keras_accuracy"], "tflite": v["exported_accuracy"]}
    if fmt == "tflite-int8" and drop > INT8_MAX_DROP:
        out.append(alarm("int8_accuracy_drop",
                         f"the INT8 model loses {drop * 100:.1f} points of accuracy against Keras "
                         f"({v['keras_accuracy']:.1%} to {v['exported_accuracy']:.1%}); "
                         "use tflite-float16 instead, or calibrate on more images", **scores))
    elif fmt == "tflite-dynamic" and drop > INT8_MAX_DROP:
        out.append(alarm("quantized_accuracy_drop",
                         f"the dynamic-range model loses {drop * 100:.1f} points of accuracy against Keras "
                         f"({v['keras_accuracy']:.1%} to {v['exported_accuracy']:.1%}); use tflite-float16 instead",
                         **scores))
    elif fmt in ("tflite-float32", "tflite-float16", "onnx", "web") and v["agreement"] < 0.99:
        out.append(alarm("low_agreement", f"the {fmt} model agrees with Keras on only {v['agreement']:.1%} of the "
                         "images", format=fmt, agreement=v["agreement"]))
    return out


def export_model(run_dir: str | Path, fmt: str, out: str | Path, config: ExportConfig | None = None,
                 calibration: str | Path | None = None, verify: str | Path | None = None,
                 on_progress: ProgressCallback | None = None) -> dict:
    """Export one format to the file ``out``; the entry of :func:`export_formats` plus its warnings."""
    result = export_formats(run_dir, [fmt], out, config, calibration, verify, on_progress)
    return {**result["exports"][0], "warnings": result["warnings"], "verification_data": result["verification_data"]}
