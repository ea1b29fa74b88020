"""Dataset health: what in a set of labelled photos will mislead training, before training.

:func:`check_dataset` reads every image once through the project's decoding
path, assigns the very splits training would use, and reports as plain,
JSON-ready data: counts against the data tiers (:mod:`tlcore.data.advice`), exact and near
duplicates, copies leaking across splits, class imbalance, capture bias (one
class shot or saved differently from another), tiny images and extreme
aspect ratios. Each finding is also one plain sentence in ``warnings``.
"""
from __future__ import annotations

import functools
import hashlib
import io
import warnings as _warnings
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .advice import TIERS, data_tier, tier_sentence
from .datasets import SPLITS, assign_splits, check_classes, load_dataset
from .images import ALLOWED_FORMATS, ImageDecodeError, decode_image
from .phash import NEAR_DISTANCE, THUMB_SIDE, near_pairs, phash

__all__ = ["IMBALANCE_RATIO", "check_dataset", "recommended"]

# Largest / smallest class above this counts as imbalanced, here and in the training alarms.
IMBALANCE_RATIO = 1.5

TINY_SIDE = 32
EXTREME_ASPECT = 3.0

# Capture bias: a feature must separate two classes this cleanly (probability that an image of one
# class has a larger value than one of the other, or share of images that would have to change
# category) before it is mentioned, and each class needs enough images to say so.
_BIAS_AUC = 0.9
_BIAS_SHARE = 0.6
_BIAS_MIN_IMAGES = 5
_BIAS_MIN_AREA_RATIO = 1.5
_BIAS_MIN_QUALITY_GAP = 10
_SHOWN = 3  # file names quoted in one sentence

# The IJG reference luminance table, to estimate the quality a JPEG was saved with.
_IJG_LUMA_SUM = sum([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
_SPLIT_ORDER = {name: i for i, name in enumerate(SPLITS)}


def recommended(counts: dict) -> dict:
    """The data tiers and where ``counts`` (a report's, per class ``{total, ...}``) stands among them.

    ``{tiers: {start, good, great}, tier, class, photos, next, missing}``: the photos per class from which
    each tier starts, then :func:`tlcore.data.advice.data_tier` of the smallest class with photos
    (``tier`` None, and no other key, when no class has any).
    """
    where = data_tier({name: row["total"] for name, row in counts.items()})
    return {"tiers": dict(TIERS), **(where or {"tier": None})}


def check_dataset(source, split=(0.8, 0.1, 0.1), seed: int = 0,
                  on_progress: Callable[[int, dict], None] | None = None) -> dict:
    """Check a dataset's health before training; returns a JSON-ready report.

    ``source`` is anything :func:`tlcore.data.datasets.load_dataset` accepts; ``split``
    and ``seed`` give the split exactly as training assigns it (a source
    with its own train/val/test folders keeps them). ``on_progress(done,
    logs)`` is called while images are read, ``logs`` holding ``total``.

    The report has ``counts`` (per class: train, val, test, total),
    ``recommended`` (the data tiers and the smallest class's, see :func:`recommended`), ``duplicates`` (groups of
    ``{path, label, split}``), ``leaks`` (pairs ``a``/``b`` in different
    splits, ``b`` the later split, with ``kind`` exact or near and the hash
    ``distance``), ``imbalance_ratio``, ``class_weights``, ``capture_bias``
    (``{feature, classes: [a, b], values: [typical of a, of b], shares}``;
    feature size, format, camera or jpeg_quality; shares of the typical
    value for format and camera, else None), ``tiny``, ``extreme_aspect``, ``skipped`` (``{path, reason}``) and
    ``warnings`` (``{code, level, message}``, the most serious first).

    Raises :class:`tlcore.io.errors.TLError` when the source cannot be loaded
    or has fewer than two classes with readable images.
    """
    dataset = load_dataset(source)
    skipped = [{"path": s["path"], "reason": s["reason"]} for s in dataset.skipped]
    infos, samples = [], []
    total = len(dataset.samples)
    for n, sample in enumerate(dataset.samples, 1):
        try:
            infos.append(_inspect(Path(sample.path)))
            samples.append(sample)
        except ImageDecodeError as exc:
            skipped.append({"path": sample.path, "reason": str(exc)})
        if on_progress is not None and (n == total or n % 25 == 0):
            on_progress(n, {"stage": "read", "total": total})
    check_classes(samples, dataset.classes, "the data")
    splits = assign_splits(samples, dataset.has_splits, split, seed)
    items = [{"path": s.path, "label": s.label, "split": sp} for s, sp in zip(samples, splits)]

    warnings: list[dict] = []
    duplicates, leaks = _copies(items, infos, warnings)
    counts = _counts(items, dataset.classes)
    _too_few(counts, warnings)
    ratio, weights = _imbalance(items, counts, dataset.classes, warnings)
    bias = _capture_bias(items, infos, dataset.classes, warnings)
    tiny, extreme = _odd_shapes(items, infos, warnings)
    if skipped:
        names = _names([s["path"] for s in skipped])
        warnings.append(_warning("skipped", "warning", f"{len(skipped)} file(s) cannot be used and are left out "
                                 f"({names}; first reason: {skipped[0]['reason']})"))
    order = {"error": 0, "warning": 1, "info": 2}
    warnings.sort(key=lambda w: order[w["level"]])
    return {"counts": counts, "recommended": recommended(counts), "duplicates": duplicates, "leaks": leaks,
            "imbalance_ratio": ratio, "class_weights": weights, "capture_bias": bias, "tiny": tiny,
            "extreme_aspect": extreme, "skipped": skipped, "warnings": warnings, "n_images": len(items)}


# Reading ------------------------------------------------------------------------------------


def _inspect(path: Path) -> dict:
    """Content hash, perceptual hash and capture details of one file; ImageDecodeError if unusable."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})") from None
    # A file with the same size and modification time is not read again: after one photo is added
    # or removed, checking again costs the new photo, not the whole set. Callers never change the dict.
    return _inspect_file(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=50_000)
def _inspect_file(path: str, size: int, mtime_ns: int) -> dict:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})") from None
    # decode_image is the gate: only what it accepts is looked at any further.
    thumb = decode_image(data, (THUMB_SIDE, THUMB_SIDE))
    info = {"sha256": hashlib.sha256(data).hexdigest(), "phash": phash(thumb), "width": None, "height": None,
            "format": None, "camera": None, "quality": None}
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                width, height = img.size
                exif = img.getexif()
                if exif.get(0x0112) in (5, 6, 7, 8):  # shown rotated by a quarter turn, as decode_image does
                    width, height = height, width
                camera = " ".join(str(exif.get(tag, "")).strip("\0 ") for tag in (0x010F, 0x0110)).strip()
                info.update(width=width, height=height, format="JPEG" if img.format == "MPO" else img.format,
                            camera=camera or None, quality=_jpeg_quality(getattr(img, "quantization", None)))
    except Exception:  # noqa: BLE001 - odd metadata only loses the capture details, the image still counts
        pass
    return info


def _jpeg_quality(tables) -> int | None:
    """The IJG quality (1-100) the luminance table corresponds to, from its sum (independent of zigzag order)."""
    if not tables or 0 not in tables:
        return None
    scale = 100.0 * sum(tables[0]) / _IJG_LUMA_SUM
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(round(min(100.0, max(1.0, quality))))


# Findings -----------------------------------------------------------------------------------


def _warning(code: str, level: str, message: str) -> dict:
    return {"code": code, "level": level, "message": message}


def _names(paths, shown: int = _SHOWN) -> str:
    names = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _copies(items: list[dict], infos: list[dict], warnings: list) -> tuple[list, list]:
    """Groups of identical or near-identical images, and the pairs of them that cross splits."""
    n = len(items)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_sha: dict[str, int] = {}
    edges: list[tuple[int, int, str, int]] = []
    for i, info in enumerate(infos):
        first = by_sha.setdefault(info["sha256"], i)
        if first != i:
            edges.append((first, i, "exact", 0))
    exact = {(a, b) for a, b, _, _ in edges}
    same_sha = [info["sha256"] for info in infos]
    for a, b, d in near_pairs([info["phash"] for info in infos], NEAR_DISTANCE):
        if same_sha[a] != same_sha[b] and (a, b) not in exact:
            edges.append((a, b, "near", d))
    for a, b, _, _ in edges:
        parent[find(a)] = find(b)

    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    def order(i):  # train copies first, then the largest: the one worth keeping leads its group
        pixels = (infos[i]["width"] or 0) * (infos[i]["height"] or 0)
        return _SPLIT_ORDER[items[i]["split"]], -pixels, items[i]["path"]

    duplicates = [[items[i] for i in sorted(g, key=order)] for g in groups.values() if len(g) > 1]
    duplicates.sort(key=lambda g: g[0]["path"])

    leaks = []
    # Exact copies beyond the first of each content are linked to the first only; a leak is any
    # cross-split pair within the same content, so compare every member of those groups.
    by_content: dict[str, list[int]] = {}
    for i, sha in enumerate(same_sha):
        by_content.setdefault(sha, []).append(i)
    pairs = {(min(a, b), max(a, b)): (kind, d) for a, b, kind, d in edges if kind == "near"}
    for members in by_content.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                pairs[(members[x], members[y])] = ("exact", 0)
    for (a, b), (kind, d) in sorted(pairs.items()):
        if items[a]["split"] != items[b]["split"]:
            a, b = sorted((a, b), key=order)
            leaks.append({"a": items[a], "b": items[b], "kind": kind, "distance": d})
    leaks.sort(key=lambda p: (p["b"]["path"], p["a"]["path"]))

    if leaks:
        which = sorted({f"{p['a']['split']}/{p['b']['split']}" for p in leaks})
        example = leaks[0]
        warnings.append(_warning("leak", "error", (
            f"{len(leaks)} image(s) appear in two splits ({', '.join(which)}), for example "
            f"{_names([example['a']['path']])} ({example['a']['split']}) and {_names([example['b']['path']])} "
            f"({example['b']['split']}): validation and test scores will look better than the model is; "
            "remove the copies outside the training split")))
    within = [g for g in duplicates if max(Counter(m["split"] for m in g).values()) > 1]
    if within:
        extra = sum(len(g) - 1 for g in within)
        warnings.append(_warning("duplicate", "warning", (
            f"{extra} image(s) are copies of another in the same split ({len(within)} group(s), for example "
            f"{_names([m['path'] for m in within[0]])}): copies count twice in training; keep one of each")))
    return duplicates, leaks


def _counts(items: list[dict], classes: list[str]) -> dict:
    counts = {c: {"train": 0, "val": 0, "test": 0, "total": 0} for c in classes}
    for item in items:
        counts[item["label"]][item["split"]] += 1
        counts[item["label"]]["total"] += 1
    return counts


def _too_few(counts: dict, warnings: list) -> None:
    # Below the first tier; photos come first in the advice: augmentation measured no substitute for them.
    low = {c: n["total"] for c, n in counts.items() if n["total"] < TIERS["start"]}
    if not low:
        return
    listed = ", ".join(f"{c} {n:,}" for c, n in sorted(low.items(), key=lambda kv: kv[1])[:5])
    more = f" and {len(low) - 5} more" if len(low) > 5 else ""
    warnings.append(_warning("too_few_images", "warning", (
        f"{len(low)} class(es) have fewer images than the {TIERS['start']} per class that are enough to start "
        f"({listed}{more}): expect lower accuracy and scores that change from one run to the next; add photos "
        f"({tier_sentence()})")))


def _imbalance(items: list[dict], counts: dict, classes: list[str], warnings: list) -> tuple[float, dict]:
    totals = {c: n["total"] for c, n in counts.items()}
    ratio = max(totals.values()) / min(totals.values())
    # The weights training would use: scikit-learn's "balanced" on the training split.
    from sklearn.utils.class_weight import compute_class_weight

    train = [item["label"] for item in items if item["split"] == "train"]
    present = sorted(set(train), key=classes.index)
    values = compute_class_weight("balanced", classes=np.array(present), y=np.array(train))
    weights = {c: round(float(w), 3) for c, w in zip(present, values)}
    if ratio > IMBALANCE_RATIO:
        big, small = max(totals, key=totals.get), min(totals, key=totals.get)
        shown = ", ".join(f"{c} {w:g}" for c, w in weights.items())
        warnings.append(_warning("imbalance", "warning", (
            f"classes are imbalanced: {big} has {totals[big]:,} images and {small} {totals[small]:,} "
            f"({ratio:.1f} to 1), so the model will favour {big}; training can balance them with class weights "
            f"({shown}), by oversampling the small classes or by undersampling the large ones")))
    return round(ratio, 3), weights


def _auc(a: np.ndarray, b: np.ndarray) -> float:
    """Probability that a value of ``a`` exceeds one of ``b`` (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([a, b]))
    return float((ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2) / (len(a) * len(b)))


def _capture_bias(items: list[dict], infos: list[dict], classes: list[str], warnings: list) -> list[dict]:
    """Features (size, format, camera, JPEG quality) that tell classes apart as well as their content might."""
    by_class = {c: [info for item, info in zip(items, infos) if item["label"] == c] for c in classes}
    found = []

    def numeric(feature, value, describe, separated):
        best = None
        for x, a in enumerate(classes):
            for b in classes[x + 1:]:
                va = np.array([v for v in map(value, by_class[a]) if v is not None], float)
                vb = np.array([v for v in map(value, by_class[b]) if v is not None], float)
                if min(len(va), len(vb)) < _BIAS_MIN_IMAGES:
                    continue
                auc = _auc(va, vb)
                strength = abs(auc - 0.5) * 2
                if strength >= 2 * _BIAS_AUC - 1 and separated(np.median(va), np.median(vb)):
                    if best is None or strength > best[0]:
                        best = (strength, a, b)
        if best:
            _, a, b = best
            found.append({"feature": feature, "classes": [a, b], "values": [describe(by_class[a]), describe(by_class[b])],
                          "shares": None})

    def categorical(feature, value):
        best = None
        for x, a in enumerate(classes):
            for b in classes[x + 1:]:
                ca, cb = Counter(map(value, by_class[a])), Counter(map(value, by_class[b]))
                na, nb = sum(ca.values()), sum(cb.values())
                if min(na, nb) < _BIAS_MIN_IMAGES:
                    continue
                # Share of images that would have to change category for the two classes to look alike.
                shift = 0.5 * sum(abs(ca[k] / na - cb[k] / nb) for k in set(ca) | set(cb))
                if shift >= _BIAS_SHARE and (best is None or shift > best[0]):
                    best = (shift, a, b, ca.most_common(1)[0], cb.most_common(1)[0], na, nb)
        if best:
            _, a, b, (ka, ma), (kb, mb), na, nb = best
            found.append({"feature": feature, "classes": [a, b], "values": [ka, kb],
                          "shares": [round(ma / na, 3), round(mb / nb, 3)]})

    def typical_size(infos_):
        sized = [i for i in infos_ if i["width"]]
        w = int(np.median([i["width"] for i in sized]))
        h = int(np.median([i["height"] for i in sized]))
        return f"{w}x{h}"

    def typical_quality(infos_):
        return int(np.median([i["quality"] for i in infos_ if i["quality"] is not None]))

    numeric("size", lambda i: i["width"] * i["height"] if i["width"] else None, typical_size,
            lambda ma, mb: max(ma, mb) >= _BIAS_MIN_AREA_RATIO * min(ma, mb))
    categorical("format", lambda i: i["format"] or "unknown")
    categorical("camera", lambda i: i["camera"])
    numeric("jpeg_quality", lambda i: i["quality"], typical_quality,
            lambda ma, mb: abs(ma - mb) >= _BIAS_MIN_QUALITY_GAP)

    words = {"size": "picture size", "format": "file format", "camera": "camera",
             "jpeg_quality": "JPEG compression"}
    def describe(bias, k):
        value = bias["values"][k]
        text = {"size": f"{value} px", "jpeg_quality": f"quality {value}"}.get(bias["feature"], value or "no camera data")
        return text if bias["shares"] is None else f"{text} ({bias['shares'][k]:.0%})"

    for bias in found:
        (a, b), (va, vb) = bias["classes"], (describe(bias, 0), describe(bias, 1))
        warnings.append(_warning("capture_bias", "warning", (
            f"the {words[bias['feature']]} differs between classes ({a}: mostly {va}; {b}: mostly {vb}): "
            f"the model may learn the {words[bias['feature']]} instead of what the photos show; "
            "collect every class the same way")))
    return found


def _odd_shapes(items: list[dict], infos: list[dict], warnings: list) -> tuple[list, list]:
    tiny, extreme = [], []
    for item, info in zip(items, infos):
        w, h = info["width"], info["height"]
        if not w or not h:
            continue
        entry = {**item, "width": w, "height": h}
        if min(w, h) < TINY_SIDE:
            tiny.append(entry)
        if max(w, h) / min(w, h) > EXTREME_ASPECT:
            extreme.append(entry)
    if tiny:
        warnings.append(_warning("tiny_image", "warning", (
            f"{len(tiny)} image(s) are smaller than {TINY_SIDE} px on their short side ({_names([e['path'] for e in tiny])}): "
            "enlarged to the model's input size they are mostly blur; replace them with larger photos")))
    if extreme:
        warnings.append(_warning("extreme_aspect", "warning", (
            f"{len(extreme)} image(s) have one side more than {EXTREME_ASPECT:g} times the other "
            f"({_names([e['path'] for e in extreme])}): squeezed into a square their content is distorted; "
            "crop them closer to a square")))
    return tiny, extreme
