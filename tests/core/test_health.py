"""Dataset health: planted copies and leaks are all found (and nothing else), and every warning code."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcore.data.datasets import load_dataset, stratified_split
from tlcore.io.errors import TLError
from tlcore.data.health import check_dataset
from tlcore.data.phash import near_pairs


def photo(path: Path, rng, size=(96, 96), fmt=None, quality=None, exif=None) -> Path:
    """A smooth random picture (an 8x8 colour grid enlarged): low frequencies like a photo's, unique per call."""
    grid = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(grid).resize(size, Image.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in (("quality", quality), ("exif", exif)) if v is not None}
    img.save(path, format=fmt, **options)
    return path


def copy_as(src: Path, dest: Path, scale: float = 1.0, fmt: str = "PNG", quality: int | None = None) -> Path:
    with Image.open(src) as img:
        img = img.convert("RGB")
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, format=fmt, **({"quality": quality} if quality else {}))
    return dest


def codes(report) -> set[str]:
    return {w["code"] for w in report["warnings"]}


def split_folder(root: Path, n=6, classes=("ants", "bees"), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for name in classes:
            for i in range(n):
                photo(root / split / name / f"{name}_{i}.png", rng)
    return root


def test_every_planted_leak_is_reported_and_nothing_else(tmp_path):
    root = split_folder(tmp_path / "data")
    rng = np.random.default_rng(99)
    jpeg_original = photo(root / "train" / "bees" / "original.jpg", rng, (120, 90), "JPEG", 90)
    planted = {
        # exact copy, byte for byte
        (root / "train/ants/ants_0.png", copy_bytes(root / "train/ants/ants_0.png", root / "val/ants/exact.png"), "exact"),
        # smaller and re-encoded as JPEG at quality 60
        (root / "train/bees/bees_1.png", copy_as(root / "train/bees/bees_1.png", root / "val/bees/small.jpg", 0.5, "JPEG", 60), "near"),
        # larger JPEG at quality 95
        (root / "train/ants/ants_2.png", copy_as(root / "train/ants/ants_2.png", root / "val/ants/large.jpg", 1.5, "JPEG", 95), "near"),
        # JPEG to PNG
        (jpeg_original, copy_as(jpeg_original, root / "val/bees/from_jpeg.png"), "near"),
    }
    report = check_dataset(root)
    found = {(Path(p["a"]["path"]), Path(p["b"]["path"]), p["kind"]) for p in report["leaks"]}
    assert found == planted
    assert all(p["a"]["split"] == "train" and p["b"]["split"] == "val" for p in report["leaks"])
    assert sorted(sorted(Path(m["path"]) for m in g) for g in report["duplicates"]) == \
        sorted(sorted((a, b)) for a, b, _ in planted)
    leak = next(w for w in report["warnings"] if w["code"] == "leak")
    assert report["warnings"][0] is leak and leak["level"] == "error"  # the loudest comes first
    assert "4 image(s) appear in two splits (train/val)" in leak["message"]
    assert "duplicate" not in codes(report)  # every copy crosses splits: leaks, not duplicates


def copy_bytes(src: Path, dest: Path) -> Path:
    dest.write_bytes(src.read_bytes())
    return dest


def test_copies_within_one_split_are_duplicates_not_leaks(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("ants", "bees"):
        for i in range(5):
            photo(tmp_path / name / f"{i}.png", rng)
    copy_bytes(tmp_path / "ants/0.png", tmp_path / "ants/0_again.png")
    copy_as(tmp_path / "bees/3.png", tmp_path / "bees/3_small.jpg", 0.6, "JPEG", 80)
    report = check_dataset(tmp_path, split=(1.0, 0.0, 0.0))
    assert report["leaks"] == []
    groups = sorted(sorted(Path(m["path"]).name for m in g) for g in report["duplicates"])
    assert groups == [["0.png", "0_again.png"], ["3.png", "3_small.jpg"]]
    message = next(w["message"] for w in report["warnings"] if w["code"] == "duplicate")
    assert message.startswith("2 image(s) are copies of another in the same split (2 group(s)")


def test_splits_are_the_ones_training_assigns(tmp_path):
    rng = np.random.default_rng(2)
    for name, n in (("ants", 11), ("bees", 7)):
        for i in range(n):
            photo(tmp_path / name / f"{i}.png", rng)
    report = check_dataset(tmp_path, split=(0.6, 0.2, 0.2), seed=5)
    samples = load_dataset(tmp_path).samples
    expected = Counter(zip((s.label for s in samples), stratified_split([s.label for s in samples], (0.6, 0.2, 0.2), 5)))
    got = Counter({(c, sp): n for c, row in report["counts"].items() for sp, n in row.items() if sp != "total" and n})
    assert got == expected
    assert report["counts"]["ants"]["total"] == 11


def test_ten_to_one_imbalance_is_flagged_with_balanced_class_weights(tmp_path):
    rng = np.random.default_rng(3)
    for name, n in (("many", 30), ("few", 3)):
        for i in range(n):
            photo(tmp_path / name / f"{i}.png", rng, (40, 40))
    report = check_dataset(tmp_path, split=(1.0, 0.0, 0.0))
    assert report["imbalance_ratio"] == 10.0
    # scikit-learn's "balanced": n / (classes * count)
    assert report["class_weights"] == {"few": round(33 / (2 * 3), 3), "many": round(33 / (2 * 30), 3)}
    message = next(w["message"] for w in report["warnings"] if w["code"] == "imbalance")
    assert "many has 30 images and few 3 (10.0 to 1)" in message
    assert "class weights (few 5.5, many 0.55)" in message and "oversampling" in message and "undersampling" in message


def test_balanced_classes_raise_no_imbalance(image_folder):
    report = check_dataset(image_folder)
    assert report["imbalance_ratio"] == 1.0
    assert "imbalance" not in codes(report)


def test_small_classes_are_compared_with_the_data_tiers(image_folder, tmp_path):
    report = check_dataset(image_folder)
    assert report["recommended"] == {"tiers": {"start": 25, "good": 50, "great": 150}, "tier": "too_few",
                                     "class": "blue", "photos": 8, "next": "start", "missing": 17}
    message = next(w["message"] for w in report["warnings"] if w["code"] == "too_few_images")
    assert "fewer images than the 25 per class that are enough to start (blue 8, red 8)" in message
    assert "50 are good and 150 great" in message
    assert "augmentation" not in message  # photos first: augmentation is measured no substitute for them
    rng = np.random.default_rng(4)
    for name, n in (("a", 3), ("b", 25), ("c", 30)):
        for i in range(n):
            photo(tmp_path / "three" / name / f"{i}.png", rng, (40, 40))
    three = check_dataset(tmp_path / "three")
    assert (three["recommended"]["tier"], three["recommended"]["class"]) == ("too_few", "a")
    assert "1 class(es) have fewer images than the 25 per class" in \
        next(w["message"] for w in three["warnings"] if w["code"] == "too_few_images")


def test_the_sample_is_enough_to_start_and_not_too_small(tmp_path):
    from tlcore.data.sample_data import write_sample_dataset
    from tlcore.lab.workspace import Workspace

    per_class = Workspace.load_sample.__defaults__[0]  # what the Data page's button loads
    report = check_dataset(write_sample_dataset(tmp_path / "sample", per_class=per_class, size=32))
    assert report["recommended"]["tier"] == "start" and report["recommended"]["photos"] == per_class == 40
    assert "too_few_images" not in codes(report)


def _two_classes(root: Path, a: dict, b: dict, n: int = 8) -> Path:
    rng = np.random.default_rng(5)
    for name, options in (("cats", a), ("dogs", b)):
        for i in range(n):
            ext = "jpg" if options.get("fmt") == "JPEG" else "png"
            photo(root / name / f"{i}.{ext}", rng, **options)
    return root


def _camera(make: str, model: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    return exif


@pytest.mark.parametrize("a, b, feature, words", [
    ({"size": (64, 48)}, {"size": (200, 150)}, "size", "cats: mostly 64x48 px; dogs: mostly 200x150 px"),
    ({"fmt": "PNG"}, {"fmt": "JPEG", "quality": 92}, "format", "cats: mostly PNG (100%); dogs: mostly JPEG (100%)"),
    ({"fmt": "JPEG", "quality": 60}, {"fmt": "JPEG", "quality": 95}, "jpeg_quality", "cats: mostly quality 60; dogs: mostly quality 95"),
    ({"fmt": "JPEG", "quality": 90, "exif": _camera("Canon", "EOS 5D")}, {"fmt": "JPEG", "quality": 90},
     "camera", "cats: mostly Canon EOS 5D (100%); dogs: mostly no camera data (100%)"),
])
def test_capture_bias_names_what_differs_between_classes(tmp_path, a, b, feature, words):
    report = check_dataset(_two_classes(tmp_path, a, b))
    assert [bias["feature"] for bias in report["capture_bias"]] == [feature]
    message = next(w["message"] for w in report["warnings"] if w["code"] == "capture_bias")
    assert words in message and "instead of what the photos show" in message


def test_classes_collected_alike_show_no_capture_bias(tmp_path):
    report = check_dataset(_two_classes(tmp_path, {"fmt": "JPEG", "quality": 85}, {"fmt": "JPEG", "quality": 85}))
    assert report["capture_bias"] == [] and "capture_bias" not in codes(report)


def test_tiny_images_and_extreme_aspect_ratios_are_named(image_folder):
    rng = np.random.default_rng(6)
    photo(image_folder / "red" / "tiny.png", rng, (20, 24))
    photo(image_folder / "blue" / "banner.png", rng, (200, 40))
    report = check_dataset(image_folder)
    assert [(Path(e["path"]).name, e["width"], e["height"]) for e in report["tiny"]] == [("tiny.png", 20, 24)]
    assert [Path(e["path"]).name for e in report["extreme_aspect"]] == ["banner.png"]
    messages = {w["code"]: w["message"] for w in report["warnings"]}
    assert "1 image(s) are smaller than 32 px on their short side (red/tiny.png)" in messages["tiny_image"]
    assert "(blue/banner.png)" in messages["extreme_aspect"]


def test_unreadable_files_are_skipped_with_the_reason(image_folder):
    (image_folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (image_folder / "blue" / "notes.jpg").write_text("hello")
    report = check_dataset(image_folder)
    skipped = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"broken.jpg", "notes.jpg"}
    assert "corrupt or truncated" in skipped["broken.jpg"]
    assert report["n_images"] == 16  # the 8 + 8 readable ones, split as training would
    assert "2 file(s) cannot be used" in next(w["message"] for w in report["warnings"] if w["code"] == "skipped")


def test_progress_reports_every_image_read(image_folder):
    calls = []
    check_dataset(image_folder, on_progress=lambda done, logs: calls.append((done, logs["total"])))
    assert calls[-1] == (16, 16)


def test_missing_source_is_a_user_error(tmp_path):
    with pytest.raises(TLError, match="does not exist"):
        check_dataset(tmp_path / "nowhere")


def test_near_pairs_matches_a_brute_force_search_across_chunks():
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**63, 50, dtype=np.uint64)
    hashes[31] = hashes[3] ^ np.uint64(0b1011)  # 3 bits apart, in different chunks
    hashes[40] = hashes[39]
    brute = [(i, j, bin(int(hashes[i]) ^ int(hashes[j])).count("1")) for i in range(50) for j in range(i + 1, 50)]
    expected = [p for p in brute if p[2] <= 8]
    assert sorted(near_pairs(hashes, 8, chunk=7)) == expected
    assert (3, 31, 3) in expected and (39, 40, 0) in expected


def test_hymenoptera_photos_have_no_false_copies_or_bias(hymenoptera):
    report = check_dataset(hymenoptera)
    assert report["leaks"] == [] and report["duplicates"] == []
    assert report["capture_bias"] == []
    assert report["counts"]["ants"]["train"] == 124 and report["counts"]["bees"]["val"] == 83
