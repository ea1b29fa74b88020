"""Save a workspace as a self-contained project folder (or ZIP), and open it again anywhere.

A project folder holds ``project.json`` (name, creation time, tlcore version, settings and a
manifest with the size and SHA-256 of every file), the photos under ``data/<class>/`` and the
jobs under ``jobs/`` (runs with their models, curves and exports). Paths inside the jobs' JSON
files (the keys :mod:`tlcore.jobs.folder` lists) are stored relative to the workspace root and
resolved against the receiving workspace on open, so samples, fine-tuning parents and export
files are found again after a move or a server restart.

A project may come from anyone, so opening it obeys the rules of uploads and trusts nothing it
says: class names follow :func:`tlcore.io.names.check_class_name`, every photo is checked by its
content, the session's cap is checked before anything is written, every path in a job file must
resolve inside the receiving workspace (:func:`tlcore.io.confine.confine`, or the project is
refused), links are refused, only the settings the dashboard knows are kept (checked), and no
job keeps a command line or a process id: a reopened job is a record, never a process to run.

Saving writes into a temporary folder renamed into place, so a failure never leaves a partial
project; opening checks every file against the manifest before the workspace is touched.
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

from .. import __version__
from ..io.atomic import replace_dir, staged_dir
from ..io.confine import confine, relative_to
from ..io.errors import TLError
from .experiments import run_history
from ..jobs.folder import inside_form, paths_confined, paths_relative
from ..jobs.runner import LIVE, job_status, list_jobs
from ..io.names import check_class_name
from ..io.quota import disk_usage
from .workspace import Workspace

__all__ = ["PROJECT_FILE", "save_project", "open_project", "open_project_zip", "project_zip", "read_project",
           "projects_dir", "project_path", "saved_projects", "run_history"]

PROJECT_FILE = "project.json"
# 2: paths in job files relative to the workspace root. 1: absolute, the workspace written ${WORKSPACE}.
_FORMAT, _READS = 2, (1, 2)
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
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    sha, size = _digest(dst)
    return {"sha256": sha, "bytes": size}


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


def _check_save_room(workspace: Workspace, dest: Path, photos: list[Path], jobs: list[Path], name: str) -> None:
    """A project saved inside the workspace (its ``projects/``) is the session's too: it must fit its cap."""
    root = workspace.root.resolve()
    target = dest.resolve()
    if target != root and root not in target.parents:
        return  # elsewhere (the CLI): not this session's disk
    size = sum(p.stat().st_size for p in photos + jobs)  # copies, not links: each file counts
    workspace.check_room(size, f"saving the project {name!r}", freed=disk_usage(dest) if dest.is_dir() else 0)


def save_project(workspace: Workspace, dest: str | Path, name: str | None = None) -> Path:
    """Write ``workspace`` (photos, settings, finished jobs with runs and exports) to the project folder ``dest``.

    ``name`` defaults to the folder's name. An existing project at ``dest`` is replaced; any other
    existing non-empty folder is refused, and so is a project inside the workspace that would take
    the session over its cap. Refused while one of the workspace's jobs is running. The folder
    appears complete or not at all. Returns ``dest``.
    """
    dest = Path(dest).absolute()
    name = (name or dest.name).strip() or dest.name
    _check_idle(workspace, "saving the project")
    _check_dest(dest)
    photos = {cls: _files(workspace.images(cls)) for cls in workspace.classes()}
    jobs = _job_files(workspace)
    _check_save_room(workspace, dest, [p for paths in photos.values() for p in paths], jobs, name)
    try:
        with staged_dir(dest) as tmp:
            data = {cls: [{"file": p.name, **_copy_with_digest(p, tmp / "data" / cls / p.name)} for p in paths]
                    for cls, paths in photos.items()}
            files = []
            for src in jobs:
                rel = PurePosixPath("jobs", *src.relative_to(workspace.jobs_dir).parts)
                target = tmp.joinpath(*rel.parts)
                if _is_json(rel):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(_saved_json(src.read_bytes(), rel.suffix, workspace))
                    sha, size = _digest(target)
                    entry = {"sha256": sha, "bytes": size}
                else:
                    entry = _copy_with_digest(src, target)
                files.append({"path": str(rel), **entry})
            settings = {k: v for k, v in workspace.settings().items() if k not in _PERSONAL}
            if isinstance(settings.get("current_job"), str):
                settings["current_job"] = relative_to(workspace.root, settings["current_job"])
            project = {
                "format": _FORMAT, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tlcore_version": __version__, "settings": _rewrite(settings, _roots(workspace), _PLACEHOLDER),
                "data": data, "files": files, "runs": len(run_history(workspace.jobs_dir)),
            }
            (tmp / PROJECT_FILE).write_text(json.dumps(project, indent=1), encoding="utf-8")
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
    for rel, _, size in entries:
        if size < 0:
            raise TLError(f"the project's {PROJECT_FILE} is damaged (the file {str(rel)!r} has {size} bytes)")
    return entries


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
    if not isinstance(project, dict) or project.get("format") not in _READS:
        version = project.get("format") if isinstance(project, dict) else None
        raise TLError(f"the project's {PROJECT_FILE} has format {version!r}; this version of Transfer Lab reads "
                      f"formats {' and '.join(map(str, _READS))}")
    return project


def _read_checked(source, rel: PurePosixPath, sha: str, size: int, sink=None) -> bytes:
    """One file's bytes, at most ``size`` + 1 read, refused unless its size and SHA-256 match the manifest.

    With ``sink`` (a writable file) the bytes go there chunk by chunk and b"" is returned.
    """
    h, n, chunks = hashlib.sha256(), 0, []
    try:
        with source.open(rel) as src:
            while n <= size and (chunk := src.read(min(_CHUNK, size + 1 - n))):
                h.update(chunk)
                n += len(chunk)
                if sink is None:
                    chunks.append(chunk)
                else:
                    sink.write(chunk)
    except FileNotFoundError:
        raise TLError(f"the project is incomplete: {str(rel)!r} is missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, IsADirectoryError) as exc:
        raise TLError(f"the project's file {str(rel)!r} cannot be read ({exc})") from None
    if n != size or h.hexdigest() != sha:
        raise TLError(f"the project's file {str(rel)!r} has changed since it was saved (its size or checksum "
                      "differs), so the project is not opened")
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


def _check_rules(workspace: Workspace, entries: list[tuple[PurePosixPath, str, int]]) -> None:
    """The rules of uploads, on what the manifest promises, before a byte is written: per-file cap of each
    photo and the session's cap (the photos and jobs being replaced are freed)."""
    for rel, _, size in entries:
        if _is_photo(rel):
            workspace.check_file_size(f"the project's photo {str(rel)!r}", size)
    workspace.check_room(sum(size for _, _, size in entries), "opening the project",
                         freed=_replaced_bytes(workspace))


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
    source.check_total(sum(size for _, _, size in entries))
    _check_idle(workspace, "opening a project here")
    _check_rules(workspace, entries)
    root = workspace.root.absolute()
    # Staged inside the workspace, so the final moves are renames on one file system.
    stage = Path(tempfile.mkdtemp(prefix=".open-", dir=root))
    try:
        (stage / "data").mkdir()
        (stage / "jobs").mkdir()
        for rel, sha, size in entries:
            target = stage.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            if _is_photo(rel):
                data = _read_checked(source, rel, sha, size)
                workspace.check_image(f"the project's photo {str(rel)!r}", data, room=False)
                target.write_bytes(data)
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
    content, and every path of its job files, which must resolve inside ``workspace``. The
    workspace is only changed once all of them pass. Raises :class:`TLError` naming the first
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
