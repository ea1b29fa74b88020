"""Photos without labels: every file of a folder (recursively) or of a ZIP, for the model to suggest a class for.

Nothing here trusts the input. A ZIP is extracted only through :func:`tlcore.io.archive.safe_extract` (entries
leading outside, links, encrypted entries and nested archives are refused one by one and reported; bombs stop the
whole archive); files are only listed, never decoded: whether each one is an image is decided later by the one
image path (:mod:`tlcore.data.images`), which skips an unreadable one with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..io.archive import is_junk_name, safe_extract
from ..io.errors import TLError

__all__ = ["UnlabelledPhoto", "unlabelled_photos"]


@dataclass(frozen=True)
class UnlabelledPhoto:
    """One file to suggest a class for: ``name`` is what the user knows it by (its path in the folder they gave,
    or its name inside their ZIP), ``path`` where it is on disk now (inside a temporary extraction for a ZIP)."""

    name: str
    path: Path


def _visible(parts) -> bool:
    # Hidden files and the clutter operating systems leave are not photos the user meant to give.
    return all(not p.startswith(".") and not is_junk_name(p) for p in parts)


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and _visible(p.relative_to(folder).parts))


def unlabelled_photos(source: str | Path, extract_to: str | Path | None = None
                      ) -> tuple[list[UnlabelledPhoto], list[dict]]:
    """The files of ``source`` to suggest classes for, and the ZIP entries refused (``{path, reason}``).

    ``source`` is an image file, a folder (searched recursively; hidden files and clutter such as ``__MACOSX``
    left out) or a ``.zip``, which is extracted into ``extract_to`` (a new or empty folder the caller removes;
    required for a ZIP, so nothing of a user's archive lands in a shared place). A folder's files are named by
    their path as given (``source/sub/x.jpg``); a ZIP's by their name inside it. Raises :class:`TLError` when
    ``source`` does not exist, for an unusable ZIP (damaged, a bomb) or when there is no file at all.
    """
    source = Path(source)
    refused: list[dict] = []
    if source.is_dir():
        photos = [UnlabelledPhoto(str(p), p) for p in _files_under(source)]
    elif source.is_file() and source.suffix.lower() == ".zip":
        if extract_to is None:
            raise TLError("a ZIP of photos needs a folder to be extracted into")  # a programming slip, said plainly
        target = Path(extract_to)
        refused = [{"path": r["name"], "reason": r["reason"]} for r in safe_extract(source, target)]
        photos = [UnlabelledPhoto(p.relative_to(target).as_posix(), p) for p in _files_under(target)]
    elif source.is_file():
        photos = [UnlabelledPhoto(str(source), source)]
    else:
        raise TLError(f"{str(source)!r} does not exist; give a folder of photos, a .zip of photos or a photo")
    if not photos:
        reason = f" ({len(refused)} entries refused, the first: {refused[0]['reason']})" if refused else ""
        shown = source.name if source.suffix.lower() == ".zip" else str(source)
        raise TLError(f"{shown!r} holds no photo{reason}")
    return photos, refused
