"""The server key: created once with mode 0600, shared by every process, and signatures bound to a purpose."""
from __future__ import annotations

import stat
import subprocess
import sys

from tlcore.io.secret import secret_path, server_key, sign, verify


def test_the_key_is_created_once_readable_only_by_the_operator(isolated_cache):
    key = server_key()
    assert len(key) == 32
    assert stat.S_IMODE(secret_path().stat().st_mode) == 0o600
    assert server_key() == key


def test_another_process_uses_the_same_key(isolated_cache):
    code = "from tlcore.io.secret import server_key; print(server_key().hex())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == server_key().hex()


def test_a_signature_is_bound_to_its_purpose_and_message(isolated_cache):
    signature = sign("session", "abc")
    assert verify("session", "abc", signature)
    assert not verify("model", "abc", signature)
    assert not verify("session", "abd", signature)
    assert not verify("session", "abc", signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert not verify("session", "abc", None)


def test_a_half_written_key_is_replaced(isolated_cache):
    secret_path().parent.mkdir(parents=True, exist_ok=True)
    secret_path().write_bytes(b"short")
    assert len(server_key()) == 32
