"""Save a workspace as a self-contained project folder (or ZIP), and open it again anywhere.

A project folder (format 3) holds ``project.json`` (name, creation time, tlcore version, settings
and a manifest listing every file of the workspace's ``data/`` and ``jobs/`` with its size and
SHA-256), the bytes of each distinct photo once under ``blobs/<sha256>`` (the photos of ``data/``,
of every job's snapshot ``jobs/<job>/data/`` and any image a job made: a snapshot shares its
photos with ``data/``, so storing each file at its path stored them twice), and the jobs' other
files at their paths under ``jobs/`` (runs with their models, curves and exports). Paths inside
the jobs' JSON files (the keys :mod:`tlcore.jobs.folder` lists) are stored relative to the
workspace root and resolved against the receiving workspace on open, so samples, fine-tuning
parents and export files are found again after a move or a server restart. Formats 1 and 2
(every photo at its own path) still open.

Before writing, saving measures the project (:func:`save_check`) against what opening accepts:
it refuses a project no session could open (over the session cap, or holding a photo over the
per-file cap) and warns when its ZIP would be over the dashboard's upload cap.

A project may come from anyone, so opening it obeys the rules of uploads and trusts nothing it
says: class names follow :func:`tlcore.io.names.check_class_name`, every photo (each distinct one
once) is checked by its content and its hash, a blob's name is only ever a SHA-256 from the
manifest, the session's cap is checked before anything is written, every path in a job file must
resolve inside the receiving workspace (:func:`tlcore.io.confine.confine`, or the project is
refused), links are refused, only the settings the dashboard knows are kept (checked), and no
job keeps a command line or a process id: a reopened job is a record, never a process to run.

Saving writes into a temporary folder renamed into place, so a failure never leaves a partial
project; opening checks every file against the manifest before the workspace is touched, and
gives the photos that share bytes one file (hard links), as the workspace's snapshots do.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .. import __version__
from ..io.atomic import replace_dir, staged_dir
from ..io.confine import confine, relative_to
from ..io.errors import TLError
from .experiments import run_history
from ..jobs.folder import inside_form, paths_confined, paths_relative
from ..jobs.runner import LIVE, job_status, list_jobs
from ..io.names import check_class_name
from ..io.quota import MB, disk_usage
from .workspace import Workspace

__all__ = ["PROJECT_FILE", "save_check", "save_project", "open_project", "open_project_zip", "project_zip",
           "read_project", "projects_dir", "project_path", "saved_projects", "run_history"]

PROJECT_FILE = "project.json"
# 3: each distinct photo stored once, as blobs/<sha256>. 2: paths in job files relative to the workspace root.
# 1: absolute, the workspace written ${WORKSPACE}. Formats 1 and 2 store every file at its own path.
_FORMAT, _READS = 3, (1, 2, 3)
_POOLED = 3  # the first format whose photos are blobs
_BLOBS = "blobs"
# A blob is named by a hash read from the manifest: only this shape ever becomes part of a path.
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PLACEHOLDER = "${WORKSPACE}"  # the workspace folder inside texts (messages), so they read well anywhere
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,59}$")
# Settings that belong to the person, not the project: opening a project keeps the receiver's.
_PERSONAL = ("language",)
_MAX_PROJECT_JSON = 50_000_000
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}  # decompressed with bounded output, chunk by chunk
# Photos and weights barely compress; a ZIP promising far more than this many times its size is a bomb.
_MAX_EXPANSION, _EXPANSION_GRACE = 50, 100_000_000
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# The Data page's inputs (pages/1_Data.py): values outside them would break the page, so they are not kept.
_SPLIT_RANGES, _MAX_SEED = ((1, 98), (0, 98), (0, 98)), 10**6


# Texts and paths inside JSON ------------------------------------------------------------------------

def _rewrite(value, old: tuple[str, ...], new: str):
    """``value`` with every occurrence of the prefixes ``old`` in its strings replaced by ``new``."""
    if isinstance(value, str):
        for prefix in old:
            value = value.replace(prefix, new)
        return value
    if isinstance(value, list):
        return [_rewrite(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, old, new) for k, v in value.items()}
    return value


def _roots(workspace: Workspace) -> tuple[str, ...]:
    # Longest first, so a resolved path that extends the literal one is replaced whole.
    forms = {str(workspace.root.absolute()), str(workspace.root.resolve())}
    return tuple(sorted(forms, key=len, reverse=True))


def _as_record(value):
    """A job file's top level as a record: no command line to run again, no process (pid 0 is never alive,
    and job.json and result.json must agree on it, so the job reads as ended)."""
    if isinstance(value, dict):
        value.pop("argv", None)
        if "pid" in value:
            value["pid"] = 0
    return value


def _saved_json(data: bytes, suffix: str, workspace: Workspace) -> bytes:
    """A job file's bytes as a project holds them: paths relative to the workspace, texts with the placeholder."""
    root = workspace.root

    def convert(value):
        return _rewrite(paths_relative(_as_record(value), root), _roots(workspace), _PLACEHOLDER)

    if suffix == ".jsonl":
        lines = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                lines.append(json.dumps(convert(json.loads(line))))
            except ValueError:
                continue  # a half-written last line is not an event
        return "".join(f"{line}\n" for line in lines).encode("utf-8")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return data  # not JSON after all: kept as it is (opening refuses it)
    return json.dumps(convert(value), indent=1).encode("utf-8")


def _opened_json(data: bytes, rel: PurePosixPath, root: Path) -> bytes:
    """A job file's bytes as the receiving workspace keeps them: every path confined inside ``root`` (absolute),
    or :class:`TLError`; texts with the placeholder get the workspace folder."""

    def convert(value):
        return paths_confined(_as_record(_rewrite(value, (_PLACEHOLDER,), str(root))), root)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TLError(f"the project's file {str(rel)!r} is not UTF-8 JSON, so the project is not opened") from None
    if rel.suffix == ".jsonl":
        lines = []
        for line in text.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue  # a half-written last line is not an event
            lines.append(json.dumps(convert(value)))
        return "".join(f"{line}\n" for line in lines).encode("utf-8")
    try:
        value = json.loads(text)
    except ValueError:
        raise TLError(f"the project's file {str(rel)!r} is not valid JSON, so the project is not opened") from None
    return json.dumps(convert(value), indent=1).encode("utf-8")


def _is_json(path: PurePosixPath) -> bool:
    return path.suffix in (".json", ".jsonl")


def _is_photo(rel: PurePosixPath) -> bool:
    """Photos of the project: its data, the jobs' snapshots (``jobs/<job>/data/``) and any image file."""
    return rel.parts[0] == "data" or (len(rel.parts) > 3 and rel.parts[2] == "data") \
        or rel.suffix.lower() in _IMAGE_SUFFIXES


# Saving ------------------------------------------------------------------------------------------------

def _digest(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _copy_with_digest(src: Path, dst: Path) -> dict:
    """Copy ``src`` to ``dst``, hashing the bytes as they are written: ``{"sha256", "bytes", "inode"}``, where
    ``inode`` is (device, inode) of the file the bytes came from (the workspace replaces a photo by a new file,
    never writes one in place, so an inode always holds the same bytes)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    h, n = hashlib.sha256(), 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        st = os.fstat(f.fileno())
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": n, "inode": (st.st_dev, st.st_ino)}


def _check_idle(workspace: Workspace, doing: str) -> None:
    for job in list_jobs(workspace.jobs_dir):
        if job_status(job)["status"] in LIVE:
            raise TLError(f"job {job.name!r} is still running; wait for it to finish or stop it before {doing}")


def _check_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / PROJECT_FILE).is_file())):
        raise TLError(f"{str(dest)!r} already exists and is not a Transfer Lab project; choose another folder")


def _files(paths) -> list[Path]:
    # A link is never followed into a project: whatever it points to is not the session's to hand out.
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def _job_files(workspace: Workspace) -> list[Path]:
    return [src for job in sorted(list_jobs(workspace.jobs_dir)) for src in _files(sorted(job.rglob("*")))]


class _Plan(NamedTuple):
    """What saving writes, gathered before a byte is written, so that measuring and saving agree."""

    photos: dict[str, list[Path]]  # the photos of data/, by class
    jobs: list[tuple[PurePosixPath, Path, bytes | None]]  # (place, file, the bytes a JSON file is saved as)
    settings: dict
    runs: int


def _saved_settings(workspace: Workspace) -> dict:
    settings = {k: v for k, v in workspace.settings().items() if k not in _PERSONAL}
    if isinstance(settings.get("current_job"), str):
        settings["current_job"] = relative_to(workspace.root, settings["current_job"])
    return _rewrite(settings, _roots(workspace), _PLACEHOLDER)


def _plan(workspace: Workspace) -> _Plan:
    photos = {cls: _files(workspace.images(cls)) for cls in workspace.classes()}
    jobs = []
    for src in _job_files(workspace):
        rel = PurePosixPath("jobs", *src.relative_to(workspace.jobs_dir).parts)
        # Opening takes a file of a snapshot as a photo before anything else, so saving does too.
        saved = _saved_json(src.read_bytes(), rel.suffix, workspace) if _is_json(rel) and not _is_photo(rel) else None
        jobs.append((rel, src, saved))
    return _Plan(photos, jobs, _saved_settings(workspace), len(run_history(workspace.jobs_dir)))


def _manifest(name: str, plan: _Plan, data: dict, files: list[dict]) -> bytes:
    project = {
        "format": _FORMAT, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tlcore_version": __version__, "settings": plan.settings, "data": data, "files": files, "runs": plan.runs,
    }
    return json.dumps(project, indent=1).encode("utf-8")


def _distinct_photos(paths: list[Path]) -> dict[Path, int]:
    """One path per distinct photo among ``paths``, with its size, as saving stores them: hard links are one
    file (found by inode, without reading), and files of one size are told apart by their hash."""
    by_inode: dict[tuple[int, int], tuple[Path, int]] = {}
    for path in paths:
        st = path.stat()
        by_inode.setdefault((st.st_dev, st.st_ino), (path, st.st_size))
    by_size: dict[int, list[Path]] = {}
    for path, size in by_inode.values():
        by_size.setdefault(size, []).append(path)
    distinct = {}
    for size, group in by_size.items():
        if len(group) > 1:
            group = list({_digest(path)[0]: path for path in reversed(group)}.values())
        distinct.update((path, size) for path in group)
    return distinct


def _zip_bound(top: str, stored: list[tuple[str, int]]) -> int:
    """At most the size of :func:`project_zip`'s ZIP of the files ``(name, bytes)`` under the folder ``top``: the
    bytes themselves (photos and weights barely compress, and deflate's worst case adds well under 1/1000), the
    two headers of each entry with its name twice and room for ZIP64 fields, and the end record."""
    total = 22
    for rel, size in stored:
        name = len(f"{top}/{rel}".encode("utf-8"))
        total += size + size // 1000 + 64 + 30 + 46 + 2 * name + 40
    return total


def _problem(code: str, message: str, size: int, cap_mb: float, name: str = "") -> dict:
    return {"code": code, "message": message, "mb": size / MB, "cap_mb": cap_mb, "name": name}


def _check(workspace: Workspace, plan: _Plan, name: str, top: str) -> dict:
    """:func:`save_check` on a gathered plan (``top``: the project folder's name, the top folder of its ZIP)."""
    photos = [(PurePosixPath("data", cls, p.name), p) for cls, paths in plan.photos.items() for p in paths]
    photos += [(rel, src) for rel, src, _ in plan.jobs if _is_photo(rel)]
    sizes = {src: src.stat().st_size for _, src in photos}
    distinct = _distinct_photos([src for _, src in photos])
    others = [(rel, src.stat().st_size if saved is None else len(saved))
              for rel, src, saved in plan.jobs if not _is_photo(rel)]
    # The manifest's size is known before the hashes: a SHA-256 always takes 64 characters.
    unknown = "0" * 64
    data = {cls: [{"file": p.name, "sha256": unknown, "bytes": sizes[p]} for p in paths]
            for cls, paths in plan.photos.items()}
    other_size = dict(others)
    files = [{"path": str(rel), "sha256": unknown, "bytes": sizes[src] if _is_photo(rel) else other_size[rel]}
             for rel, src, _ in plan.jobs]
    stored = ([(f"{_BLOBS}/{unknown}", size) for size in distinct.values()] + [(str(rel), size) for rel, size in others]
              + [(PROJECT_FILE, len(_manifest(name, plan, data, files)))])
    opened = sum(distinct.values()) + sum(size for _, size in others)  # what opening writes, links once
    zip_bytes = _zip_bound(top, stored)
    session_mb, upload_mb = workspace.session_cap_mb(), workspace.max_file_mb
    refusal = None
    too_big = next(((rel, sizes[src]) for rel, src in photos if sizes[src] > upload_mb * MB), None)
    if opened > session_mb * MB:
        refusal = _problem("session", f"saving the project {name!r}: it would take {opened / MB:.1f} MB once opened, "
                                      f"over the limit of {session_mb:g} MB per session, so no session could open "
                                      "it; delete some runs or photos first", opened, session_mb)
    elif too_big:
        rel, size = too_big
        refusal = _problem("photo", f"saving the project {name!r}: its photo {str(rel)!r} takes {size / MB:.1f} MB, "
                                    f"over the limit of {upload_mb:g} MB per file, so no session could open it; "
                                    "remove that photo first", size, upload_mb, str(rel))
    warnings = []
    if zip_bytes > upload_mb * MB:
        warnings.append(_problem(
            "upload", f"as a ZIP the project {name!r} would take up to {zip_bytes / MB:.1f} MB, over the limit of "
                      f"{upload_mb:g} MB per upload, so it would not open by uploading it to the dashboard, only "
                      "from this session's saved projects or with python -m tlcore project open", zip_bytes, upload_mb))
    return {"bytes": sum(size for _, size in stored), "zip_bytes": zip_bytes, "open_bytes": opened,
            "photos": len(distinct), "photo_bytes": sum(distinct.values()), "session_cap_mb": session_mb,
            "upload_cap_mb": upload_mb, "refusal": refusal, "warnings": warnings}


def save_check(workspace: Workspace, dest: str | Path | None = None, name: str | None = None) -> dict:
    """What saving ``workspace`` (to ``dest``, as ``name``) would write, measured before anything is, against what
    opening accepts: the one home of that decision, for the Runs page and the CLI alike.

    Returns ``{"bytes", "zip_bytes", "open_bytes", "photos", "photo_bytes", "session_cap_mb", "upload_cap_mb",
    "refusal", "warnings"}``: the project folder's bytes, at most its ZIP's, what opening it writes into a
    session (each distinct photo once), the distinct photos and their bytes, and the caps opening obeys (the
    session cap, ``$TLCORE_MAX_SESSION_MB``, and the per-file cap, the dashboard's ``server.maxUploadSize``,
    also the largest ZIP it uploads). ``refusal`` (``None`` or ``{"code", "message", "mb", "cap_mb", "name"}``)
    says why no session could open the project, which :func:`save_project` then refuses: ``"session"`` when
    it is over the session cap, ``"photo"`` when a photo (``name``) is over the per-file cap. ``warnings``
    (same keys) holds ``"upload"`` when the ZIP would be over the upload cap: the project still opens from
    the session's saved projects or the CLI, but not as an upload.
    """
    dest_name = Path(dest).name if dest is not None else None
    name = (name or dest_name or "project").strip() or "project"
    try:
        return _check(workspace, _plan(workspace), name, dest_name or name)
    except OSError as exc:
        raise TLError(f"cannot read the workspace to measure the project ({exc.strerror or exc})") from None


def _check_save_room(workspace: Workspace, dest: Path, size: int, name: str) -> None:
    """A project saved inside the workspace (its ``projects/``) is the session's too: it must fit its cap."""
    root = workspace.root.resolve()
    target = dest.resolve()
    if target != root and root not in target.parents:
        return  # elsewhere (the CLI): not this session's disk
    workspace.check_room(size, f"saving the project {name!r}", freed=disk_usage(dest) if dest.is_dir() else 0)


def _store_photo(src: Path, folder: Path, stored: dict) -> dict:
    """``{"sha256", "bytes"}`` of the photo ``src``, kept in the project ``folder`` once as ``blobs/<sha256>``
    whatever number of paths share its bytes. ``stored`` maps the inodes already kept to their entry, so the
    hard links of a job's snapshot are not even read again."""
    st = src.stat()
    known = stored.get((st.st_dev, st.st_ino))
    if known is not None:
        return known
    incoming = folder / _BLOBS / ".incoming"
    copied = _copy_with_digest(src, incoming)
    entry = {"sha256": copied["sha256"], "bytes": copied["bytes"]}
    blob = folder / _BLOBS / entry["sha256"]
    if blob.exists():
        incoming.unlink()  # the same bytes in another file (a copy, not a link): still stored once
    else:
        incoming.rename(blob)
    stored[copied["inode"]] = entry
    return entry


def save_project(workspace: Workspace, dest: str | Path, name: str | None = None) -> Path:
    """Write ``workspace`` (photos, settings, finished jobs with runs and exports) to the project folder ``dest``.

    ``name`` defaults to the folder's name. Each distinct photo is stored once (``blobs/<sha256>``).
    An existing project at ``dest`` is replaced; any other existing non-empty folder is refused, and
    so is a project no session could open (:func:`save_check`, checked before anything is written)
    and a project inside the workspace that would take the session over its cap. Refused while one
    of the workspace's jobs is running. The folder appears complete or not at all. Returns ``dest``.
    """
    dest = Path(dest).absolute()
    name = (name or dest.name).strip() or dest.name
    _check_idle(workspace, "saving the project")
    _check_dest(dest)
    try:
        plan = _plan(workspace)
        check = _check(workspace, plan, name, dest.name)
    except OSError as exc:
        raise TLError(f"cannot read the workspace to save it ({exc.strerror or exc})") from None
    if check["refusal"]:
        raise TLError(check["refusal"]["message"])
    _check_save_room(workspace, dest, check["bytes"], name)
    try:
        with staged_dir(dest) as tmp:
            stored: dict = {}
            data = {cls: [{"file": p.name, **_store_photo(p, tmp, stored)} for p in paths]
                    for cls, paths in plan.photos.items()}
            files = []
            for rel, src, saved in plan.jobs:
                target = tmp.joinpath(*rel.parts)
                if _is_photo(rel):
                    entry = _store_photo(src, tmp, stored)
                elif saved is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(saved)
                    entry = {"sha256": hashlib.sha256(saved).hexdigest(), "bytes": len(saved)}
                else:
                    copied = _copy_with_digest(src, target)
                    entry = {"sha256": copied["sha256"], "bytes": copied["bytes"]}
                files.append({"path": str(rel), **entry})
            (tmp / PROJECT_FILE).write_bytes(_manifest(name, plan, data, files))
    except OSError as exc:
        raise TLError(f"cannot write the project to {str(dest)!r} ({exc.strerror or exc})") from None
    workspace.forget_usage()
    return dest


def project_zip(project_dir: str | Path) -> bytes:
    """The project folder as ZIP bytes (deflated, one top folder named after it), for a download."""
    project_dir = Path(project_dir)
    read_project(project_dir)  # a folder that is not a project is said now, not after zipping
    with tempfile.TemporaryFile() as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in _files(sorted(project_dir.rglob("*"))):
                zf.write(path, str(PurePosixPath(project_dir.name, *path.relative_to(project_dir).parts)))
        f.seek(0)
        return f.read()


# Opening --------------------------------------------------------------------------------------------------

def _safe_rel(text, what: str) -> PurePosixPath:
    rel = PurePosixPath(str(text))
    if (not str(text) or rel.is_absolute() or "\\" in str(text)
            or any(part in ("", ".", "..") or part.startswith(".") for part in rel.parts)):
        raise TLError(f"the project lists {what} {str(text)!r}, which is not allowed inside a project")
    return rel


def _class_name(cls: str) -> str:
    """The rule of "Add class" for a project's class; the name must be exactly what it is stored as."""
    if check_class_name(cls) != cls:
        raise TLError(f"class name {cls!r} is not allowed: it starts or ends with a space")
    return cls


def _entries(project: dict) -> list[tuple[PurePosixPath, str, int]]:
    """Every (relative path, sha256, bytes) the manifest promises, paths checked to stay inside."""
    entries = []
    try:
        for cls, items in project["data"].items():
            _safe_rel(_class_name(cls), "the class")
            for item in items:
                entries.append((_safe_rel(f"data/{cls}/{item['file']}", "the photo"), str(item["sha256"]),
                                int(item["bytes"])))
        for item in project["files"]:
            rel = _safe_rel(item["path"], "the file")
            if rel.parts[0] != "jobs" or len(rel.parts) < 3:
                raise TLError(f"the project lists the file {item['path']!r} outside its jobs folder")
            entries.append((rel, str(item["sha256"]), int(item["bytes"])))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TLError(f"the project's {PROJECT_FILE} is damaged ({type(exc).__name__}: {exc})") from None
    for rel, sha, size in entries:
        if size < 0:
            raise TLError(f"the project's {PROJECT_FILE} is damaged (the file {str(rel)!r} has {size} bytes)")
        if not _SHA256.match(sha):
            # From format 3 a photo's hash names its blob: nothing else may become part of a path.
            raise TLError(f"the project's {PROJECT_FILE} is damaged (the file {str(rel)!r} has the checksum "
                          f"{sha[:80]!r}, which is not a SHA-256)")
    return entries


def _stored_at(rel: PurePosixPath, sha: str, pooled: bool) -> PurePosixPath:
    """Where the bytes of the listed file ``rel`` are in the project: a photo's in its blob from format 3 on."""
    return PurePosixPath(_BLOBS, sha) if pooled and _is_photo(rel) else rel


def _label(rel: PurePosixPath, where: PurePosixPath) -> str:
    return repr(str(rel)) if where == rel else f"{str(rel)!r} (stored as {str(where)!r})"


def _opened_bytes(entries: list[tuple[PurePosixPath, str, int]]) -> int:
    """What opening writes: photos with the same bytes are one file (links), every other file its own."""
    photos = {(sha, size) for rel, sha, size in entries if _is_photo(rel)}
    return sum(size for _, size in photos) + sum(size for rel, _, size in entries if not _is_photo(rel))


def _read_bytes(entries: list[tuple[PurePosixPath, str, int]], pooled: bool) -> int:
    """What opening reads from the project: each blob once from format 3 on, each listed file before."""
    return _opened_bytes(entries) if pooled else sum(size for _, _, size in entries)


class _Folder:
    """Reads a project's files from a folder: regular files inside it only, never through a link."""

    def __init__(self, root: Path):
        self.root = root

    def check_total(self, total: int) -> None:
        pass  # files already on disk take no new room until copied, and are read no further than promised

    def _path(self, rel: PurePosixPath) -> Path:
        path = self.root
        for part in rel.parts:
            path = path / part
            if path.is_symlink():
                raise TLError(f"the project's file {str(rel)!r} is a symbolic link, which a project may not hold; "
                              "it is not opened")
        base = self.root.resolve()
        if base not in path.resolve().parents:
            raise TLError(f"the project's file {str(rel)!r} is outside the project folder; it is not opened")
        return path

    def read_project(self) -> bytes:
        try:
            with self.open(PurePosixPath(PROJECT_FILE)) as f:
                return f.read(_MAX_PROJECT_JSON + 1)
        except FileNotFoundError:
            raise TLError(f"{str(self.root)!r} is not a Transfer Lab project (it has no {PROJECT_FILE})") from None

    def open(self, rel: PurePosixPath):
        # O_NOFOLLOW: a link put in place after the check above is not followed either.
        fd = os.open(self._path(rel), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb")


class _Zip:
    """Reads a project's files from a ZIP, only the entries the manifest names, never extracting the rest."""

    def __init__(self, zf: zipfile.ZipFile, label: str, size: int):
        self.zf, self.label, self.size = zf, label, size
        names = [n for n in zf.namelist() if PurePosixPath(n).name == PROJECT_FILE]
        top = min(names, key=lambda n: n.count("/"), default=None)
        if top is None:
            raise TLError(f"{label} is not a Transfer Lab project (it has no {PROJECT_FILE})")
        self.prefix = top[: -len(PROJECT_FILE)]

    def check_total(self, total: int) -> None:
        if total > _MAX_EXPANSION * self.size + _EXPANSION_GRACE:
            raise TLError(f"{self.label} promises {total / 1e6:.0f} MB of files from {self.size / 1e6:.1f} MB, "
                          "more than a project can hold; it is not opened")

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = self.zf.getinfo(name)  # KeyError when absent
        if info.compress_type not in _ZIP_METHODS:
            raise TLError(f"{self.label} uses a compression method other than stored or deflate for {name!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise TLError(f"{self.label} holds {name[len(self.prefix):]!r} as a symbolic link, which a project may "
                          "not hold; it is not opened")
        return info

    def read_project(self) -> bytes:
        info = self._info(self.prefix + PROJECT_FILE)
        with self.zf.open(info) as f:
            return f.read(_MAX_PROJECT_JSON + 1)

    def open(self, rel: PurePosixPath):
        try:
            info = self._info(self.prefix + str(rel))
        except KeyError:
            raise FileNotFoundError(str(rel)) from None
        return self.zf.open(info)


def _load_project(source) -> dict:
    data = source.read_project()
    if len(data) > _MAX_PROJECT_JSON:
        raise TLError(f"the {PROJECT_FILE} is too large to be a project file")
    try:
        project = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TLError(f"the project's {PROJECT_FILE} is damaged ({exc})") from None
    version = project.get("format") if isinstance(project, dict) else None
    if type(version) is not int or version not in _READS:
        readable = ", ".join(map(str, _READS[:-1])) + f" and {_READS[-1]}"
        raise TLError(f"the project's {PROJECT_FILE} has format {version!r}; this version of Transfer Lab reads "
                      f"formats {readable}")
    return project


def _read_checked(source, rel: PurePosixPath, sha: str, size: int, sink=None, where: PurePosixPath | None = None
                  ) -> bytes:
    """The listed file ``rel``'s bytes (stored at ``where``, default ``rel``), at most ``size`` + 1 read, refused
    unless their size and SHA-256 match the manifest.

    With ``sink`` (a writable file) the bytes go there chunk by chunk and b"" is returned.
    """
    where = where or rel
    h, n, chunks = hashlib.sha256(), 0, []
    try:
        with source.open(where) as src:
            while n <= size and (chunk := src.read(min(_CHUNK, size + 1 - n))):
                h.update(chunk)
                n += len(chunk)
                if sink is None:
                    chunks.append(chunk)
                else:
                    sink.write(chunk)
    except FileNotFoundError:
        raise TLError(f"the project is incomplete: {_label(rel, where)} is missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, IsADirectoryError) as exc:
        raise TLError(f"the project's file {_label(rel, where)} cannot be read ({exc})") from None
    if n != size or h.hexdigest() != sha:
        raise TLError(f"the project's file {_label(rel, where)} has changed since it was saved (its size or "
                      "checksum differs), so the project is not opened")
    return b"".join(chunks)


def read_project(src: str | Path) -> dict:
    """The ``project.json`` of the project folder or ZIP ``src`` (name, created, settings, manifest)."""
    src = Path(src)
    if src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            return _load_project(_Zip(zf, repr(src.name), src.stat().st_size))
    return _load_project(_Folder(src))


def _replaced_bytes(workspace: Workspace) -> int:
    """What the session's photos and jobs hold on disk (freed by opening a project, which replaces them).

    Everything but ``data/`` and ``jobs/`` stays; a file linked from both sides stays too, so it is not freed.
    """
    kept = 0
    for child in workspace.root.iterdir():
        if child.name in ("data", "jobs"):
            continue
        kept += disk_usage(child) if child.is_dir() and not child.is_symlink() else child.lstat().st_size
    return max(0, workspace.used_bytes() - kept)


def _check_rules(workspace: Workspace, entries: list[tuple[PurePosixPath, str, int]], freed: int) -> None:
    """The rules of uploads, on what the manifest promises, before a byte is written: per-file cap of each
    photo and the session's cap (``freed``: the photos and jobs being replaced; photos sharing their bytes are
    one file, as opening links them)."""
    for rel, _, size in entries:
        if _is_photo(rel):
            workspace.check_file_size(f"the project's photo {str(rel)!r}", size)
    workspace.check_room(_opened_bytes(entries), "opening the project", freed=freed)


def _known_settings(settings, root: Path, jobs: Path) -> dict:
    """The settings of a project the dashboard knows, each checked; anything else is dropped.

    ``current_job`` must name one of the project's own jobs (``jobs`` is where they are staged); it is
    stored as that job's folder in the receiving workspace, and a value leading elsewhere refuses the project.
    """
    if not isinstance(settings, dict):
        return {}
    kept = {}
    backbone = settings.get("backbone")
    if isinstance(backbone, str):
        from ..backbones.registry import list_backbones  # lazy: it imports Keras

        if backbone in list_backbones():
            kept["backbone"] = backbone
    split = settings.get("split")
    if (isinstance(split, list) and len(split) == 3 and all(type(v) is int for v in split) and sum(split) == 100
            and all(low <= v <= high for v, (low, high) in zip(split, _SPLIT_RANGES))):
        kept["split"] = split
    seed = settings.get("seed")
    if type(seed) is int and 0 <= seed <= _MAX_SEED:
        kept["seed"] = seed
    job = settings.get("current_job")
    if job is not None:
        value = _rewrite(job, (_PLACEHOLDER,), str(root))
        try:
            path = confine(root, value, "current job")
        except TLError:
            raise TLError(f"the project's current job {job!r} is outside its workspace; it cannot be opened") from None
        if path.parent != (root / "jobs").resolve() or not (jobs / path.name / "job.json").is_file():
            raise TLError(f"the project's current job {job!r} is not one of its jobs; it cannot be opened")
        kept["current_job"] = str(inside_form(root, path))
    return kept


def _open(source, workspace: Workspace) -> dict:
    project = _load_project(source)
    entries = _entries(project)
    pooled = project["format"] >= _POOLED
    source.check_total(_read_bytes(entries, pooled))
    _check_idle(workspace, "opening a project here")
    freed = _replaced_bytes(workspace)
    _check_rules(workspace, entries, freed)
    used = workspace.used_bytes()  # as the check measured it, before the staging folder grows inside the workspace
    copied = 0  # bytes of shared photos copied because a link was refused, which the check above did not count
    root = workspace.root.absolute()
    # Staged inside the workspace, so the final moves are renames on one file system (links survive them).
    stage = Path(tempfile.mkdtemp(prefix=".open-", dir=root))
    try:
        (stage / "data").mkdir()
        (stage / "jobs").mkdir()
        photos: dict[tuple[str, int], Path] = {}  # (sha256, bytes) -> the first file staged with them
        for rel, sha, size in entries:
            target = stage.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            if _is_photo(rel):
                first = photos.get((sha, size))
                if first is None or not pooled:  # a blob is read once; a file of formats 1 and 2 each time
                    data = _read_checked(source, rel, sha, size, where=_stored_at(rel, sha, pooled))
                if first is not None:
                    # The same bytes, checked already: one file, as a job's snapshot shares the workspace's photos.
                    try:
                        os.link(first, target)
                    except OSError:
                        # A link refused (the file system's limit of links, or none at all): a copy takes room the
                        # check counted once, so it is counted now; a project naming one blob under many paths
                        # cannot take the session over its cap that way.
                        copied += size
                        staged = max(0, workspace.used_bytes() - used)  # counted in the project's bytes already
                        workspace.check_room(_opened_bytes(entries) + copied, "opening the project",
                                             freed=freed + staged)
                        shutil.copyfile(first, target)
                    continue
                workspace.check_image(f"the project's photo {str(rel)!r}", data, room=False)
                target.write_bytes(data)
                photos[(sha, size)] = target
            elif _is_json(rel) and rel.parts[0] == "jobs":
                target.write_bytes(_opened_json(_read_checked(source, rel, sha, size), rel, root))
            else:
                with open(target, "wb") as sink:
                    _read_checked(source, rel, sha, size, sink)
        settings = _known_settings(project.get("settings"), root, stage / "jobs")
        replace_dir(stage / "data", workspace.data_dir)
        replace_dir(stage / "jobs", workspace.jobs_dir)
    except OSError as exc:
        raise TLError(f"cannot open the project into {str(root)!r} ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        workspace.forget_usage()
    # The receiver's current job was one of the jobs just replaced.
    workspace.update_settings(**{"current_job": None, **settings})
    return {"name": project.get("name"), "created": project.get("created"),
            "photos": sum(1 for rel, _, _ in entries if rel.parts[0] == "data"),
            "runs": len(run_history(workspace.jobs_dir))}


def open_project(src: str | Path, workspace: Workspace) -> dict:
    """Load the project folder (or ZIP file) ``src`` into ``workspace``, replacing its photos and jobs.

    Before anything is written: class names, the per-file and session caps, and (while each file
    is copied into a staging folder) its size and SHA-256 against the manifest, each photo by its
    content, and every path of its job files, which must resolve inside ``workspace``. Photos with
    the same bytes (a job's snapshot and ``data/``) become one file, linked. Formats 1 and 2 (each
    file at its path) and 3 (photos as ``blobs/<sha256>``) open alike. The workspace is only
    changed once all of them pass. Raises :class:`TLError` naming the first
    bad file or value. Refused while a job of the workspace is running. Returns
    ``{"name", "created", "photos", "runs"}``.
    """
    src = Path(src)
    if src.is_file():
        try:
            with zipfile.ZipFile(src) as zf:
                return _open(_Zip(zf, repr(src.name), src.stat().st_size), workspace)
        except zipfile.BadZipFile as exc:
            raise TLError(f"{src.name!r} is damaged or not a zip file ({exc})") from None
    if not src.is_dir():
        raise TLError(f"no project at {str(src)!r}")
    return _open(_Folder(src), workspace)


def open_project_zip(data: bytes, workspace: Workspace) -> dict:
    """:func:`open_project` for the bytes of an uploaded project ZIP."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "project.zip"
        path.write_bytes(data)
        try:
            return open_project(path, workspace)
        except TLError as exc:
            # the temporary file's name means nothing to the person who uploaded it
            raise TLError(str(exc).replace(repr(path.name), "the ZIP")) from None


# Saved projects of a workspace ------------------------------------------------------------------------------

def projects_dir(workspace: Workspace) -> Path:
    """Where the dashboard keeps a session's saved projects (inside its workspace, so private to it)."""
    return workspace.root / "projects"


def project_path(workspace: Workspace, name: str) -> Path:
    """The folder of the saved project ``name`` of ``workspace``; the name is checked to be a plain folder name."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise TLError(f"project name {name!r} is not allowed; use 1-60 letters, digits, spaces, dots, dashes or "
                      "underscores, starting with a letter or digit")
    return projects_dir(workspace) / name


def saved_projects(workspace: Workspace) -> list[dict]:
    """``{"name", "path", "created", "runs"}`` of every project saved in ``workspace``, newest first."""
    found = []
    folder = projects_dir(workspace)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or path.is_symlink() or not (path / PROJECT_FILE).is_file():
            continue
        try:
            project = read_project(path)
        except TLError:
            continue
        found.append({"name": project.get("name", path.name), "path": path, "created": project.get("created", ""),
                      "runs": project.get("runs")})
    return sorted(found, key=lambda p: str(p["created"]), reverse=True)
