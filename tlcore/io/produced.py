"""Model files this server produced (or already checked): the ones the dashboard may parse in its own process.

A model file is parsed by native code (HDF5, Keras, the TFLite interpreter), which a crafted file can
crash, hang or make exhaust memory. tlcore records the SHA-256 of every model file it writes (run
weights in :func:`tlcore.models.run.save_run`, every export in :mod:`tlcore.export.formats`) and of every file that
passed :mod:`tlcore.models.model_check`; anything else is opened first in a checking process.

Why marker files named by content, ``<cache>/produced/<sha256>``: trust follows the bytes, so a run
copied into a saved project and opened again, or an export downloaded and uploaded again, keeps it,
and nothing a user can write (a workspace, a project ZIP) is ever consulted. Each marker holds an
HMAC of the digest made with the server key (:mod:`tlcore.io.secret`), so a file that lands in the cache
some other way grants nothing without the key. Only the operator's account writes the cache; the
job workers run as the operator, so they record what they write.

A run folder is trusted as a whole: its digest (:func:`tlcore.models.run.run_digest`) covers the weights file
and what its ``config.json`` makes Transfer Lab build (backbone, classes, input size, head),
since a changed class count or input size is as able to exhaust memory as changed weights. Paths in
that config (rewritten when a project is opened elsewhere) do not take the trust away.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .atomic import write_bytes_atomic
from .errors import TLError
from .paths import default_cache_dir
from .secret import sign, verify

__all__ = ["produced_dir", "model_digest", "record_produced", "record_digest", "is_recorded", "is_produced"]

_PURPOSE = "produced-model"
_DIGEST = re.compile(r"[0-9a-f]{64}")  # a marker's name: never a path


def produced_dir() -> Path:
    """Where the markers live: ``<cache>/produced``."""
    return default_cache_dir() / "produced"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise TLError(f"cannot read {str(path)!r} ({exc.strerror or exc})") from None
    return h.hexdigest()


def model_digest(path: str | Path) -> str:
    """The SHA-256 a model file is known by (of its bytes); :class:`TLError` when it cannot be read.

    A run folder is known by :func:`tlcore.models.run.run_digest`, which builds on this one.
    """
    return _file_sha256(Path(path))


def record_produced(path: str | Path) -> str:
    """Record the model file (or run folder) at ``path`` as produced or checked by this server; its digest."""
    digest = model_digest(path)
    record_digest(digest)
    return digest


def record_digest(digest: str) -> None:
    """Record the content known by ``digest`` (:func:`model_digest`) as produced or checked by this server."""
    if not _DIGEST.fullmatch(digest):
        raise TLError(f"{digest!r} is not a SHA-256 digest")
    if not is_recorded(digest):  # absent, or a marker this server did not sign: (re)written
        write_bytes_atomic(produced_dir() / digest, sign(_PURPOSE, digest).encode("ascii"))


def is_recorded(digest: str) -> bool:
    """Whether the content known by ``digest`` was recorded here (a marker signed with this server's key)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return False
    try:
        signature = (produced_dir() / digest).read_text(encoding="ascii").strip()
        return verify(_PURPOSE, digest, signature)
    except (TLError, OSError, UnicodeDecodeError):
        return False


def is_produced(path: str | Path) -> bool:
    """Whether this server produced (or already checked) exactly this file's content; False when it cannot tell."""
    try:
        return is_recorded(model_digest(path))
    except TLError:
        return False
