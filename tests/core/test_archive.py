"""Safe ZIP extraction: hostile fixtures made here (zip slip, links, encryption, nesting, bombs), properties."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import struct
import tarfile
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_image_folder
from tlcore.io.archive import ArchiveLimits, is_junk_name, safe_extract
from tlcore.data.datasets import load_dataset
from tlcore.io.errors import TLError
from tlcore.lab.workspace import Workspace

GOOD = {"red/a.png": b"red image bytes", "blue/b.png": b"blue image bytes"}


def make_zip(path: Path, entries: dict[str, bytes] | list, method=zipfile.ZIP_DEFLATED) -> Path:
    """A zip of ``name -> bytes`` (or a list of ZipInfo/name, bytes pairs, for duplicates and attributes)."""
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return path


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def all_paths(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def patch_headers(zip_path: Path, member: str, offset_local: int, offset_central: int, value: int, size: int):
    """Overwrite a little-endian field of ``member`` in both its local and its central header."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
    data = bytearray(zip_path.read_bytes())
    data[info.header_offset + offset_local:info.header_offset + offset_local + size] = value.to_bytes(size, "little")
    central = data.find(b"PK\x01\x02")
    while int.from_bytes(data[central + 42:central + 46], "little") != info.header_offset:
        central = data.find(b"PK\x01\x02", central + 1)
    data[central + offset_central:central + offset_central + size] = value.to_bytes(size, "little")
    zip_path.write_bytes(bytes(data))


def set_flag_bits(zip_path: Path, member: str, bits: int):
    # zipfile clears flag_bits when writing, so the "encrypted" bit is set on the bytes afterwards
    patch_headers(zip_path, member, 6, 8, bits, 2)


def one_sentence(exc: BaseException, *fragments: str):
    message = str(exc)
    assert "\n" not in message and ". " not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.fixture
def area(tmp_path):
    """A folder holding the zip and the target, so writes beside or above the target show up."""
    (tmp_path / "area").mkdir()
    return tmp_path / "area"


@pytest.fixture
def bytes_read(monkeypatch):
    """Counts the decompressed bytes zipfile hands out: how far an extraction really went."""
    counter = {"n": 0}
    real_read = zipfile.ZipExtFile.read

    def read(self, n=-1):
        data = real_read(self, n)
        counter["n"] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    return counter


# --- ordinary archives ----------------------------------------------------------------------------


def test_good_zip_is_extracted_exactly(area):
    entries = {**GOOD, "blue/nested/deeper/c.png": b"c" * 5000, "empty/": b"", "zero.png": b""}
    zip_path = make_zip(area / "good.zip", entries)
    refused = safe_extract(zip_path, area / "out")
    assert refused == []
    assert files_under(area / "out") == {k: v for k, v in entries.items() if not k.endswith("/")}
    assert (area / "out" / "empty").is_dir()


def test_stored_and_windows_separators(area):
    zip_path = make_zip(area / "win.zip", {"red\\a.png": b"A", "blue\\sub\\b.png": b"B"}, zipfile.ZIP_STORED)
    assert safe_extract(zip_path, area / "out") == []
    assert files_under(area / "out") == {"red/a.png": b"A", "blue/sub/b.png": b"B"}


def test_target_that_is_not_empty_is_refused(area):
    (area / "out").mkdir()
    (area / "out" / "keep.txt").write_text("mine")
    with pytest.raises(TLError) as info:
        safe_extract(make_zip(area / "g.zip", GOOD), area / "out")
    one_sentence(info.value, "out", "empty")
    assert files_under(area / "out") == {"keep.txt": b"mine"}


def test_existing_empty_target_is_used_and_kept_on_failure(area):
    (area / "out").mkdir()
    safe_extract(make_zip(area / "g.zip", GOOD), area / "out")
    assert set(files_under(area / "out")) == set(GOOD)
    (area / "out2").mkdir()
    with pytest.raises(TLError):
        safe_extract(make_zip(area / "many.zip", {f"red/{i}.png": b"x" for i in range(5)}), area / "out2",
                     ArchiveLimits(max_entries=3))
    assert (area / "out2").is_dir() and list((area / "out2").iterdir()) == []


# --- entries refused one by one --------------------------------------------------------------------


@pytest.mark.parametrize("evil", [
    "../evil.png", "../../evil.png", "red/../../evil.png", "..\\evil.png", "red\\..\\..\\evil.png",
    "/tmp/tlcore-archive-evil.png", "//server/share/evil.png", "\\\\server\\share\\evil.png",
    "C:\\evil.png", "C:/evil.png", "C:evil.png", "c:\\Windows\\evil.png", "..", "../",
])
def test_zip_slip_entries_are_refused_and_the_rest_extracted(area, evil):
    zip_path = make_zip(area / "slip.zip", {**GOOD, evil: b"boom"})
    before = all_paths(area.parent)
    refused = safe_extract(zip_path, area / "out")
    assert refused == [{"name": evil, "reason": "its path leads outside the archive's folder"}]
    assert files_under(area / "out") == GOOD
    new = all_paths(area.parent) - before
    assert all(p.is_relative_to(area / "out") for p in new), new  # nothing beside or above the target
    assert not Path("/tmp/tlcore-archive-evil.png").exists()


def test_symlink_entries_are_refused(area):
    link = zipfile.ZipInfo("red/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    dir_link = zipfile.ZipInfo("blue/linked/")
    dir_link.create_system = 3
    dir_link.external_attr = (stat.S_IFLNK | 0o777) << 16
    fifo = zipfile.ZipInfo("red/pipe")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    zip_path = make_zip(area / "links.zip", [*GOOD.items(), (link, "/etc/passwd"), (dir_link, "/"), (fifo, b"")])
    refused = safe_extract(zip_path, area / "out")
    assert refused == [{"name": "red/link.png", "reason": "is a symbolic link"},
                       {"name": "blue/linked/", "reason": "is a symbolic link"},
                       {"name": "red/pipe", "reason": "is a device or other special file"}]
    assert files_under(area / "out") == GOOD
    assert not any(p.is_symlink() for p in (area / "out").rglob("*"))


@pytest.mark.parametrize("bits", [0x1, 0x41, 0x9])
def test_encrypted_entries_are_refused(area, bits):
    zip_path = make_zip(area / "locked.zip", {**GOOD, "red/secret.png": b"ciphertext"})
    set_flag_bits(zip_path, "red/secret.png", bits)
    refused = safe_extract(zip_path, area / "out")
    assert refused == [{"name": "red/secret.png", "reason": "is encrypted (password-protected)"}]
    assert files_under(area / "out") == GOOD


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data)


def _tar(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("x.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("inner.png", data)
    return buffer.getvalue()


def _empty_zip(_data: bytes) -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["red/inner.zip", "red/photos.TAR.GZ", "blue/x.tgz", "blue/x.7z", "x.rar",
                                  "y.bz2", "z.xz"])
def test_nested_archives_are_refused_by_name(area, name):
    refused = safe_extract(make_zip(area / "nest.zip", {**GOOD, name: b"whatever"}), area / "out")
    assert [r["name"] for r in refused] == [name] and "archive inside the archive" in refused[0]["reason"]
    assert files_under(area / "out") == GOOD


@pytest.mark.parametrize("pack", [_zip, _empty_zip, _gzip, _tar, bz2.compress, lzma.compress])
def test_nested_archives_are_refused_by_content(area, pack):
    refused = safe_extract(make_zip(area / "nest.zip", {**GOOD, "red/photo.png": pack(b"payload" * 50)}),
                           area / "out")
    assert [r["name"] for r in refused] == ["red/photo.png"] and "archive inside" in refused[0]["reason"]
    assert files_under(area / "out") == GOOD


def test_clutter_is_ignored_silently(area):
    clutter = {"__MACOSX/red/._a.png": b"\x00\x05\x16\x07", "__MACOSX/._red": b"x", "red/._a.png": b"\x00\x05",
               "red/.DS_Store": b"Bud1", "Thumbs.db": b"x", "blue/THUMBS.DB": b"x", "blue/desktop.ini": b"[x]",
               "__macosx/": b"", "./": b""}
    refused = safe_extract(make_zip(area / "mac.zip", {**GOOD, **clutter}), area / "out")
    assert refused == []
    assert files_under(area / "out") == GOOD
    assert not (area / "out" / "__MACOSX").exists()


@pytest.mark.parametrize("name", ["__MACOSX", "._x.png", ".DS_Store", "Thumbs.db", "thumbs.db", "desktop.ini"])
def test_is_junk_name(name):
    assert is_junk_name(name)


@pytest.mark.parametrize("name", ["red", "a.png", ".hidden.png", "_x.png", "MACOSX"])
def test_is_not_junk_name(name):
    assert not is_junk_name(name)


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # duplicates are the point
def test_duplicates_and_file_folder_clashes_are_refused(area):
    entries = [("red/a.png", b"first"), ("red/a.png", b"second"), ("blue", b"a file named like a class"),
               ("blue/b.png", b"B"), ("green/", b""), ("green", b"file over a folder"), ("x" * 256 + ".png", b"x"),
               ("red/", b"")]
    refused = safe_extract(make_zip(area / "dup.zip", entries), area / "out")
    assert [r["name"] for r in refused] == ["red/a.png", "blue/b.png", "green", "x" * 256 + ".png"]
    assert "same name" in refused[0]["reason"] and "longer than 255" in refused[3]["reason"]
    assert files_under(area / "out") == {"red/a.png": b"first", "blue": b"a file named like a class"}


def test_very_deep_paths_are_refused(area):
    deep = "a/" * 600 + "x.png"
    refused = safe_extract(make_zip(area / "deep.zip", {**GOOD, deep: b"x"}), area / "out")
    assert refused == [{"name": deep, "reason": "has a path longer than 1024 bytes"}]
    assert files_under(area / "out") == GOOD


# --- whole archives refused -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """One entry of 200 MB of zeros, deflated to about 200 kB, written in a stream."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    zero = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("blue/b.png", b"fine")
        with zf.open("red/bomb.png", "w") as f:  # 32-bit size fields, easy to patch below
            for _ in range(200):
                f.write(zero)
    assert path.stat().st_size < 1_000_000
    return path


@pytest.fixture
def lying_bomb(bomb, tmp_path) -> Path:
    """The bomb, with headers claiming a compressed size close to the real size: ratio about 1."""
    path = tmp_path / "liar.zip"
    path.write_bytes(bomb.read_bytes())
    patch_headers(path, "red/bomb.png", 18, 20, 190_000_000, 4)
    return path


def test_zip_bomb_is_refused_from_its_header_before_reading(bomb, area, bytes_read):
    with pytest.raises(TLError) as info:
        safe_extract(bomb, area / "out")
    one_sentence(info.value, "'bomb.zip'", "'red/bomb.png'", "100 times", "zip bomb")
    assert bytes_read["n"] == 0
    assert all_paths(area) == set()  # nothing left behind


def test_zip_bomb_with_a_lying_header_stops_early(lying_bomb, area, bytes_read):
    tracemalloc.start()
    try:
        with pytest.raises(TLError) as info:
            safe_extract(lying_bomb, area / "out", ArchiveLimits(max_file_bytes=10**9))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_sentence(info.value, "'liar.zip'")
    assert bytes_read["n"] <= 3 * (1 << 20)  # far from the 200 MB inside
    assert peak < 20_000_000  # memory stays at a few chunks
    assert all_paths(area) == set()


def test_ratio_is_measured_on_the_compressed_bytes_really_read(area, bytes_read):
    # 20 MB of zeros (~20 kB deflated) whose header claims 4.5 MB compressed (ratio 4.4, under
    # the cap of 5); real padding follows, so the reader does not run out of data first
    path = area / "padded.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("red/bomb.png", "w") as f:
            for _ in range(20):
                f.write(bytes(1 << 20))
        zf.writestr("blue/pad.bin", np.random.default_rng(0).bytes(5_000_000), compress_type=zipfile.ZIP_STORED)
    patch_headers(path, "red/bomb.png", 18, 20, 4_500_000, 4)
    with pytest.raises(TLError) as info:
        safe_extract(path, area / "out", ArchiveLimits(max_ratio=5))
    one_sentence(info.value, "'padded.zip'", "'red/bomb.png'", "5 times", "zip bomb")
    assert bytes_read["n"] <= 8 * (1 << 20)
    assert not (area / "out").exists()


def test_zip_bomb_stops_at_the_file_cap(bomb, area, bytes_read):
    limits = ArchiveLimits(max_file_bytes=2_000_000, max_ratio=1e9)
    with pytest.raises(TLError) as info:
        safe_extract(bomb, area / "out", limits)
    one_sentence(info.value, "'red/bomb.png'", "2 MB", "one file")
    assert bytes_read["n"] <= 2_000_000 + 2 * (1 << 20)
    assert all_paths(area) == set()


def test_sizes_understated_in_headers_are_a_tlerror(area, bytes_read):
    entries = {f"red/{i}.png": bytes([i]) * 300_000 for i in range(4)}
    zip_path = make_zip(area / "sum.zip", entries, zipfile.ZIP_STORED)
    for i in range(4):  # headers claim 1 kB each: the declared total passes the cap, the real one would not
        patch_headers(zip_path, f"red/{i}.png", 22, 24, 1_000, 4)
    with pytest.raises(TLError) as info:
        safe_extract(zip_path, area / "out", ArchiveLimits(max_total_bytes=500_000))
    one_sentence(info.value, "'sum.zip'", "CRC")  # reading stops at the claimed size, then the check fails
    assert bytes_read["n"] <= 1_000
    assert not (area / "out").exists()


def test_ratio_cap_spares_small_files_that_compress_well(area):
    zip_path = make_zip(area / "flat.zip", {"red/flat.bmp": bytes(500_000), **GOOD})  # ratio ~500, but small
    assert safe_extract(zip_path, area / "out") == []
    limits = ArchiveLimits(ratio_grace_bytes=100_000)
    with pytest.raises(TLError, match="times its compressed size"):
        safe_extract(zip_path, area / "out2", limits)
    assert not (area / "out2").exists()


def test_declared_total_over_the_cap_is_refused_before_reading(area, bytes_read):
    entries = {f"red/{i}.png": bytes([i]) * 100_000 for i in range(3)}
    zip_path = make_zip(area / "big.zip", entries, zipfile.ZIP_STORED)
    with pytest.raises(TLError) as info:
        safe_extract(zip_path, area / "out", ArchiveLimits(max_total_bytes=250_000))
    one_sentence(info.value, "'big.zip'", "300 kB", "250 kB")
    assert bytes_read["n"] == 0
    assert not (area / "out").exists()
    assert safe_extract(zip_path, area / "ok", ArchiveLimits(max_total_bytes=300_000)) == []  # at the cap is fine
    assert files_under(area / "ok") == entries


def test_too_many_entries_is_refused_from_the_end_record(area, bytes_read):
    zip_path = make_zip(area / "many.zip", {f"red/{i}.png": b"x" for i in range(30)})
    with pytest.raises(TLError) as info:
        safe_extract(zip_path, area / "out", ArchiveLimits(max_entries=20))
    one_sentence(info.value, "'many.zip'", "30 entries", "20")
    assert bytes_read["n"] == 0 and not (area / "out").exists()


def test_too_many_entries_is_refused_even_when_the_end_record_lies(area):
    zip_path = make_zip(area / "many.zip", {f"red/{i}.png": b"x" for i in range(30)})
    data = bytearray(zip_path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = struct.pack("<HH", 2, 2)  # claims two entries
    zip_path.write_bytes(bytes(data))
    with pytest.raises(TLError, match="30 entries"):
        safe_extract(zip_path, area / "out", ArchiveLimits(max_entries=20))


def test_oversized_entry_list_is_refused_before_it_is_loaded(area):
    bloat = struct.pack("<HH", 0xCAFE, 2000) + b"x" * 2000  # a well-formed but huge extra field
    with zipfile.ZipFile(area / "fat.zip", "w") as zf:
        for i in range(5):
            info = zipfile.ZipInfo(f"red/{i}.png")
            info.extra = bloat
            zf.writestr(info, b"x")
    with pytest.raises(TLError) as info:
        safe_extract(area / "fat.zip", area / "out", ArchiveLimits(max_entries=5))
    one_sentence(info.value, "'fat.zip'", "list of entries")


@pytest.mark.parametrize("method, name", [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")])
def test_compression_that_cannot_be_bounded_is_refused(area, method, name):
    zip_path = make_zip(area / "odd.zip", GOOD, method)
    with pytest.raises(TLError) as info:
        safe_extract(zip_path, area / "out")
    one_sentence(info.value, "'odd.zip'", name, "deflate")
    assert not (area / "out").exists()


def test_crc_error_is_a_tlerror_and_leaves_nothing(area):
    zip_path = make_zip(area / "crc.zip", {**GOOD, "red/z.png": b"abcdefgh" * 10}, zipfile.ZIP_STORED)
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo("red/z.png")
    data = bytearray(zip_path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 3] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    with pytest.raises(TLError) as info:
        safe_extract(zip_path, area / "out")
    one_sentence(info.value, "'crc.zip'", "CRC")
    assert not (area / "out").exists()


def test_empty_zip_gives_an_empty_folder(area):
    (area / "x.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    assert safe_extract(area / "x.zip", area / "out") == [] and list((area / "out").iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04" + bytes(40), b"PK\x05\x06" + bytes(17)])
def test_not_a_zip_is_a_tlerror(area, content):
    (area / "x.zip").write_bytes(content)
    with pytest.raises(TLError) as info:
        safe_extract(area / "x.zip", area / "out")
    one_sentence(info.value, "'x.zip'")
    assert not (area / "out").exists()


def test_limits_are_validated_and_frozen():
    with pytest.raises(TLError, match="max_ratio=0"):
        ArchiveLimits(max_ratio=0)
    with pytest.raises(TLError, match="max_entries=-1"):
        ArchiveLimits(max_entries=-1)
    with pytest.raises(TLError, match="ratio_grace_bytes=-1"):
        ArchiveLimits(ratio_grace_bytes=-1)
    assert ArchiveLimits(ratio_grace_bytes=0).ratio_grace_bytes == 0
    with pytest.raises(AttributeError):
        ArchiveLimits().max_entries = 5


# --- properties -------------------------------------------------------------------------------------


def _check_contained(zip_bytes: bytes, limits=ArchiveLimits(max_file_bytes=1_000_000, max_total_bytes=4_000_000)):
    """Extract ``zip_bytes``: either files inside the target, or TLError; returns (refused, files) or None."""
    with tempfile.TemporaryDirectory() as tmp:
        area = Path(tmp)
        (area / "in.zip").write_bytes(zip_bytes)
        tracemalloc.start()
        try:
            refused = safe_extract(area / "in.zip", area / "out", limits)
        except TLError as exc:
            assert "\n" not in str(exc)
            assert {p.name for p in area.iterdir()} == {"in.zip"}  # nothing left behind
            return None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 40_000_000
        for p in area.rglob("*"):
            assert p == area / "in.zip" or p.resolve().is_relative_to((area / "out").resolve()), p
            assert not p.is_symlink()
        assert isinstance(refused, list) and all(set(r) == {"name", "reason"} for r in refused)
        return refused, files_under(area / "out")


def _valid_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("red/a.png", b"A" * 300, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("blue/b.png", b"some bytes", compress_type=zipfile.ZIP_STORED)
        zf.writestr("blue/", b"")
    return buffer.getvalue()


VALID = _valid_zip()
FAST = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_give_contained_files_or_a_tlerror(data):
    _check_contained(data)


@FAST
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(VALID)))
def test_damaged_zips_give_contained_files_or_a_tlerror(patches, cut):
    data = bytearray(VALID)
    for position, value in patches:
        data[position] = value
    _check_contained(bytes(data[:cut]) if cut < 40 else bytes(data))


NAME_PARTS = st.sampled_from(["..", ".", "", "a", "b", "C:", "c:", "\\", "/", ":", "é", "._x", "__MACOSX",
                              "x.zip", ".DS_Store", "~", " ", "\\\\", "//", "a.png"])
NAMES = st.one_of(
    st.lists(NAME_PARTS, min_size=1, max_size=8).map("".join).filter(bool),  # zipfile cannot write ""
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30),
)


def _expected_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # duplicates are the point
@FAST
@given(st.lists(st.tuples(NAMES, st.binary(max_size=64), st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])),
                max_size=8))
def test_any_entry_names_stay_inside_the_target(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, method in entries:
            zf.writestr(name, data, compress_type=method)
    result = _check_contained(buffer.getvalue())
    assert result is not None  # well-formed and small: only single entries may be refused
    refused, files = result
    names = [name for name, _, _ in entries]
    assert {r["name"] for r in refused} <= set(names)
    for r in refused:
        parts = _expected_parts(r["name"])
        if r["name"].replace("\\", "/").startswith("/") or ".." in parts:
            assert "outside" in r["reason"]
    for name in names:
        if ".." in _expected_parts(name) or name.replace("\\", "/").startswith("/"):
            assert name in {r["name"] for r in refused}  # escaping names are always reported
    refused_names = {r["name"] for r in refused}
    for rel, content in files.items():
        # Every file is one of the entries of that path, unchanged: the first one not refused. A refused entry
        # (say "\\x", which escapes) can share its normalised path with a written one ("x"), and is skipped.
        same_path = [(name, data) for name, data, _ in entries if "/".join(_expected_parts(name)) == rel]
        kept = [data for name, data in same_path if name not in refused_names]
        assert content == (kept[0] if kept else content) and content in [data for _, data in same_path]


# --- through load_dataset and the dashboard workspace --------------------------------------------


def _hostile_dataset_zip(tmp_path: Path) -> tuple[Path, list[str]]:
    folder = make_image_folder(tmp_path / "src", n_per_class=4)
    link = zipfile.ZipInfo("photos/red/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    hostile = ["photos/../../evil.png", "/tmp/tlcore-archive-abs.png", "C:\\evil.png", "photos/red/link.png",
               "photos/blue/secret.png", "photos/blue/more.zip"]
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f"photos/{f.relative_to(folder).as_posix()}")
        zf.writestr(hostile[0], b"boom")
        zf.writestr(hostile[1], b"boom")
        zf.writestr(hostile[2], b"boom")
        zf.writestr(link, "/etc/passwd")
        zf.writestr(hostile[4], (folder / "blue" / "blue_0.png").read_bytes())
        zf.writestr(hostile[5], _zip(b"inner"))
        zf.writestr("__MACOSX/photos/red/._red_0.png", b"\x00\x05\x16\x07")
        zf.writestr("photos/Thumbs.db", b"x")
    set_flag_bits(path, hostile[4], 0x1)
    return path, hostile


def test_load_dataset_keeps_good_images_and_lists_hostile_entries(tmp_path, isolated_cache):
    path, hostile = _hostile_dataset_zip(tmp_path)
    ds = load_dataset(path)
    assert ds.classes == ["blue", "red"] and len(ds.samples) == 8
    assert all(Path(s.path).is_relative_to(isolated_cache) and Path(s.path).is_file() for s in ds.samples)
    assert [s["entry"] for s in ds.skipped] == hostile
    assert all(s["path"] == f"{path} > {s['entry']}" and s["reason"] for s in ds.skipped)
    reasons = [s["reason"] for s in ds.skipped]
    assert "outside" in reasons[0] and "outside" in reasons[1] and "outside" in reasons[2]
    assert "symbolic link" in reasons[3] and "encrypted" in reasons[4] and "archive inside" in reasons[5]
    assert not Path("/tmp/tlcore-archive-abs.png").exists() and not (tmp_path.parent / "evil.png").exists()


def test_workspace_zip_upload_reports_refused_entries(tmp_path):
    path, hostile = _hostile_dataset_zip(tmp_path)
    ws = Workspace(tmp_path / "ws")
    added, rejected = ws.add_zip(path.read_bytes())
    assert ws.counts() == {"blue": 4, "red": 4} and len(added) == 8
    assert [r["name"] for r in rejected] == hostile
    assert all(set(r) == {"name", "reason"} and r["reason"] for r in rejected)


def test_workspace_zip_errors_do_not_name_the_temporary_file(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(TLError) as info:
        ws.add_zip(make_zip(tmp_path / "loose.zip", {"a.png": b"x", "b.png": b"y"}).read_bytes())
    one_sentence(info.value, "the ZIP", "one folder per class")
    assert "upload.zip" not in str(info.value)


# --- what is wrong with the layout --------------------------------------------------------------------


def test_zip_of_loose_images_says_to_use_class_folders(tmp_path):
    with pytest.raises(TLError) as info:
        load_dataset(make_zip(tmp_path / "loose.zip", {"a.png": b"x", "b.png": b"y", "c.png": b"z"}))
    one_sentence(info.value, "loose.zip", "found none", "3 loose file(s)", "one folder per class")


def test_zip_with_one_class_and_loose_images(tmp_path):
    with pytest.raises(TLError) as info:
        load_dataset(make_zip(tmp_path / "half.zip", {"cats/a.png": b"x", "dog1.png": b"y"}))
    one_sentence(info.value, "two class folders", "only 'cats'", "1 loose file(s)")


def test_zip_with_a_single_class(tmp_path):
    with pytest.raises(TLError) as info:
        load_dataset(make_zip(tmp_path / "one.zip", {"photos/cats/a.png": b"x", "photos/cats/b.png": b"y"}))
    one_sentence(info.value, "two class folders", "only 'cats'")


def test_zip_with_an_empty_class(tmp_path):
    with pytest.raises(TLError) as info:
        load_dataset(make_zip(tmp_path / "empty.zip", {"cats/a.png": b"x", "dogs/b.png": b"y", "birds/": b"",
                                                       "birds/.DS_Store": b"Bud1"}))
    one_sentence(info.value, "'birds'", "no usable images")


def test_zip_whose_entries_are_all_refused_says_why(tmp_path):
    with pytest.raises(TLError) as info:
        load_dataset(make_zip(tmp_path / "all.zip", {"../cats/a.png": b"x", "../dogs/b.png": b"y"}))
    one_sentence(info.value, "found none", "2 entry(ies) were refused", "'../cats/a.png'", "outside")
