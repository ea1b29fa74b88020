"""The access code an operator gives the team: who may use a dashboard served beyond the local machine.

The dashboard asks for it when ``$TLCORE_ACCESS_CODE`` is set in the server's environment.
``make serve`` sets it: to the operator's value when there is one, else to a code it generates once
and keeps in ``<cache>/access.code`` (mode 0600), so a restart keeps the same code and bookmarks.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from ..io.errors import TLError
from ..io.paths import default_cache_dir

__all__ = ["ENV", "access_code", "code_path", "ensure_access_code", "check_access_code", "WRONG_CODE_DELAY"]

ENV = "TLCORE_ACCESS_CODE"
WRONG_CODE_DELAY = 1.0  # seconds each wrong code costs, one wrong code at a time server-wide
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or copied from a slide
_GROUPS, _GROUP = 4, 4  # 16 characters, about 79 bits: out of reach of guessing at one try a second

log = logging.getLogger("tlcore.access")
_wrong = threading.Lock()


def access_code() -> str | None:
    """The code this server asks for (``$TLCORE_ACCESS_CODE``), or None when it asks for none."""
    return os.environ.get(ENV, "").strip() or None


def code_path() -> Path:
    """Where ``make serve`` keeps the code it generated: ``<cache>/access.code``."""
    return default_cache_dir() / "access.code"


def ensure_access_code() -> str:
    """``$TLCORE_ACCESS_CODE`` if set, else the kept code, else a new one kept with mode 0600."""
    code = access_code()
    if code:
        return code
    path = code_path()
    try:
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return kept
        path.unlink()  # an empty file: a run that died while writing it
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise TLError(f"cannot read the access code file {str(path)!r} ({exc.strerror or exc})") from None
    code = "-".join("".join(secrets.choice(_ALPHABET) for _ in range(_GROUP)) for _ in range(_GROUPS))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote one meanwhile: use it
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(code + "\n")
    return code


def check_access_code(given: str) -> bool:
    """Whether ``given`` (surrounding blanks ignored) is the access code.

    Compared in constant time (digests of equal length); a wrong code is logged and waits
    :data:`WRONG_CODE_DELAY` seconds behind every other wrong code of this server, so guessing
    runs at one try a second however many browsers try at once.
    """
    code = access_code()
    if code is None:
        return False
    digest = hashlib.sha256(str(given or "").strip().encode("utf-8")).digest()
    if hmac.compare_digest(digest, hashlib.sha256(code.encode("utf-8")).digest()):
        return True
    log.warning("a wrong access code was entered")
    with _wrong:
        time.sleep(WRONG_CODE_DELAY)
    return False
