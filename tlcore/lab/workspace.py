"""A user's photos on disk, one folder per class: what the dashboard edits.

Each browser session gets its own workspace folder (named by an unguessable
id), so two sessions never see each other's data, and a page refresh finds
everything again. Files are checked as images before they are kept.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import sessions
from ..io import quota as session_disk
from ..io.atomic import write_bytes_atomic
from ..data.datasets import load_dataset
from ..io.errors import TLError
from ..io.files import link_tree
from ..data.images import ImageDecodeError, decode_image
from ..io.names import check_class_name
from ..io.paths import default_cache_dir
from ..data.sample_data import write_sample_dataset
from ..data.unlabelled import unlabelled_photos

__all__ = ["Workspace", "new_session_id", "valid_session_id"]

_SAFE_FILE = re.compile(r"[^A-Za-z0-9._-]+")
def new_session_id() -> str:
    """A fresh session id signed by this server (see :mod:`tlcore.lab.sessions`)."""
    return sessions.new_session_id()


def valid_session_id(value) -> bool:
    """True when ``value`` is a session id this server issued (a made-up or altered one is not)."""
    return sessions.issued(value)


class Workspace:
    """Classes and photos of one session, plus its settings and training jobs."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.jobs_dir = self.root / "jobs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_session(cls, session_id: str, base: str | Path | None = None) -> "Workspace":
        """The workspace of ``session_id`` under ``base`` (default: the tlcore cache)."""
        return cls(cls._folder(session_id, base))

    @classmethod
    def existing(cls, session_id, base: str | Path | None = None) -> "Workspace | None":
        """The workspace of ``session_id`` if there is one, without making it: None for an id this server did not
        issue, or whose workspace is gone (expired, deleted)."""
        if not valid_session_id(session_id):
            return None
        folder = cls._folder(session_id, base)
        return cls(folder) if folder.is_dir() else None

    @staticmethod
    def _folder(session_id: str, base: str | Path | None) -> Path:
        folder = sessions.folder_name(session_id)  # refuses, in one sentence, an id this server did not issue
        return (Path(base) if base is not None else default_cache_dir() / "sessions") / folder

    # Classes -------------------------------------------------------------------------------
    def classes(self) -> list[str]:
        return sorted(p.name for p in self.data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _class_dir(self, name: str) -> Path:
        return self.data_dir / check_class_name(name or "")

    def add_class(self, name: str) -> str:
        """Create class ``name`` (no error if it exists); returns the cleaned name."""
        folder = self._class_dir(name)
        folder.mkdir(exist_ok=True)
        return folder.name

    def remove_class(self, name: str) -> None:
        shutil.rmtree(self._class_dir(name), ignore_errors=True)
        self.forget_usage()

    def images(self, name: str) -> list[Path]:
        folder = self._class_dir(name)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def counts(self) -> dict[str, int]:
        return {c: len(self.images(c)) for c in self.classes()}

    # Upload caps ---------------------------------------------------------------------------
    # Instances may override these: the dashboard sets ``max_file_mb`` from Streamlit's
    # ``server.maxUploadSize`` so one setting caps both the upload and what is kept. None for
    # ``max_session_mb`` means ``$TLCORE_MAX_SESSION_MB`` (Streamlit warns about unknown config sections).
    max_file_mb: float = 200
    max_session_mb: float | None = None

    def quota(self) -> dict:
        """``{"file_mb", "session_mb", "used_mb"}``: the caps on uploads and what this session holds."""
        return {"file_mb": self.max_file_mb, "session_mb": self.session_cap_mb(),
                "used_mb": self.used_bytes() / session_disk.MB}

    def session_cap_mb(self) -> float:
        """The cap on everything this session keeps on disk, in MB (``$TLCORE_MAX_SESSION_MB``, default 1000)."""
        return session_disk.session_cap_mb(self.max_session_mb)

    def data_signature(self) -> tuple:
        """Names and change times of the data folders: equal signatures mean the same photo files."""
        # Adding or removing a file changes its folder's mtime.
        folders = [self.data_dir, *sorted(p for p in self.data_dir.iterdir() if p.is_dir())]
        return tuple((p.name, p.stat().st_mtime_ns) for p in folders)

    def used_bytes(self) -> int:
        """Bytes this session owns on disk: photos, jobs (runs, exports, checkpoints), uploaded models, saved
        projects and settings. A file linked several times (job snapshots share the photos' files) counts once;
        remembered for a few seconds (:func:`tlcore.io.quota.used_bytes`)."""
        return session_disk.used_bytes(self.root)

    def _count_added(self, size: int) -> None:
        session_disk.count_added(self.root, size)

    def forget_usage(self) -> None:
        """Measure again at the next :meth:`used_bytes` (after removing or adding many files)."""
        session_disk.forget_usage(self.root)

    def check_room(self, size: int, what: str, freed: int = 0) -> None:
        """Refuse (:class:`TLError`) when adding ``size`` bytes (after freeing ``freed``) would take this session
        over its cap; ``what`` names what is being added."""
        session_disk.check_room(self.root, size, what, freed, self.max_session_mb)

    def check_file_size(self, filename: str, size: int) -> None:
        """Refuse (:class:`TLError` naming ``filename``) a file of ``size`` bytes over the per-file cap."""
        cap = self.max_file_mb
        if size > cap * session_disk.MB:
            raise TLError(f"{filename}: {size / session_disk.MB:.1f} MB is over the limit of {cap:g} MB per file")

    def check_image(self, filename: str, data: bytes, room: bool = True) -> None:
        """The rules every kept photo obeys, whatever brought it (upload, ZIP, webcam, project): within the
        per-file and session caps, and a readable image by its content. Raises :class:`TLError` naming ``filename``.

        ``room`` False skips the session cap, for a caller that checked it for a whole batch before
        writing anything (opening a project)."""
        self.check_file_size(filename, len(data))
        if room:
            self.check_room(len(data), filename)  # before decoding: a huge file is refused cheaply
        try:
            decode_image(data, (8, 8))
        except ImageDecodeError as exc:
            raise TLError(f"{filename}: {exc}") from None

    # Images --------------------------------------------------------------------------------
    def add_image(self, class_name: str, filename: str, data: bytes) -> Path:
        """Keep ``data`` in class ``class_name`` if it is a readable image within the caps; else raise why."""
        folder = self._class_dir(class_name)
        self.check_image(filename, data)
        return self._store(folder, filename, data)

    def _store(self, folder: Path, filename: str, data: bytes) -> Path:
        """Write checked ``data`` into ``folder`` under a plain, new name made from ``filename``."""
        folder.mkdir(exist_ok=True)
        stem, dot, ext = Path(filename).name.rpartition(".")
        stem = _SAFE_FILE.sub("_", stem or ext)[:80] or "image"
        ext = _SAFE_FILE.sub("", ext)[:8].lower() if dot else "img"
        path = folder / f"{stem}.{ext}"
        n = 1
        while path.exists():
            path = folder / f"{stem}_{n}.{ext}"
            n += 1
        write_bytes_atomic(path, data)
        self._count_added(len(data))  # what a rescan would find, without one
        return path

    def add_files(self, class_name: str, files) -> tuple[list[Path], list[dict]]:
        """Add ``(filename, bytes)`` pairs; returns (kept paths, rejected ``{name, reason}``)."""
        self.session_cap_mb()  # a bad setting is one error, not one rejection per file
        added, rejected = [], []
        for filename, data in files:
            try:
                added.append(self.add_image(class_name, filename, data))
            except TLError as exc:
                rejected.append({"name": filename, "reason": str(exc).split(": ", 1)[-1]})
        return added, rejected

    def add_zip(self, data: bytes) -> tuple[list[Path], list[dict]]:
        """Add every image of a zip of class folders (splits inside are merged).

        Returns (kept paths, rejected ``{name, reason}``): the entries the safe
        extractor refused (paths leading outside, links, encrypted entries,
        nested archives, ...) first, then the files that are not readable images.
        Raises :class:`TLError` for an unusable zip (damaged, a zip bomb, no class folders).

        The photos are extracted into a temporary folder, removed once they are copied: an upload keeps
        nothing in the shared extraction cache (a session's photos are counted against its own cap only).
        """
        with tempfile.TemporaryDirectory(prefix="tlcore-upload-") as tmp:
            archive = Path(tmp) / "upload.zip"
            archive.write_bytes(data)
            try:
                dataset = load_dataset(archive, extract_to=Path(tmp) / "files")
            except TLError as exc:
                # the temporary file's name means nothing to the person who uploaded it
                message = str(exc).replace(str(archive), "the ZIP").replace(repr(archive.name), "the ZIP")
                raise TLError(message) from None
            added = []
            rejected = [{"name": s.get("entry", s["path"]), "reason": s["reason"]} for s in dataset.skipped]
            for sample in dataset.samples:
                path = Path(sample.path)
                try:
                    added.append(self.add_image(sample.label, path.name, path.read_bytes()))
                except (TLError, OSError) as exc:
                    rejected.append({"name": f"{sample.label}/{path.name}", "reason": str(exc).split(": ", 1)[-1]})
        return added, rejected

    # Unlabelled photos (labelling help) -------------------------------------------------------------
    # Photos waiting for a class: uploaded for a model to suggest one, kept in this session's own folder (never a
    # shared one, and outside data/, so training never sees them) until accepted into a class or discarded. They
    # pass the checks every kept photo passes, when uploaded and again when accepted.
    @property
    def unlabelled_dir(self) -> Path:
        return self.root / "unlabelled"

    def unlabelled(self) -> list[Path]:
        """The photos waiting for a class, by name."""
        folder = self.unlabelled_dir
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def _unlabelled_file(self, filename: str) -> Path:
        # Only a name of this folder: a name from the browser never leads elsewhere.
        path = self.unlabelled_dir / Path(str(filename).replace("\\", "/")).name
        if path.parent != self.unlabelled_dir or not path.is_file():
            raise TLError(f"{filename}: no such photo waiting for a class")
        return path

    def add_unlabelled(self, files) -> tuple[list[Path], list[dict]]:
        """Keep ``(filename, bytes)`` pairs as photos waiting for a class (each a readable image within the caps);
        returns (kept paths, rejected ``{name, reason}``)."""
        self.session_cap_mb()  # a bad setting is one error, not one rejection per file
        added, rejected = [], []
        for filename, data in files:
            try:
                self.check_image(filename, data)
                added.append(self._store(self.unlabelled_dir, filename, data))
            except TLError as exc:
                rejected.append({"name": filename, "reason": str(exc).split(": ", 1)[-1]})
        return added, rejected

    def add_unlabelled_zip(self, data: bytes) -> tuple[list[Path], list[dict]]:
        """Keep every photo of a ZIP (any folders inside, flattened) as waiting for a class.

        The ZIP is extracted safely (:func:`tlcore.data.unlabelled.unlabelled_photos`) into a temporary folder
        removed afterwards; returns (kept paths, rejected ``{name, reason}``): the entries the extractor refused,
        then the files that are not readable images or break a cap. :class:`TLError` for an unusable ZIP.
        """
        with tempfile.TemporaryDirectory(prefix="tlcore-upload-") as tmp:
            archive = Path(tmp) / "upload.zip"
            archive.write_bytes(data)
            try:
                photos, refused = unlabelled_photos(archive, Path(tmp) / "files")
            except TLError as exc:
                # the temporary file's name means nothing to the person who uploaded it
                raise TLError(str(exc).replace(repr(archive.name), "the ZIP")) from None
            rejected = [{"name": r["path"], "reason": r["reason"]} for r in refused]
            added, bad = self.add_unlabelled((p.name, p.path.read_bytes()) for p in photos)
        return added, rejected + bad

    def accept_unlabelled(self, choices: dict[str, str]) -> tuple[list[Path], list[dict]]:
        """Move each waiting photo ``name`` of ``choices`` into its class ``choices[name]`` (made if needed).

        Each photo is checked again as any upload is (a readable image, the per-file cap, the session's room,
        counting the waiting copy it frees) and keeps waiting when refused. Returns (paths in their classes,
        rejected ``{name, reason}``)."""
        self.session_cap_mb()
        added, rejected = [], []
        for name, class_name in choices.items():
            try:
                source = self._unlabelled_file(name)
                folder = self._class_dir(class_name)
                data = source.read_bytes()
                self.check_file_size(name, len(data))
                self.check_room(len(data), name, freed=len(data))  # a move: the waiting copy goes
                self.check_image(name, data, room=False)
                added.append(self._store(folder, source.name, data))
                source.unlink()
            except (TLError, OSError) as exc:
                rejected.append({"name": name, "reason": str(exc).split(": ", 1)[-1]})
        self.forget_usage()
        return added, rejected

    def discard_unlabelled(self, names=None) -> None:
        """Remove the waiting photos ``names`` (all of them when None)."""
        if names is None:
            shutil.rmtree(self.unlabelled_dir, ignore_errors=True)
        else:
            for name in names:
                try:
                    self._unlabelled_file(name).unlink()
                except TLError:
                    pass  # already gone: discarding twice is not an error
        self.forget_usage()

    def remove_image(self, class_name: str, filename: str) -> None:
        path = self._class_dir(class_name) / Path(filename).name
        path.unlink(missing_ok=True)
        self.forget_usage()

    def _photo(self, class_name: str, filename: str) -> Path:
        """The photo ``filename`` of class ``class_name``, checked: names from a page are hostile, so the class must
        be a valid name, the file a plain file directly in that class's folder (no path parts, no link)."""
        name = Path(str(filename)).name
        path = self._class_dir(class_name) / name
        if not name or name != str(filename) or name.startswith(".") or path.is_symlink() or not path.is_file():
            raise TLError(f"there is no photo {str(filename)!r} in class {class_name!r}")
        return path

    def move_image(self, class_name: str, filename: str, to_class: str) -> Path:
        """Move photo ``filename`` from class ``class_name`` to the existing class ``to_class`` (a relabelling:
        the file itself is unchanged, renamed only if the other class has a file of that name); returns its new path."""
        path = self._photo(class_name, filename)
        folder = self._class_dir(to_class)
        if not folder.is_dir():
            raise TLError(f"there is no class {to_class!r} to move {filename!r} to")
        if folder == path.parent:
            return path
        stem, dot, ext = path.name.rpartition(".")
        dest, n = folder / path.name, 1
        while dest.exists():
            dest = folder / (f"{stem}_{n}.{ext}" if dot else f"{path.name}_{n}")
            n += 1
        path.rename(dest)  # same file system: the bytes are not copied, the session's usage is unchanged
        return dest

    def load_sample(self, per_class: int = 40) -> None:
        """Replace the data with the built-in shapes sample."""
        self.clear_data()
        write_sample_dataset(self.data_dir, per_class=per_class)
        self.forget_usage()

    def clear_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        self.forget_usage()

    def snapshot(self, dest: str | Path) -> Path:
        """A frozen copy of the data (hard links where possible) for a training job."""
        return link_tree(self.data_dir, dest)

    # Settings ------------------------------------------------------------------------------
    def settings(self) -> dict:
        try:
            return json.loads((self.root / "settings.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def update_settings(self, **values) -> dict:
        settings = {**self.settings(), **values}
        # A unique temporary name, flushed then renamed: two tabs saving at once, or a crash, never
        # leave a half-written settings file.
        write_bytes_atomic(self.root / "settings.json", json.dumps(settings).encode("utf-8"))
        return settings
