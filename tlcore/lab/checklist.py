"""Checklists before training and before deployment: plain facts in, ticked items out.

:func:`gather_facts` reads what a session has on disk (its photos and
settings, the newest finished run, that run's exports) into a :class:`Facts`;
:func:`training_checklist` and :func:`deployment_checklist` turn facts into
:class:`Item` rows. Each item carries a ``reason`` code (what the dashboard
translates) and the numbers behind it in ``detail``.

Gathering is meant to run on every page of the dashboard, so it never decodes
an image (Pillow reads only the header for a photo's size, and those sizes are
remembered until the class folders change) and never imports TensorFlow
unless asked to.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from PIL import Image

from ..data.advice import TIERS, data_tier
from ..data.health import IMBALANCE_RATIO
from ..analysis.diagnosis import diagnose
from ..io.errors import TLError
from ..jobs.runner import job_status, list_jobs
from ..models.run_files import read_run_json
from ..training.ledger import predictions_key, scored_runs
from ..backbones.registry import DEFAULT_BACKBONE
from .workspace import Workspace

__all__ = ["STATUSES", "Item", "Facts", "gather_facts", "training_checklist", "deployment_checklist"]

log = logging.getLogger("tlcore")

STATUSES = ("ok", "todo", "warn", "n/a")
MAX_INT8_DROP = 0.02  # accuracy (as a fraction) an INT8 export may lose against Keras before deployment
# TrainConfig's defaults, repeated here because importing tlcore.training.pipeline imports Keras (seconds).
_DEFAULT_CLASS_WEIGHTS, _DEFAULT_RESAMPLE = "auto", "none"
_DEFAULT_SPLIT = (80, 10, 10)


@dataclass(frozen=True)
class Item:
    """One checklist line: ``key`` names the check, ``reason`` why it has its ``status``."""

    key: str
    status: str  # "ok" | "todo" | "warn" | "n/a"
    reason: str
    detail: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown checklist status {self.status!r}; choose one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class Facts:
    """What the checklists look at; every field has the value of an empty session."""

    counts: Mapping[str, int] = field(default_factory=dict)  # photos per class
    split: tuple | list = _DEFAULT_SPLIT  # train, val, test percents
    split_folders: bool = False  # the data brings its own train/ and val/ or test/ folders
    class_weights: str = _DEFAULT_CLASS_WEIGHTS
    resample: str = _DEFAULT_RESAMPLE
    backbone: str = DEFAULT_BACKBONE
    input_size: int | None = None  # None: not known without loading the backbone registry
    image_sides: tuple = ()  # the shorter side, in pixels, of every readable photo
    run: str | None = None  # the newest finished run directory
    history: tuple = ()  # its per-epoch logs
    n_test: int = 0
    test_accuracy: float | None = None
    test_scored: bool = False  # a person looked at this run's test split (tlcore.training.ledger)
    exported: bool = False  # a finished export of that run exists
    verified: bool = False  # that export's TFLite files were checked against Keras
    int8_drop: float | None = None  # Keras accuracy minus the INT8 file's, when checked


# Before training -----------------------------------------------------------------------------
# An item whose facts are not there yet (no photos, no run) is "todo" or "n/a", never "ok": nothing is
# ticked before it can be judged.

def _photos(facts: Facts) -> Item:
    where = data_tier(facts.counts)  # the data tiers of tlcore.data.advice, as the Data page says them
    if where is None:
        return Item("photos", "todo", "no_data", dict(TIERS))
    detail = {"smallest": where["class"], "n": where["photos"], "missing": where["missing"], **TIERS}
    return Item("photos", "warn" if where["tier"] == "too_few" else "ok", where["tier"], detail)


def _balance(facts: Facts) -> Item:
    present = {c: n for c, n in facts.counts.items() if n > 0}
    if len(present) < 2:
        return Item("balanced", "todo", "no_data", {"classes": len(present)})
    largest, smallest = max(present, key=present.get), min(present, key=present.get)
    detail = {"ratio": round(present[largest] / present[smallest], 2), "largest": largest, "smallest": smallest}
    if detail["ratio"] <= IMBALANCE_RATIO:
        return Item("balanced", "ok", "balanced", detail)
    # "auto" weights the classes exactly when they are this imbalanced (tlcore.training.pipeline._class_weights).
    if facts.class_weights in ("auto", "balanced"):
        return Item("balanced", "ok", "class_weights", {**detail, "mode": facts.class_weights})
    if facts.resample in ("oversample", "undersample"):
        return Item("balanced", "ok", "resampled", {**detail, "mode": facts.resample})
    return Item("balanced", "warn", "imbalanced", detail)


def _splits(facts: Facts) -> Item:
    if facts.split_folders:
        return Item("splits", "ok", "folders")
    try:
        train, val, test = (float(p) for p in facts.split)
    except (TypeError, ValueError):
        raise TLError(f"split setting {facts.split!r} must be three percentages (train, val, test)") from None
    detail = {"train": round(train), "val": round(val), "test": round(test)}
    if not (val > 0 and test > 0):
        return Item("splits", "warn", "missing", detail)  # a setting already known to be wrong, photos or not
    present = {c: n for c, n in facts.counts.items() if n > 0}
    if not present:
        return Item("splits", "todo", "no_data", detail)
    if min(present.values()) < 3:
        # stratified_split gives a class a validation and a test photo only from three photos up.
        smallest = min(present, key=present.get)
        return Item("splits", "warn", "few", {**detail, "smallest": smallest, "n": present[smallest]})
    return Item("splits", "ok", "separate", detail)


def _image_size(facts: Facts) -> Item:
    if not facts.image_sides:
        return Item("image_size", "todo", "no_data")
    if facts.input_size is None:
        return Item("image_size", "n/a", "size_unknown", {"backbone": facts.backbone})
    detail = {"size": facts.input_size, "n": len(facts.image_sides), "backbone": facts.backbone,
              "smaller": sum(1 for side in facts.image_sides if side < facts.input_size)}
    return Item("image_size", "warn" if detail["smaller"] else "ok", "smaller" if detail["smaller"] else "large_enough",
                detail)


def _frozen(facts: Facts) -> Item:
    phases = [h.get("phase") for h in facts.history]
    if not phases:
        return Item("frozen", "n/a", "no_run")
    detail = {"head": phases.count("head"), "fine_tune": phases.count("fine_tune")}
    # Phase 1 must train the head alone on the frozen backbone before any layer is unfrozen.
    if phases[0] == "head" and "fine_tune" not in phases[:detail["head"]]:
        return Item("frozen", "ok", "frozen", detail)
    return Item("frozen", "warn", "not_frozen", detail)


def training_checklist(facts: Facts) -> list[Item]:
    """Before training: enough photos per class (the data tiers), balanced or compensated classes, three
    separate splits, photos at the backbone's size, and (once there is a run) a backbone frozen for phase 1.
    Without photos the data items are to do, not ticked."""
    return [_photos(facts), _balance(facts), _splits(facts), _image_size(facts), _frozen(facts)]


# Before deployment ---------------------------------------------------------------------------

def _curves(facts: Facts) -> Item:
    if facts.run is None:
        return Item("curves", "todo", "no_run")
    diagnosis = diagnose([dict(h) for h in facts.history])
    code = diagnosis.get("code", "")
    return Item("curves", "ok" if code == "good_fit" else "warn", code, {"message": diagnosis.get("message", "")})


def _test_set(facts: Facts) -> Item:
    if facts.run is None:
        return Item("test_set", "todo", "no_run")
    if facts.n_test == 0 or facts.test_accuracy is None:
        return Item("test_set", "warn", "no_test")
    # Training predicts the test split but is no look at it: the score is shown once a person has opened it.
    if not facts.test_scored:
        return Item("test_set", "todo", "not_scored", {"n": facts.n_test})
    return Item("test_set", "ok", "evaluated", {"accuracy": facts.test_accuracy, "n": facts.n_test})


def _export(facts: Facts) -> Item:
    if facts.run is None:
        return Item("export", "todo", "no_run")
    if not facts.exported:
        return Item("export", "todo", "no_export")
    if not facts.verified:
        return Item("export", "warn", "unverified")
    if facts.int8_drop is None:
        return Item("export", "todo", "no_int8")
    detail = {"drop": facts.int8_drop, "limit": MAX_INT8_DROP}
    return Item("export", "ok" if facts.int8_drop < MAX_INT8_DROP else "warn",
                "verified" if facts.int8_drop < MAX_INT8_DROP else "int8_drop", detail)


def deployment_checklist(facts: Facts) -> list[Item]:
    """Before deployment: the newest run's curves look right, its test split was scored (looked at), and
    an export of it was verified with an INT8 file losing under two points of accuracy."""
    return [_curves(facts), _test_set(facts), _export(facts)]


# Gathering -----------------------------------------------------------------------------------

# Per workspace data folder: its data signature, {photo path: (mtime_ns, shorter side)}, and the answer.
_SIDES: dict[str, tuple[tuple, dict, tuple]] = {}
# Sessions come and go on a long-running server: only the most recently used are remembered.
_REMEMBERED = 64


def _remember(cache: dict, key: str, value) -> None:
    cache.pop(key, None)  # re-inserted last: dicts keep insertion order, so the first key is the oldest
    cache[key] = value
    while len(cache) > _REMEMBERED:
        cache.pop(next(iter(cache)), None)


def _shorter_side(path: Path) -> int | None:
    try:
        with Image.open(path) as image:  # lazy: only the header is read
            return min(image.size)
    except Exception:  # noqa: BLE001 - Pillow raises many types for a damaged header; such a file is not counted
        return None


def _image_sides(ws: Workspace) -> tuple[dict[str, int], tuple]:
    """Photos per class and the shorter side of each, rescanned only when a class folder changed.

    A rescan reads the header of new or modified photos only.
    """
    key = str(ws.data_dir)
    signature = ws.data_signature()  # adding or removing a photo changes its folder's mtime
    cached = _SIDES.get(key)
    if cached and cached[0] == signature:
        return cached[2]
    known = cached[1] if cached else {}
    counts, sides, files = {}, [], {}
    for name in ws.classes():
        photos = ws.images(name)
        counts[name] = len(photos)
        for path in photos:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:  # removed meanwhile
                continue
            old = known.get(str(path))
            side = old[1] if old and old[0] == mtime else _shorter_side(path)
            files[str(path)] = (mtime, side)
            if side is not None:
                sides.append(side)
    answer = (counts, tuple(sides))
    _remember(_SIDES, key, (signature, files, answer))
    return answer


def _split_folders(data_dir: Path) -> bool:
    names = {p.name.lower() for p in data_dir.iterdir() if p.is_dir()}
    return "train" in names and bool(names & {"val", "validation", "test"})


_JSON: dict[str, tuple[int, dict | list]] = {}


def _run_json(run_dir: Path, name: str, default: dict | list | None = None) -> dict | list:
    """A run's JSON file (read by its owner, :mod:`tlcore.models.run_files`), parsed again only when its
    modification time changes (the checklist is drawn on every page run); ``default`` (an empty dict unless
    given) when absent, damaged or of another type."""
    default = {} if default is None else default
    path = run_dir / name
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return default
    cached = _JSON.get(str(path))
    if cached and cached[0] == mtime:
        return cached[1]
    value = read_run_json(run_dir, name, default=default)
    _remember(_JSON, str(path), (mtime, value))
    return value


def _newest_run(jobs: list[tuple[Path, dict]]) -> Path | None:
    for job, status in jobs:
        if status["status"] in ("done", "stopped") and (job / "run" / "config.json").is_file():
            return job / "run"
    return None


def _export_facts(jobs: list[tuple[Path, dict]], run_dir: Path) -> dict:
    """``exported``, ``verified`` and ``int8_drop`` from the newest finished export of ``run_dir``."""
    for job, status in jobs:
        if status.get("kind") != "export" or status.get("parent") != str(run_dir):
            continue
        if status["status"] not in ("done", "stopped"):
            continue
        exports = (status.get("result") or {}).get("exports") or []
        checked = [e for e in exports if e.get("verification")]
        int8 = next((e["verification"] for e in checked if e.get("format") == "tflite-int8"), None)
        # Rounded as tlcore.export.formats does: 0.90 - 0.88 is 0.020000000000000018 in floats.
        drop = round(int8["keras_accuracy"] - int8["tflite_accuracy"], 9) if int8 else None
        return {"exported": bool(exports), "verified": bool(checked), "int8_drop": drop}
    return {}


def _input_size(backbone: str, run_config: dict, import_backbones: bool) -> int | None:
    if run_config.get("backbone") == backbone and run_config.get("input_size"):
        return int(run_config["input_size"])
    # The registry's modules import Keras, which takes seconds the first time in a process.
    if not (import_backbones or "keras" in sys.modules):
        return None
    from ..backbones.registry import get_spec

    try:
        return get_spec(backbone).input_size
    except TLError:  # a backbone name from an older version: the Backbone page asks for a new choice
        return None


def gather_facts(workspace: Workspace, import_backbones: bool = True) -> Facts:
    """The facts of one session: its photos and settings, its newest finished run and that run's exports.

    Photo sizes come from image headers and are remembered until a class
    folder changes; JSON files are parsed again only when they change. With
    ``import_backbones`` False (the dashboard's sidebar), the backbone's input
    size is known only from a run of the same backbone or when Keras is
    already loaded, else :attr:`Facts.input_size` is None.
    """
    settings = workspace.settings()
    counts, sides = _image_sides(workspace)
    jobs = [(job, job_status(job)) for job in list_jobs(workspace.jobs_dir)]
    run_dir = _newest_run(jobs)
    config = _run_json(run_dir, "config.json") if run_dir else {}
    metrics = _run_json(run_dir, "metrics.json") if run_dir else {}
    trained = config.get("train") or {}
    backbone = settings.get("backbone") or DEFAULT_BACKBONE
    return Facts(
        counts=counts,
        split=settings.get("split") or _DEFAULT_SPLIT,  # checked where used, in the splits item
        split_folders=_split_folders(workspace.data_dir),
        # The settings hold the next training's choice when a page saved one; else the last run's.
        class_weights=settings.get("class_weights") or trained.get("class_weights") or _DEFAULT_CLASS_WEIGHTS,
        resample=settings.get("resample") or trained.get("resample") or _DEFAULT_RESAMPLE,
        backbone=backbone,
        input_size=_input_size(backbone, config, import_backbones),
        image_sides=sides,
        run=str(run_dir) if run_dir else None,
        history=tuple(metrics.get("history") or ()),
        n_test=int(metrics.get("n_test") or 0),
        test_accuracy=metrics.get("test_accuracy"),
        # Looks are counted in the session's own ledger (the Evaluate page keeps it in the workspace).
        test_scored=bool(run_dir) and predictions_key(_run_json(run_dir, "predictions.json", [])) in scored_runs(
            workspace.root),
        **(_export_facts(jobs, run_dir) if run_dir else {}),
    )
