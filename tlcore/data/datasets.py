"""Datasets as lists of labelled files, and the stratified split.

Accepted sources: a folder of class folders; a folder holding ``train/``,
``val/`` and optionally ``test/`` (each of class folders, splits respected);
a ``.zip`` of either (extracted by :func:`tlcore.io.archive.safe_extract`, which
refuses hostile entries); or a list of ``(file, label)`` pairs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.archive import is_junk_name, safe_extract
from ..io.errors import TLError
from ..io.cache_use import hold, release
from ..io.names import check_class_name, class_name_problem
from ..io.paths import default_cache_dir

__all__ = ["Sample", "Dataset", "SPLITS", "load_dataset", "check_classes", "stratified_split", "assign_splits"]

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}
# Bumped when extraction rules change, so older cached extractions are not reused.
_EXTRACTION_VERSION = b"safe-extract-2\0"
_REFUSED_FILE = ".tlcore-refused.json"  # hidden, so never taken for an image


@dataclass(frozen=True)
class Sample:
    """One labelled file; ``split`` is set when the source defined it."""

    path: str
    label: str
    split: str | None = None


@dataclass
class Dataset:
    """Labelled files with their classes (sorted) and the files left out, with reasons."""

    samples: list[Sample]
    classes: list[str]
    skipped: list[dict] = field(default_factory=list)

    @property
    def has_splits(self) -> bool:
        return any(s.split is not None for s in self.samples)


def _visible(p: Path) -> bool:
    # hidden files and the clutter operating systems leave (__MACOSX, Thumbs.db, desktop.ini)
    return not p.name.startswith(".") and not is_junk_name(p.name)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _class_refusal(name: str) -> str | None:
    """Why a class folder's name cannot be a class (the rule of "Add class"), naming it; None when it can.

    The folder's name is the label as it is, so surrounding spaces are refused rather than trimmed."""
    try:
        if check_class_name(name) == name:
            return None
    except TLError as exc:
        return str(exc)
    return f"class name {name!r} is not allowed: {class_name_problem(name)}"


def _named_class_dirs(folder: Path, skipped: list[dict]) -> list[Path]:
    """The class folders of ``folder`` whose names are allowed; the others go to ``skipped`` with the reason."""
    kept = []
    for class_dir in _class_dirs(folder):
        reason = _class_refusal(class_dir.name)
        if reason:
            skipped.append({"path": str(class_dir), "reason": reason})
        else:
            kept.append(class_dir)
    return kept


def _files_in(class_dir: Path) -> list[Path]:
    # Nested folders inside a class folder count for that class (phones export by date).
    return sorted(
        p for p in class_dir.rglob("*")
        if p.is_file() and all(_visible(Path(part)) for part in p.relative_to(class_dir).parts)
    )


def _split_dirs(folder: Path) -> dict[str, Path]:
    found = {}
    for p in _class_dirs(folder):
        split = _SPLIT_ALIASES.get(p.name.lower())
        if split:
            found[split] = p
    return found


def _from_folder(folder: Path) -> Dataset:
    splits = _split_dirs(folder)
    samples: list[Sample] = []
    skipped: list[dict] = []
    if "train" in splits:
        classes_seen = set()
        for split, split_dir in splits.items():
            for class_dir in _named_class_dirs(split_dir, skipped):
                samples += [Sample(str(f), class_dir.name, split) for f in _files_in(class_dir)]
                classes_seen.add(class_dir.name)
        classes = sorted(classes_seen)
    else:
        if splits:
            raise TLError(f"{str(folder)!r} has {', '.join(sorted(splits))}/ but no train/ folder")
        class_dirs = _named_class_dirs(folder, skipped)
        for class_dir in class_dirs:
            samples += [Sample(str(f), class_dir.name) for f in _files_in(class_dir)]
        classes = [d.name for d in class_dirs]
    return Dataset(samples, classes, skipped)


def _digest(path: Path) -> str:
    h = hashlib.sha256(_EXTRACTION_VERSION)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):  # archives can be larger than memory should hold
            h.update(chunk)
    return h.hexdigest()[:16]


def _extract_zip(path: Path, into: Path | None = None) -> tuple[Path, list[dict]]:
    """Extract a zip with :func:`safe_extract`: into the folder ``into`` if given (the caller removes it), else
    once into the shared cache (keyed by content), held there for this process (:func:`tlcore.io.cache_use.hold`).

    Returns the folder and the refused entries (``{name, reason}``), which are
    kept next to the files so a later load from the cache reports them too.
    """
    if into is not None:
        return into, safe_extract(path, into)
    try:
        digest = _digest(path)
    except OSError as exc:
        raise TLError(f"{path.name!r} cannot be read ({exc.strerror or exc})") from None
    target = default_cache_dir() / "zips" / digest
    # The clean-up may remove an unused extraction between two steps here: then it is made again.
    for _ in range(3):
        if target.is_dir() and hold(target):  # also marks it as used now (least recently used goes first)
            return target, _read_refused(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
        hold(tmp)  # an extraction in progress is in use too
        try:
            staging = tmp / "files"
            refused = safe_extract(path, staging)
            try:
                (staging / _REFUSED_FILE).write_text(json.dumps(refused), encoding="utf-8")
                os.replace(staging, target)
                os.utime(target)  # just used, however long the extraction took
            except OSError as exc:
                if not target.is_dir():  # else another process extracted the same zip meanwhile
                    raise TLError(f"{path.name!r} cannot be extracted ({exc.strerror or exc})") from None
        finally:
            release(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    raise TLError(f"{path.name!r} cannot be extracted: its cached copy keeps being removed; try again")


def _read_refused(folder: Path) -> list[dict]:
    try:
        refused = json.loads((folder / _REFUSED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(refused, list):
        return []
    return [r for r in refused if isinstance(r, dict) and isinstance(r.get("name"), str)
            and isinstance(r.get("reason"), str)]


def _unwrap_single_folder(folder: Path) -> Path:
    # Zips usually hold one top folder ("photos/cats/..."); descend while that is all there is.
    while True:
        entries = [p for p in folder.iterdir() if _visible(p)]
        if len(entries) == 1 and entries[0].is_dir() and not _split_dirs(folder) and any(
            p.is_dir() for p in entries[0].iterdir()
        ):
            folder = entries[0]
        else:
            return folder


def load_dataset(source, extract_to: str | Path | None = None) -> Dataset:
    """Load a dataset description (no pixels) from any accepted source.

    A zip is extracted once into the shared cache, or into the new folder ``extract_to`` when given
    (the dashboard's uploads: the caller removes it once the photos are copied).

    Entries a zip holds but that are refused (paths leading outside the
    archive, links, encrypted entries, nested archives, ...) are listed in
    ``skipped`` as ``{"path": "<zip> > <entry>", "entry", "reason"}``.

    Raises :class:`TLError` when the source does not exist, is not one of the
    accepted layouts, is an unsafe or damaged archive, or has fewer than two
    classes or an empty class.
    """
    if isinstance(source, (list, tuple)):
        samples = []
        for item in source:
            try:
                path, label = item
            except (TypeError, ValueError):
                raise TLError(f"expected (file, label) pairs, got {item!r}") from None
            samples.append(Sample(str(path), str(label)))
        dataset = Dataset(samples, sorted({s.label for s in samples}))
        check_classes(dataset.samples, dataset.classes, "the data")
        return dataset
    path = Path(source)
    if not path.exists():
        raise TLError(f"data source {str(path)!r} does not exist")
    refused: list[dict] = []
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise TLError(f"{str(path)!r} is neither a folder nor a zip file")
        folder, refused = _extract_zip(path, Path(extract_to) if extract_to is not None else None)
        root = _unwrap_single_folder(folder)
    else:
        root = path
    dataset = _from_folder(root)
    if path.is_file():  # class folders refused by name are entries of the zip: named as the zip holds them
        for s in dataset.skipped:
            s["entry"] = Path(s["path"]).relative_to(folder).as_posix()
            s["path"] = f"{path} > {s['entry']}"
    dataset.skipped = [{"path": f"{path} > {r['name']}", "entry": r["name"], "reason": r["reason"]}
                       for r in refused] + dataset.skipped
    _check_structure(root, dataset, str(source))
    check_classes(dataset.samples, dataset.classes, str(source))
    return dataset


def _check_structure(root: Path, dataset: Dataset, where: str) -> None:
    """Say what is wrong when there are too few class folders, from what is there instead."""
    if len(dataset.classes) >= 2 or dataset.has_splits:
        return
    loose = sum(1 for p in root.iterdir() if p.is_file() and _visible(p))
    found = f"only {dataset.classes[0]!r}" if dataset.classes else "none"
    if loose:
        raise TLError(f"{where} needs at least two class folders with images; found {found} and {loose} loose "
                      f"file(s) at the top: put the images in one folder per class (for example cats/ and dogs/)")
    if not dataset.classes and dataset.skipped:
        first = dataset.skipped[0]
        name = first.get("entry", first["path"])
        raise TLError(f"{where} needs at least two class folders with images; found none, and "
                      f"{len(dataset.skipped)} entry(ies) were refused (first {name!r}: {first['reason']})")


def check_classes(samples: Sequence[Sample], classes: Sequence[str], where: str) -> None:
    """Raise :class:`TLError` unless there are two classes or more and none is empty."""
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise TLError(f"{where} needs at least two class folders with images; found {found}")
    counts = Counter(s.label for s in samples)
    empty = [c for c in classes if counts[c] == 0]
    if empty:
        raise TLError(f"class {empty[0]!r} has no usable images; add some or remove the class")


def stratified_split(labels: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> list[str]:
    """Assign ``"train"``, ``"val"`` or ``"test"`` to each label, stratified by class.

    Each class is shuffled with ``seed`` and cut by ``fractions``; a class with
    three images or more gets at least one in every split whose fraction is
    positive, and at least one image always stays in train.
    """
    try:
        fractions = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise TLError(f"split {fractions!r} must be three non-negative fractions adding up to 1") from None
    # written so that NaN fails too
    if len(fractions) != 3 or not all(f >= 0 for f in fractions) or not abs(sum(fractions) - 1) <= 1e-6:
        raise TLError(f"split {fractions!r} must be three non-negative fractions adding up to 1")
    if fractions[0] <= 0:
        raise TLError(f"split {fractions!r} leaves nothing to train on")
    rng = np.random.default_rng(seed)
    out = [""] * len(labels)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class):
        idx = by_class[label]
        rng.shuffle(idx)
        n = len(idx)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n >= 3:
            n_val = max(n_val, 1 if fractions[1] > 0 else 0)
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
        while n_val + n_test > n - 1:  # keep one for training
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        for j, i in enumerate(idx):
            out[i] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    return out


def assign_splits(samples: Sequence[Sample], has_splits: bool, fractions, seed: int = 0,
                  carve: float = 0.1) -> list[str]:
    """The split of each sample: the source's own splits when it has them, else :func:`stratified_split`.

    A source with train (and maybe test) but no validation split gets
    ``carve`` of each training class as validation, never taken from test.
    """
    labels = [s.label for s in samples]
    if not has_splits:
        return stratified_split(labels, fractions, seed)
    splits = [s.split or "train" for s in samples]
    if "val" not in splits:
        train_idx = [i for i, sp in enumerate(splits) if sp == "train"]
        carved = stratified_split([labels[i] for i in train_idx], (1 - carve, carve, 0.0), seed)
        for i, sp in zip(train_idx, carved):
            splits[i] = sp
    return splits
