"""Safe extraction of ZIP archives that come from users.

Nothing inside a ZIP is trusted. Entry by entry, names that would land outside
the target folder, symbolic links and other special files, encrypted entries
and archives inside the archive are refused and reported, while the rest is
extracted; operating-system clutter (``__MACOSX/``, ``._*``, ``.DS_Store``,
``Thumbs.db``, ``desktop.ini``) is skipped silently. Whole-archive problems
(too many entries, too many bytes, a zip bomb, damaged data, an unsupported
compression method) raise :class:`~tlcore.io.errors.TLError` and leave nothing
on disk. Sizes are counted on the bytes actually decompressed, chunk by chunk,
so a lying header cannot make memory or disk use exceed the caps.
"""
from __future__ import annotations

import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import TLError

__all__ = ["ArchiveLimits", "safe_extract", "is_junk_name"]

_CHUNK = 1 << 20
_MAX_NAME_BYTES = 255  # the limit of common file systems for one path component
_MAX_PATH_BYTES = 1024  # leaves room under the usual 4096 for the folder extracted into
# Bytes of central directory allowed per permitted entry: ordinary names need ~100.
_DIRECTORY_BYTES_PER_ENTRY = 400
_JUNK_NAMES = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini"}
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".7z", ".rar", ".bz2", ".xz", ".zst",
                     ".lzma", ".tbz", ".tbz2", ".txz", ".cab")
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b\x08", b"\xfd7zXZ\x00",
                  b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd", b"MSCF\x00\x00\x00\x00")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Python's zipfile decompresses these two with a bounded output size; bzip2 and LZMA it
# decompresses a whole input chunk at once, so a tiny chunk could expand to gigabytes.
_SAFE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}
# What zipfile and zlib raise on damaged or hostile input.
_READ_ERRORS = (zlib.error, NotImplementedError, EOFError, ValueError, OSError, RuntimeError,
                struct.error, OverflowError)

_OUTSIDE = "its path leads outside the archive's folder"
_NESTED = "is an archive inside the archive (extract it and add the images themselves)"
_JUNK = object()  # verdict for clutter that is skipped without a report


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps that stop zip bombs before memory or disk fill.

    ``max_ratio`` is decompressed over compressed size for one entry; it is
    only applied once an entry has produced ``ratio_grace_bytes``, because
    small files (a blank BMP, a text file) legitimately compress very well and
    are bounded by the size caps anyway.
    """

    max_entries: int = 20_000
    max_file_bytes: int = 50_000_000
    max_total_bytes: int = 2_000_000_000
    max_ratio: float = 100.0
    ratio_grace_bytes: int = 1_000_000

    def __post_init__(self):
        for name in ("max_entries", "max_file_bytes", "max_total_bytes", "max_ratio", "ratio_grace_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (value >= 0 if name == "ratio_grace_bytes" else value > 0):
                raise TLError(f"archive limit {name}={value!r} must be a positive number")


def is_junk_name(part: str) -> bool:
    """True for one path component that operating systems leave behind (``._x``, ``Thumbs.db``, ...)."""
    return part.lower() in _JUNK_NAMES or part.startswith("._")


def safe_extract(zip_path, target, limits: ArchiveLimits = ArchiveLimits()) -> list[dict]:
    """Extract ``zip_path`` into the folder ``target``; return the refused entries.

    ``target`` must not exist yet or be empty; files are only ever written
    below it. Each refused entry is reported as ``{"name": <name in the
    archive>, "reason": <why>}``: paths leading outside ``target`` (``../``,
    absolute paths, drive letters, UNC paths, with ``\\`` read as ``/``),
    symbolic links and special files, encrypted entries, archives inside the
    archive (by name or content), over-long names, duplicates and file/folder
    clashes. Clutter such as ``__MACOSX/`` is skipped without a report.

    Raises :class:`TLError`, leaving ``target`` as it was, when the file is not
    a readable zip, uses a compression method other than stored or deflate, or
    breaks one of ``limits`` (checked on the declared sizes first, then on the
    bytes actually decompressed, stopping as soon as a cap is passed).
    """
    zip_path, target = Path(zip_path), Path(target)
    label = repr(zip_path.name)
    created = not target.exists()
    if not created and (not target.is_dir() or any(target.iterdir())):
        raise TLError(f"extraction folder {str(target)!r} must be new or empty")
    try:
        _check_directory(zip_path, label, limits)
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path) as zf:
            return _extract_all(zf, label, target.resolve(), limits)
    except BaseException as exc:
        _undo(target, created)
        if isinstance(exc, TLError):
            raise
        if isinstance(exc, zipfile.BadZipFile):
            raise TLError(f"{label} is damaged or not a zip file ({_one_line(exc)})") from None
        if isinstance(exc, _READ_ERRORS):
            raise TLError(f"{label} cannot be extracted ({_one_line(exc)})") from None
        raise


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, EOFError):  # zipfile raises it bare when an entry's data is cut short
        return "the data of an entry ends early"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.replace(". ", "; ")  # the house style is one sentence


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def _undo(target: Path, created: bool) -> None:
    if created:
        shutil.rmtree(target, ignore_errors=True)
    elif target.is_dir():
        for child in target.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _check_directory(path: Path, label: str, limits: ArchiveLimits) -> None:
    """Refuse from the end record alone, before zipfile loads the entry list into memory.

    Mirrors how zipfile finds the end record; anything unparsable is left to
    zipfile, which then reports the file as damaged.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < 22:
            return
        f.seek(size - 22)
        tail = f.read(22)
        pos, base = 0, size - 22
        if not (tail[:4] == b"PK\x05\x06" and tail[-2:] == b"\x00\x00"):
            base = max(0, size - 22 - 65535)
            f.seek(base)
            tail = f.read()
            pos = tail.rfind(b"PK\x05\x06")
            if pos < 0 or len(tail) - pos < 22:
                return
        entries, directory = struct.unpack("<HL", tail[pos + 10:pos + 16])
        locator_at = base + pos - 20
        if locator_at >= 56:
            f.seek(locator_at - 56)
            block = f.read(76)
            if block[56:60] == b"PK\x06\x07" and block[:4] == b"PK\x06\x06":
                entries64, directory64 = struct.unpack("<QQ", block[32:48])
                entries, directory = max(entries, entries64), max(directory, directory64)
    _check_count(entries, label, limits)
    if directory > limits.max_entries * _DIRECTORY_BYTES_PER_ENTRY:
        raise TLError(f"{label} has a {_size(directory)} list of entries, too large for the limit of "
                      f"{limits.max_entries} entries")


def _check_count(n: int, label: str, limits: ArchiveLimits) -> None:
    if n > limits.max_entries:
        raise TLError(f"{label} holds {n} entries, more than the limit of {limits.max_entries}")


def _verdict(info: zipfile.ZipInfo):
    """``(reason, parts)``: reason ``None`` to extract, ``_JUNK`` to skip silently, else why refused."""
    name = info.filename.replace("\\", "/")
    # "/x" and "//server/share" are absolute; "C:x" and "C:/x" name a drive on Windows
    if name.startswith("/") or _DRIVE.match(name):
        return _OUTSIDE, None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        return _OUTSIDE, None
    if any(is_junk_name(p) for p in parts):
        return _JUNK, None
    is_dir = name.endswith("/")
    if not parts:
        return (_JUNK if is_dir else "has an empty name"), None
    if any(len(p.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for p in parts):
        return f"has a name longer than {_MAX_NAME_BYTES} bytes", None
    if len("/".join(parts).encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        return f"has a path longer than {_MAX_PATH_BYTES} bytes", None
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "is a symbolic link", None
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a device or other special file", None
    if is_dir:
        return None, parts
    if info.flag_bits & 0x41:  # 0x1: encrypted, 0x40: strong encryption
        return "is encrypted (password-protected)", None
    if parts[-1].lower().endswith(_ARCHIVE_SUFFIXES):
        return _NESTED, None
    return None, parts


def _looks_like_archive(head: bytes) -> bool:
    if head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar":
        return True
    # bzip2: "BZh", a block size digit, then a block or end-of-stream marker
    return head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")


def _plan(infos, label: str, limits: ArchiveLimits):
    """Sort entries into folders to make, files to write and refusals, without touching the disk."""
    refused, folders, files = [], [], []
    taken_files: set[tuple] = set()
    taken_dirs: set[tuple] = set()
    for info in infos:
        reason, parts = _verdict(info)
        if reason is _JUNK:
            continue
        if reason is None:
            prefixes = {parts[:i] for i in range(1, len(parts))}
            if info.filename.replace("\\", "/").endswith("/"):
                if parts in taken_files or prefixes & taken_files:
                    reason = "clashes with a file of the same name"
                else:
                    taken_dirs |= prefixes | {parts}
                    folders.append(parts)
                    continue
            elif parts in taken_files:
                reason = "has the same name as an earlier entry"
            elif parts in taken_dirs or prefixes & taken_files:
                reason = "clashes with a file or folder of the same name"
            else:
                taken_files.add(parts)
                taken_dirs |= prefixes
                files.append((info, parts))
                continue
        refused.append({"name": info.filename, "reason": reason})
    for info, _ in files:
        if info.compress_type not in _SAFE_METHODS:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise TLError(f"{label} uses a compression method this app does not read ({method}) for "
                          f"{info.filename!r}; create the zip again with standard (deflate) compression")
    for info, _ in files:  # an honest header already shows a bomb: refuse before reading anything
        if _too_compressed(info.file_size, info.compress_size, limits):
            raise TLError(_bomb(label, info, limits))
    declared = sum(info.file_size for info, _ in files)
    if declared > limits.max_total_bytes:
        raise TLError(f"{label} would unpack to {_size(declared)}, more than the limit of "
                      f"{_size(limits.max_total_bytes)}")
    return refused, folders, files


def _extract_all(zf: zipfile.ZipFile, label: str, root: Path, limits: ArchiveLimits) -> list[dict]:
    infos = zf.infolist()
    _check_count(len(infos), label, limits)
    refused, folders, files = _plan(infos, label, limits)
    for parts in folders:
        root.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    total = 0
    for info, parts in files:
        dest = root.joinpath(*parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The name checks make this impossible; kept so one missed case cannot write outside.
        if not dest.parent.resolve().is_relative_to(root):
            refused.append({"name": info.filename, "reason": _OUTSIDE})
            continue
        with zf.open(info) as src:
            chunk = src.read(_CHUNK)
            if _looks_like_archive(chunk):
                refused.append({"name": info.filename, "reason": _NESTED})
                continue
            written = 0
            # "x": never follow or overwrite something already there
            with open(dest, "xb") as out:
                while chunk:
                    written += len(chunk)
                    total += len(chunk)
                    _check_stream(info, src, written, total, label, limits)
                    out.write(chunk)
                    chunk = src.read(_CHUNK)
    return refused


def _too_compressed(out_bytes: int, in_bytes: int, limits: ArchiveLimits) -> bool:
    return out_bytes > limits.ratio_grace_bytes and out_bytes > limits.max_ratio * max(in_bytes, 1)


def _bomb(label: str, info: zipfile.ZipInfo, limits: ArchiveLimits) -> str:
    return (f"{label} entry {info.filename!r} expands more than {limits.max_ratio:g} times its compressed size, "
            f"which is how zip bombs look")


def _check_stream(info: zipfile.ZipInfo, src, written: int, total: int, label: str, limits: ArchiveLimits) -> None:
    """Raise as soon as the bytes really decompressed pass a cap, before they are written."""
    if written > limits.max_file_bytes:
        raise TLError(f"{label} entry {info.filename!r} unpacks to more than {_size(limits.max_file_bytes)}, "
                      f"the limit for one file")
    # Compressed bytes consumed so far, from zipfile's private counter when it has one, so
    # a header claiming a large compressed size does not hide a bomb; else the declared size.
    left = getattr(src, "_compress_left", None)
    consumed = info.compress_size
    if isinstance(left, int) and 0 <= left <= info.compress_size:
        consumed -= left
    if _too_compressed(written, consumed, limits):
        raise TLError(_bomb(label, info, limits))
    if total > limits.max_total_bytes:
        raise TLError(f"{label} unpacks to more than {_size(limits.max_total_bytes)}, the limit for a whole archive")
