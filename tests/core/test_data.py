"""Datasets as labelled files (folders, splits, zips, pairs), the stratified split, broken files."""
from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_image_folder, write_image
from tlcore.data.datasets import load_dataset, stratified_split
from tlcore.io.errors import TLError
from tlcore.training.features import extract_features
from tlcore.data.images import decode_image


def counts_by_class(ds) -> dict[str, int]:
    return {c: sum(1 for smp in ds.samples if smp.label == c) for c in ds.classes}


def zip_folder(folder: Path, zip_path: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> Path:
    """Zip ``folder``'s files under ``prefix`` (plus ``extra`` raw entries)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return zip_path


def summary(dataset):
    """{(split, label): count} over the samples."""
    return Counter((s.split, s.label) for s in dataset.samples)


def assert_one_sentence(exc: BaseException, *fragments: str):
    message = str(exc)
    assert "\n" not in message and message.count(". ") == 0, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- folder layouts ---------------------------------------------------------------------------


def test_folder_of_class_folders(image_folder):
    ds = load_dataset(image_folder)
    assert ds.classes == ["blue", "red"]
    assert not ds.has_splits
    assert summary(ds) == {(None, "blue"): 8, (None, "red"): 8}
    assert counts_by_class(ds) == {"blue": 8, "red": 8}
    for s in ds.samples:
        assert Path(s.path).is_file()
        assert Path(s.path).parent.name == s.label
    assert ds.skipped == []
    assert load_dataset(str(image_folder)).samples == ds.samples  # str or Path, same result


def test_nested_folders_inside_a_class_count_for_that_class(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=3)
    write_image(root / "red" / "2024-05" / "extra.png", (220, 30, 30))
    ds = load_dataset(root)
    assert counts_by_class(ds) == {"blue": 3, "red": 4}


def test_train_val_test_splits_are_respected(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=3, splits=["train", "val", "test"])
    ds = load_dataset(root)
    assert ds.has_splits
    assert ds.classes == ["blue", "red"]
    assert summary(ds) == {(split, c): 3 for split in ("train", "val", "test") for c in ("blue", "red")}
    for s in ds.samples:
        assert Path(s.path).parent.parent.name == s.split


def test_train_and_val_only(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2, splits=["train", "val"])
    ds = load_dataset(root)
    assert ds.has_splits
    assert {s.split for s in ds.samples} == {"train", "val"}
    assert len(ds.samples) == 8


def test_split_folder_aliases(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2, splits=["Training", "validation", "testing"])
    ds = load_dataset(root)
    assert Counter(s.split for s in ds.samples) == {"train": 4, "val": 4, "test": 4}


def test_splits_without_train_is_a_tlerror(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2, splits=["val", "test"])
    with pytest.raises(TLError) as info:
        load_dataset(root)
    assert_one_sentence(info.value, "train/", "test", "val")


def test_hidden_files_and_folders_are_ignored(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2)
    (root / "red" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_image(root / "red" / ".hidden.png", (220, 30, 30))
    write_image(root / "blue" / ".thumbnails" / "t.png", (40, 60, 220))
    write_image(root / ".cache" / "x.png", (40, 60, 220))  # a hidden "class"
    write_image(root / "__MACOSX" / "red" / "._a.png", (220, 30, 30))
    ds = load_dataset(root)
    assert ds.classes == ["blue", "red"]
    assert len(ds.samples) == 4
    assert not any("/." in s.path or "__MACOSX" in s.path for s in ds.samples)


def test_one_class_only_is_a_tlerror(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=3, classes=("red",))
    with pytest.raises(TLError) as info:
        load_dataset(root)
    assert_one_sentence(info.value, "two class", "'red'")


def test_no_class_folder_is_a_tlerror(tmp_path):
    root = tmp_path / "loose"
    write_image(root / "a.png", (220, 30, 30))
    with pytest.raises(TLError) as info:
        load_dataset(root)
    assert_one_sentence(info.value, "two class", "none", "1 loose file(s)", "one folder per class")


def test_windows_and_mac_clutter_in_folders_is_ignored(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2)
    (root / "red" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "blue" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "Thumbs.db").write_bytes(b"x")  # clutter at the top is not a loose image either
    write_image(root / "blue" / "._blue_0.png", (40, 60, 220))
    ds = load_dataset(root)
    assert ds.classes == ["blue", "red"] and len(ds.samples) == 4 and ds.skipped == []


def test_empty_class_folder_is_a_tlerror(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=3)
    (root / "green").mkdir()
    (root / "green" / ".DS_Store").write_bytes(b"x")  # only a hidden file: still empty
    with pytest.raises(TLError) as info:
        load_dataset(root)
    assert_one_sentence(info.value, "'green'")


def test_missing_path_is_a_tlerror(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(TLError) as info:
        load_dataset(missing)
    assert_one_sentence(info.value, str(missing), "does not exist")


@pytest.mark.parametrize("content", [b"just text\n", b"PK\x03\x04 but not really a zip"])
def test_file_that_is_not_a_zip_is_a_tlerror(tmp_path, content):
    path = tmp_path / "data.zip"
    path.write_bytes(content)
    with pytest.raises(TLError) as info:
        load_dataset(path)
    assert_one_sentence(info.value, "data.zip")


# --- zips -----------------------------------------------------------------------------------------


def test_zip_of_class_folders(tmp_path, image_folder, isolated_cache):
    ds = load_dataset(zip_folder(image_folder, tmp_path / "flat.zip"))
    assert ds.classes == ["blue", "red"] and not ds.has_splits
    assert summary(ds) == {(None, "blue"): 8, (None, "red"): 8}
    for s in ds.samples:
        path = Path(s.path)
        assert path.is_file() and path.is_relative_to(isolated_cache)  # extracted into the cache
        original = image_folder / s.label / path.name
        assert path.read_bytes() == original.read_bytes()


def test_zip_with_one_top_folder(tmp_path, image_folder):
    ds = load_dataset(zip_folder(image_folder, tmp_path / "photos.zip", prefix="photos/"))
    assert ds.classes == ["blue", "red"]
    assert len(ds.samples) == 16


def test_zip_with_nested_top_folders_and_splits(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2, splits=["train", "val", "test"])
    ds = load_dataset(zip_folder(root, tmp_path / "split.zip", prefix="export/dataset/"))
    assert ds.has_splits and ds.classes == ["blue", "red"]
    assert summary(ds) == {(split, c): 2 for split in ("train", "val", "test") for c in ("blue", "red")}


def test_zip_of_train_val_only(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=2, splits=["train", "val"])
    ds = load_dataset(zip_folder(root, tmp_path / "tv.zip"))
    assert Counter(s.split for s in ds.samples) == {"train": 4, "val": 4}


def test_zip_from_a_mac_ignores_macosx_and_ds_store(tmp_path, image_folder):
    extra = {
        "__MACOSX/photos/red/._red_0.png": b"\x00\x05\x16\x07AppleDouble",
        "__MACOSX/photos/._red": b"\x00\x05\x16\x07",
        "photos/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "photos/red/.DS_Store": b"\x00\x00\x00\x01Bud1",
    }
    ds = load_dataset(zip_folder(image_folder, tmp_path / "mac.zip", prefix="photos/", extra=extra))
    assert ds.classes == ["blue", "red"]
    assert len(ds.samples) == 16
    assert not any("__MACOSX" in s.path or ".DS_Store" in s.path for s in ds.samples)


def test_zip_with_windows_separators(tmp_path, image_folder):
    path = tmp_path / "win.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(image_folder.rglob("*.png")):
            info = zipfile.ZipInfo(f"{f.parent.name}\\{f.name}")
            zf.writestr(info, f.read_bytes())
    ds = load_dataset(path)
    assert ds.classes == ["blue", "red"] and len(ds.samples) == 16


def test_same_zip_loaded_twice_reuses_the_extraction(tmp_path, image_folder):
    path = zip_folder(image_folder, tmp_path / "again.zip")
    first = load_dataset(path)
    second = load_dataset(path)
    assert [s.path for s in first.samples] == [s.path for s in second.samples]


@pytest.mark.parametrize("evil", ["../evil.png", "../../evil.png", "red/../../evil.png", "/tmp/tlcore-evil-abs.png",
                                  "C:\\evil.png", "\\\\server\\share\\evil.png"])
def test_zip_entry_escaping_the_folder_is_refused_and_reported(tmp_path, image_folder, isolated_cache, evil):
    (tmp_path / "inside").mkdir()
    path = zip_folder(image_folder, tmp_path / "inside" / "evil.zip", extra={evil: b"boom"})
    before = set(tmp_path.rglob("*"))
    ds = load_dataset(path)
    assert ds.classes == ["blue", "red"] and len(ds.samples) == 16  # the good entries still load
    assert [(s["path"], s["entry"]) for s in ds.skipped] == [(f"{path} > {evil}", evil)]
    assert "outside" in ds.skipped[0]["reason"]
    assert set(tmp_path.rglob("*")) == before  # nothing written next to the zip or above it
    assert not Path("/tmp/tlcore-evil-abs.png").exists()
    extracted = [p for p in (isolated_cache / "zips").rglob("*") if p.is_file()]
    assert all(p.read_bytes() != b"boom" for p in extracted)
    assert load_dataset(path).skipped == ds.skipped  # a load from the cached extraction reports it too


def _patch_member(zip_path: Path, member: str, new_bytes: bytes | None = None, method: int | None = None):
    """Overwrite the start of ``member``'s stored data, or its compression method (both headers)."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
    data = bytearray(zip_path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    if new_bytes is not None:
        data[start:start + len(new_bytes)] = new_bytes
    if method is not None:
        data[info.header_offset + 8:info.header_offset + 10] = method.to_bytes(2, "little")
        central = data.find(b"PK\x01\x02")  # the central directory entry pointing at this member
        while int.from_bytes(data[central + 42:central + 46], "little") != info.header_offset:
            central = data.find(b"PK\x01\x02", central + 1)
        data[central + 10:central + 12] = method.to_bytes(2, "little")
    zip_path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        {"new_bytes": b"\xff\xff\xff\xff"},  # an invalid deflate block: zlib fails
        {"method": 9},  # Deflate64 (Windows Explorer's choice for big files): Python cannot read it
        {"method": 99},  # AES encryption marker
    ],
)
def test_damaged_or_unsupported_zip_is_a_tlerror(tmp_path, image_folder, isolated_cache, damage):
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(image_folder.rglob("*.png")):
            zf.write(f, f.relative_to(image_folder).as_posix())
    _patch_member(path, "blue/blue_0.png", **damage)
    with pytest.raises(TLError) as info:
        load_dataset(path)
    assert_one_sentence(info.value, "damaged.zip")
    leftovers = [p for p in (isolated_cache / "zips").rglob("*") if p.is_file()]
    assert leftovers == []  # a failed extraction leaves nothing behind for the next run


def test_zip_extracted_concurrently_by_another_process(tmp_path, image_folder, monkeypatch):
    import tlcore.data.datasets as data_module

    real_replace = data_module.os.replace

    def racing_replace(src, dst):
        # another process finishes the same extraction first
        Path(dst).mkdir(parents=True)
        for f in Path(src).rglob("*"):
            if f.is_file():
                (Path(dst) / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
                (Path(dst) / f.relative_to(src)).write_bytes(f.read_bytes())
        return real_replace(src, dst)  # fails: the target is no longer empty

    monkeypatch.setattr(data_module.os, "replace", racing_replace)
    ds = load_dataset(zip_folder(image_folder, tmp_path / "race.zip"))
    assert ds.classes == ["blue", "red"] and len(ds.samples) == 16
    assert all(Path(s.path).is_file() for s in ds.samples)
    assert not [p for p in Path(ds.samples[0].path).parents[2].iterdir() if p.name.startswith(".extract-")]


# --- (file, label) pairs ---------------------------------------------------------------------------


def test_list_of_pairs(image_folder):
    files = sorted(image_folder.rglob("*.png"))
    pairs = [(f, f.parent.name) for f in files]
    ds = load_dataset(pairs)
    assert ds.classes == ["blue", "red"]
    assert [(s.path, s.label, s.split) for s in ds.samples] == [(str(f), f.parent.name, None) for f in files]
    assert load_dataset(tuple(pairs)).samples == ds.samples


def test_pairs_labels_become_strings(tmp_path):
    pairs = [(tmp_path / f"{i}.png", i % 2) for i in range(4)]
    ds = load_dataset(pairs)
    assert ds.classes == ["0", "1"]


@pytest.mark.parametrize("bad", [["a.png", "b.png"], [("a.png", "x", "extra")], [None]])
def test_pairs_that_are_not_pairs_are_a_tlerror(bad):
    with pytest.raises(TLError) as info:
        load_dataset(bad)
    assert_one_sentence(info.value, "(file, label) pairs", repr(bad[0]))


def test_pairs_with_one_label_is_a_tlerror():
    with pytest.raises(TLError, match="'cat'"):
        load_dataset([("a.png", "cat"), ("b.png", "cat")])


# --- stratified_split --------------------------------------------------------------------------


def labels_of(counts: dict[str, int]) -> list[str]:
    return [label for label, n in counts.items() for _ in range(n)]


def split_counts(labels, splits):
    return Counter(zip(labels, splits))


def test_default_fractions_are_honoured_per_class():
    labels = labels_of({"a": 100, "b": 50, "c": 20})
    splits = stratified_split(labels, seed=0)
    counts = split_counts(labels, splits)
    assert (counts["a", "train"], counts["a", "val"], counts["a", "test"]) == (80, 10, 10)
    assert (counts["b", "train"], counts["b", "val"], counts["b", "test"]) == (40, 5, 5)
    assert (counts["c", "train"], counts["c", "val"], counts["c", "test"]) == (16, 2, 2)


def test_custom_fractions():
    labels = labels_of({"a": 40, "b": 40})
    counts = split_counts(labels, stratified_split(labels, (0.5, 0.25, 0.25), seed=3))
    for c in "ab":
        assert (counts[c, "train"], counts[c, "val"], counts[c, "test"]) == (20, 10, 10)
    counts = split_counts(labels, stratified_split(labels, (0.7, 0.3, 0.0), seed=3))
    assert counts["a", "test"] == counts["b", "test"] == 0
    assert counts["a", "val"] == counts["b", "val"] == 12


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_small_classes_still_get_val_and_test(n):
    labels = labels_of({"big": 50, "small": n})
    counts = split_counts(labels, stratified_split(labels, seed=1))
    assert counts["small", "val"] >= 1 and counts["small", "test"] >= 1 and counts["small", "train"] >= 1


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_classes_stay_in_train(n):
    labels = labels_of({"big": 20, "tiny": n})
    counts = split_counts(labels, stratified_split(labels, seed=1))
    assert counts["tiny", "train"] == n


def test_deterministic_per_seed_and_different_across_seeds():
    labels = labels_of({"a": 30, "b": 30})
    assert stratified_split(labels, seed=7) == stratified_split(labels, seed=7)
    assert stratified_split(labels, seed=7) != stratified_split(labels, seed=8)
    # different seeds move images around but keep the per-class counts
    assert split_counts(labels, stratified_split(labels, seed=7)) == split_counts(labels, stratified_split(labels, seed=8))


def test_interleaved_labels_are_split_by_class_not_position():
    labels = ["a", "b"] * 20
    splits = stratified_split(labels, seed=0)
    counts = split_counts(labels, splits)
    assert counts["a", "val"] == counts["b", "val"] == 2
    assert counts["a", "test"] == counts["b", "test"] == 2


def test_empty_labels():
    assert stratified_split([], seed=0) == []


@pytest.mark.parametrize(
    "fractions",
    [
        (0.8, 0.1),
        (0.5, 0.3, 0.1, 0.1),
        (0.9, 0.2, -0.1),
        (0.5, 0.2, 0.2),
        (0.0, 0.5, 0.5),
        (float("nan"), 0.5, 0.5),
        (0.5, float("nan"), 0.5),
        (float("inf"), 0.0, 0.0),
        ("a", "b", "c"),
        "0.8,0.1,0.1",
        None,
    ],
)
def test_bad_fractions_are_a_tlerror(fractions):
    with pytest.raises(TLError) as info:
        stratified_split(["a"] * 10 + ["b"] * 10, fractions)
    assert_one_sentence(info.value, "split")


@st.composite
def split_cases(draw):
    counts = draw(st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 40), min_size=1, max_size=5))
    labels = labels_of(counts)
    order = draw(st.permutations(range(len(labels))))
    labels = [labels[i] for i in order]
    parts = draw(st.tuples(st.integers(1, 20), st.integers(0, 20), st.integers(0, 20)))
    fractions = tuple(p / sum(parts) for p in parts)
    return labels, fractions, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(split_cases())
def test_split_properties(case):
    labels, fractions, seed = case
    splits = stratified_split(labels, fractions, seed)
    assert len(splits) == len(labels)
    assert set(splits) <= {"train", "val", "test"}  # every label gets exactly one split
    assert stratified_split(labels, fractions, seed) == splits  # deterministic
    counts = split_counts(labels, splits)
    for label, n in Counter(labels).items():
        got = {s: counts[label, s] for s in ("train", "val", "test")}
        assert sum(got.values()) == n
        assert got["train"] >= 1  # at least one train per class
        for s, f in zip(("val", "test"), fractions[1:]):
            if f == 0:
                assert got[s] == 0
            elif n >= 3:
                assert got[s] >= 1
        if n * fractions[0] >= 2:  # enough room: the cuts are the rounded fractions
            for s, f in zip(("val", "test"), fractions[1:]):
                assert abs(got[s] - n * f) <= 1, (label, n, fractions, got)


# --- broken files: listed by load_dataset, reported by extract_features ------------------------------


def fake_encoder():
    return lambda batch: batch.reshape(len(batch), -1)[:, :4].astype("float32")


def test_broken_files_are_listed_then_skipped_with_reasons(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=3)
    good_jpeg = (root / "red" / "red_0.png").read_bytes()
    (root / "red" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header, then nothing
    (root / "red" / "truncated.png").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (root / "blue" / "notes.txt").write_text("taken on holiday\n")
    (root / "blue" / "empty.png").write_bytes(b"")
    vanished = write_image(root / "blue" / "vanished.png", (40, 60, 220))

    ds = load_dataset(root)
    assert len(ds.samples) == 11  # every file is listed; decoding is not load_dataset's job
    vanished.unlink()  # deleted between listing and extraction

    paths = [s.path for s in ds.samples]
    calls = []

    def get_encoder():
        calls.append(1)
        return fake_encoder()

    result = extract_features(paths, None, get_encoder, 32)
    broken = {"corrupt.jpg", "truncated.png", "notes.txt", "empty.png", "vanished.png"}
    reasons = {Path(s["path"]).name: s["reason"] for s in result.skipped}
    assert set(reasons) == broken
    assert all(reasons.values())
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["notes.txt"]
    assert "cannot read" in reasons["vanished.png"]
    assert "truncated" in reasons["truncated.png"] or "corrupt" in reasons["truncated.png"]
    assert all(s["path"] in paths for s in result.skipped)

    kept_names = [Path(paths[i]).name for i in result.kept]
    assert sorted(kept_names) == sorted(Path(p).name for p in paths if Path(p).name not in broken)
    assert result.features.shape == (6, 4)
    for row, i in zip(result.features, result.kept):
        np.testing.assert_array_equal(row, decode_image(Path(paths[i]).read_bytes(), 32).reshape(-1)[:4])
    assert calls == [1]
    assert result.cache_hits == 0 and result.computed == 6


def test_only_broken_files_gives_no_features(tmp_path):
    (tmp_path / "a.jpg").write_text("nope")
    (tmp_path / "b.png").write_bytes(b"")
    result = extract_features([str(tmp_path / "a.jpg"), str(tmp_path / "b.png")], None, fake_encoder, 32)
    assert result.kept == [] and result.features.shape[0] == 0
    assert [Path(s["path"]).name for s in result.skipped] == ["a.jpg", "b.png"]
