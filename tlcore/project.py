"""Save a workspace as a self-contained project folder (or ZIP), and open it again anywhere.

A project folder holds ``project.json`` (name, creation time, tlcore version, settings and a
manifest with the size and SHA-256 of every file), the photos under ``data/<class>/`` and the
jobs under ``jobs/`` (runs with their models, curves and exports). Paths inside the jobs' JSON
files point into the workspace they came from; they are stored with the workspace folder
replaced by ``${WORKSPACE}`` and resolved against the receiving workspace on open, so samples,
fine-tuning parents and export files are found again after a move or a server restart.

Saving writes into a temporary folder renamed into place, so a failure never leaves a partial
project; opening checks every file against the manifest before the workspace is touched.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from . import __version__
from .atomic import replace_dir, staged_dir
from .errors import TLError
from .experiments import run_history
from .jobs import LIVE, job_status, list_jobs
from .workspace import Workspace

__all__ = ["PROJECT_FILE", "save_project", "open_project", "open_project_zip", "project_zip", "read_project",
           "projects_dir", "project_path", "saved_projects", "run_history"]

PROJECT_FILE = "project.json"
_FORMAT = 1
_PLACEHOLDER = "${WORKSPACE}"
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,59}$")
# Settings that belong to the person, not the project: opening a project keeps the receiver's.
_PERSONAL = ("language",)
_MAX_PROJECT_JSON = 50_000_000
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}  # decompressed with bounded output, chunk by chunk
# Photos and weights barely compress; a ZIP promising far more than this many times its size is a bomb.
_MAX_EXPANSION, _EXPANSION_GRACE = 50, 100_000_000


# Paths inside JSON ---------------------------------------------------------------------------------

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


# Keys whose values are files the dashboard reads (photos shown in galleries, runs, exports).
_PATH_KEYS = ("path", "parent", "labels", "run_dir")


def _check_inside(value, root: str) -> None:
    """Refuse an opened job file naming a file outside the receiving workspace: a project from someone
    else must not make the dashboard show or read other files of the server."""
    if isinstance(value, list):
        for v in value:
            _check_inside(v, root)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in _PATH_KEYS and isinstance(v, str) and Path(v).is_absolute():
                inside = Path(v).resolve(strict=False)
                if inside != Path(root).resolve() and Path(root).resolve() not in inside.parents:
                    raise TLError(f"the project refers to {v!r}, outside the project; it cannot be opened")
            else:
                _check_inside(v, root)


def _convert(data: bytes, suffix: str, old: tuple[str, ...], new: str, saving: bool) -> bytes:
    """A job file's bytes with workspace paths swapped; a saved job has no worker process (pid 0).

    When opening (``saving`` False), paths must stay inside the workspace ``new``, and a job's
    command line is dropped: a reopened job is a record, never a process to start again (its
    arguments came from a file anyone could have written).
    """
    if suffix == ".jsonl":
        lines = []
        for line in data.decode("utf-8").splitlines():
            try:
                value = _rewrite(json.loads(line), old, new)
            except ValueError:
                continue  # a half-written last line is not an event
            if not saving:
                _check_inside(value, new)
            lines.append(json.dumps(value))
        return "".join(f"{line}\n" for line in lines).encode("utf-8")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return data  # not JSON after all: kept as it is
    value = _rewrite(value, old, new)
    if isinstance(value, dict) and "pid" in value:
        if saving:
            # job.json and result.json must agree on the pid; 0 is never alive, so the job reads as ended.
            value["pid"] = 0
        else:
            value.pop("argv", None)
    if not saving:
        _check_inside(value, new)
    return json.dumps(value, indent=1).encode("utf-8")


def _is_json(path: PurePosixPath) -> bool:
    return path.suffix in (".json", ".jsonl")


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


def save_project(workspace: Workspace, dest: str | Path, name: str | None = None) -> Path:
    """Write ``workspace`` (photos, settings, finished jobs with runs and exports) to the project folder ``dest``.

    ``name`` defaults to the folder's name. An existing project at ``dest`` is replaced; any other
    existing non-empty folder is refused. Refused while one of the workspace's jobs is running.
    The folder appears complete or not at all. Returns ``dest``.
    """
    dest = Path(dest).absolute()
    name = (name or dest.name).strip() or dest.name
    _check_idle(workspace, "saving the project")
    _check_dest(dest)
    roots = _roots(workspace)
    try:
        with staged_dir(dest) as tmp:
            data: dict[str, list[dict]] = {}
            for cls in workspace.classes():
                data[cls] = [{"file": p.name, **_copy_with_digest(p, tmp / "data" / cls / p.name)}
                             for p in workspace.images(cls)]
            files = []
            for job in sorted(list_jobs(workspace.jobs_dir)):
                for src in sorted(p for p in job.rglob("*") if p.is_file()):
                    rel = PurePosixPath("jobs", *src.relative_to(workspace.jobs_dir).parts)
                    target = tmp.joinpath(*rel.parts)
                    if _is_json(rel):
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(_convert(src.read_bytes(), rel.suffix, roots, _PLACEHOLDER, saving=True))
                        sha, size = _digest(target)
                        entry = {"sha256": sha, "bytes": size}
                    else:
                        entry = _copy_with_digest(src, target)
                    files.append({"path": str(rel), **entry})
            settings = {k: v for k, v in workspace.settings().items() if k not in _PERSONAL}
            project = {
                "format": _FORMAT, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tlcore_version": __version__, "settings": _rewrite(settings, roots, _PLACEHOLDER),
                "data": data, "files": files, "runs": len(run_history(workspace.jobs_dir)),
            }
            (tmp / PROJECT_FILE).write_text(json.dumps(project, indent=1), encoding="utf-8")
    except OSError as exc:
        raise TLError(f"cannot write the project to {str(dest)!r} ({exc.strerror or exc})") from None
    return dest


def project_zip(project_dir: str | Path) -> bytes:
    """The project folder as ZIP bytes (deflated, one top folder named after it), for a download."""
    project_dir = Path(project_dir)
    read_project(project_dir)  # a folder that is not a project is said now, not after zipping
    with tempfile.TemporaryFile() as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in project_dir.rglob("*") if p.is_file()):
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


def _entries(project: dict) -> list[tuple[PurePosixPath, str, int]]:
    """Every (relative path, sha256, bytes) the manifest promises, paths checked to stay inside."""
    entries = []
    try:
        for cls, items in project["data"].items():
            _safe_rel(cls, "the class")
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
    return entries


class _Folder:
    """Reads a project's files from a folder."""

    def __init__(self, root: Path):
        self.root = root

    def check_total(self, total: int) -> None:
        pass  # files already on disk take no new room until copied, and are read no further than promised

    def read_project(self) -> bytes:
        try:
            return (self.root / PROJECT_FILE).read_bytes()
        except FileNotFoundError:
            raise TLError(f"{str(self.root)!r} is not a Transfer Lab project (it has no {PROJECT_FILE})") from None

    def open(self, rel: PurePosixPath):
        return open(self.root.joinpath(*rel.parts), "rb")


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
        return info

    def read_project(self) -> bytes:
        info = self._info(self.prefix + PROJECT_FILE)
        with self.zf.open(info) as f:
            data = f.read(_MAX_PROJECT_JSON + 1)
        if len(data) > _MAX_PROJECT_JSON:
            raise TLError(f"the {PROJECT_FILE} in {self.label} is too large to be a project file")
        return data

    def open(self, rel: PurePosixPath):
        try:
            info = self._info(self.prefix + str(rel))
        except KeyError:
            raise FileNotFoundError(str(rel)) from None
        return self.zf.open(info)


def _load_project(source) -> dict:
    try:
        project = json.loads(source.read_project().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TLError(f"the project's {PROJECT_FILE} is damaged ({exc})") from None
    if not isinstance(project, dict) or project.get("format") != _FORMAT:
        version = project.get("format") if isinstance(project, dict) else None
        raise TLError(f"the project's {PROJECT_FILE} has format {version!r}; this version of Transfer Lab reads format {_FORMAT}")
    return project


def _copy_checked(source, rel: PurePosixPath, sha: str, size: int, target: Path) -> None:
    """Copy one file, at most ``size`` + 1 bytes, refusing it unless its size and SHA-256 match the manifest."""
    target.parent.mkdir(parents=True, exist_ok=True)
    h, n = hashlib.sha256(), 0
    try:
        with source.open(rel) as src, open(target, "wb") as dst:
            while n <= size and (chunk := src.read(min(_CHUNK, size + 1 - n))):
                h.update(chunk)
                dst.write(chunk)
                n += len(chunk)
    except FileNotFoundError:
        raise TLError(f"the project is incomplete: {str(rel)!r} is missing") from None
    except (zipfile.BadZipFile, EOFError) as exc:
        raise TLError(f"the project's file {str(rel)!r} cannot be read ({exc})") from None
    if n != size or h.hexdigest() != sha:
        raise TLError(f"the project's file {str(rel)!r} has changed since it was saved (its size or checksum "
                      "differs), so the project is not opened")


def read_project(src: str | Path) -> dict:
    """The ``project.json`` of the project folder or ZIP ``src`` (name, created, settings, manifest)."""
    src = Path(src)
    if src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            return _load_project(_Zip(zf, repr(src.name), src.stat().st_size))
    return _load_project(_Folder(src))


def _open(source, workspace: Workspace) -> dict:
    project = _load_project(source)
    entries = _entries(project)
    source.check_total(sum(size for _, _, size in entries))
    _check_idle(workspace, "opening a project here")
    root = workspace.root.absolute()
    new = str(root)
    # Staged inside the workspace, so the final moves are renames on one file system.
    stage = Path(tempfile.mkdtemp(prefix=".open-", dir=root))
    try:
        (stage / "data").mkdir()
        (stage / "jobs").mkdir()
        for rel, sha, size in entries:
            target = stage.joinpath(*rel.parts)
            _copy_checked(source, rel, sha, size, target)
            if rel.parts[0] == "jobs" and _is_json(rel):
                target.write_bytes(_convert(target.read_bytes(), rel.suffix, (_PLACEHOLDER,), new, saving=False))
        replace_dir(stage / "data", workspace.data_dir)
        replace_dir(stage / "jobs", workspace.jobs_dir)
    except OSError as exc:
        raise TLError(f"cannot open the project into {str(root)!r} ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    settings = _rewrite(project.get("settings") or {}, (_PLACEHOLDER,), new)
    if isinstance(settings, dict):
        workspace.update_settings(**{k: v for k, v in settings.items() if k not in _PERSONAL})
    return {"name": project.get("name"), "created": project.get("created"),
            "photos": sum(1 for rel, _, _ in entries if rel.parts[0] == "data"),
            "runs": len(run_history(workspace.jobs_dir))}


def open_project(src: str | Path, workspace: Workspace) -> dict:
    """Load the project folder (or ZIP file) ``src`` into ``workspace``, replacing its photos and jobs.

    Every file is checked against the manifest (size and SHA-256) while it is copied into a
    staging folder; the workspace is only changed once all of them match. Raises
    :class:`TLError` naming the first missing or changed file. Refused while a job of the
    workspace is running. Returns ``{"name", "created", "photos", "runs"}``.
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
        if path.name.startswith(".") or not (path / PROJECT_FILE).is_file():
            continue
        try:
            project = read_project(path)
        except TLError:
            continue
        found.append({"name": project.get("name", path.name), "path": path, "created": project.get("created", ""),
                      "runs": project.get("runs")})
    return sorted(found, key=lambda p: p["created"], reverse=True)
