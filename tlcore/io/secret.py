"""The server's secret key, and signatures made with it.

The key is 32 random bytes in ``<cache>/secret.key``, created on first use with mode 0600 (only
the operator's account can read it). It signs what the server issues and must recognise later:
session ids (:mod:`tlcore.lab.sessions`) and the model files this server produced. A signature is
an HMAC-SHA256 bound to a purpose, so one kind of signature never passes for another.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .errors import TLError
from .paths import default_cache_dir

__all__ = ["secret_path", "server_key", "sign", "verify"]

_KEY_BYTES = 32


def secret_path() -> Path:
    """Where the key lives: ``<cache>/secret.key``."""
    return default_cache_dir() / "secret.key"


def server_key() -> bytes:
    """The key, created (mode 0600, exclusively, so two processes starting at once agree) when absent."""
    path = secret_path()
    for _ in range(2):
        try:
            data = path.read_bytes()
            if len(data) >= _KEY_BYTES:
                return data[:_KEY_BYTES]
            # A key shorter than promised is a half-written one of a process that died: replace it.
            path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TLError(f"cannot read the server key {str(path)!r} ({exc.strerror or exc})") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: its key is then read above
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    raise TLError(f"cannot create the server key {str(path)!r}")


def sign(purpose: str, message: str) -> str:
    """A hex HMAC-SHA256 of ``message`` for ``purpose``."""
    return hmac.new(server_key(), f"{purpose}\n{message}".encode("utf-8"), hashlib.sha256).hexdigest()


def verify(purpose: str, message: str, signature) -> bool:
    """Whether ``signature`` is :func:`sign`'s for ``purpose`` and ``message`` (constant-time comparison)."""
    return isinstance(signature, str) and hmac.compare_digest(sign(purpose, message), signature)
