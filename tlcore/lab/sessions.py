"""Session ids: only the ones this server issued name a workspace, and each says who it admits.

An id is ``<random>.<issued><admitted>``: 32 random hex digits, then two signatures made with the
server key (:mod:`tlcore.io.secret`), 32 hex digits each:

- ``issued`` signs the random part alone. It proves the server made this id, so a link with an
  id someone made up (session fixation: the victim would upload into a folder the sender knows)
  is not a session. The workspace folder is named by the random part.
- ``admitted`` signs the random part with an *admission*: :data:`OPEN` when the server has no
  gate, :func:`code_admission` of the access code, or :func:`user_admission` of the signed-in
  user. An id therefore proves admission only for the gate it was issued under: after the
  operator sets or changes the code it asks again, and with single sign-on another user's link
  is not yours. Passing the new gate re-signs the same random part (:func:`reissue`), so the
  workspace stays.

Both are checked with a full match and constant-time comparisons; an id that fails gets a new
session, never an error page.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from .access_code import access_code
from ..io.errors import TLError
from ..io.secret import sign

__all__ = ["OPEN", "new_session_id", "issued", "admitted", "reissue", "folder_name", "code_admission",
           "user_admission", "default_admission", "user_session_id"]

OPEN = "open"  # the admission of a server without a gate (``make run`` on the local machine)
_ID = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{32})([0-9a-f]{32})")
_HEX = 32  # hex digits kept of each HMAC-SHA256: 128 bits, as RFC 2104 allows, so addresses stay short


def _mac(purpose: str, message: str) -> str:
    return sign(purpose, message)[:_HEX]


def _parts(value) -> tuple[str, str, str] | None:
    # fullmatch: re.match with "$" let "<id>\n" through.
    found = _ID.fullmatch(value) if isinstance(value, str) else None
    return found.groups() if found else None


def _admission_mac(random_part: str, admission: str) -> str:
    return _mac("session-admission", f"{random_part}\n{admission}")


def _issue(random_part: str, admission: str) -> str:
    return f"{random_part}.{_mac('session', random_part)}{_admission_mac(random_part, admission)}"


def default_admission() -> str:
    """The admission of ids made outside a browser (CLI, tests): the access code's when
    ``$TLCORE_ACCESS_CODE`` is set, else :data:`OPEN`."""
    code = access_code()
    return code_admission(code) if code else OPEN


def new_session_id(admission: str | None = None) -> str:
    """A fresh id with a new random part, admitted under ``admission`` (default :func:`default_admission`)."""
    return _issue(secrets.token_hex(16), default_admission() if admission is None else admission)


def issued(value) -> bool:
    """True when ``value`` is an id this server issued (under any admission)."""
    parts = _parts(value)
    return parts is not None and hmac.compare_digest(_mac("session", parts[0]), parts[1])


def admitted(value, admission: str | None) -> bool:
    """True when ``value`` is an id this server issued under ``admission`` (None admits nothing)."""
    parts = _parts(value)
    return (admission is not None and issued(value)
            and hmac.compare_digest(_admission_mac(parts[0], admission), parts[2]))


def reissue(value, admission: str) -> str | None:
    """``value``'s random part (same workspace) admitted under ``admission``; None unless the server issued
    ``value``. Call it only for a browser that has just passed the gate of ``admission``."""
    return _issue(_parts(value)[0], admission) if issued(value) else None


def folder_name(value) -> str:
    """The name of the workspace folder of id ``value`` (its random part); :class:`TLError` unless issued."""
    if not issued(value):
        raise TLError(f"invalid session id {value!r}: this server did not issue it; open the dashboard's "
                      "address without it to start a new session")
    return _parts(value)[0]


def user_session_id(admission: str) -> str:
    """The one session of a signed-in user: its random part is derived from the user's admission with the
    server key, so the user finds the same workspace from any browser and nobody can compute it."""
    return _issue(_mac("session-user", admission), admission)


def code_admission(code: str) -> str:
    """The admission of an access code (a digest: the code itself is never part of a signed message)."""
    return "code:" + hashlib.sha256(code.encode("utf-8")).hexdigest()


def user_admission(issuer: str, subject: str) -> str:
    """The admission of the user ``subject`` of the identity provider ``issuer`` (single sign-on)."""
    return f"user:{issuer}\n{subject}"
