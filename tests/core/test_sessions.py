"""Session ids: only the ones this server signed name a workspace, bound to the gate they passed (issue 14, item 6);
the access code that gate asks for (item 9)."""
from __future__ import annotations

import stat

import pytest

from tlcore.lab import access_code, sessions
from tlcore.io.errors import TLError
from tlcore.lab.workspace import Workspace, new_session_id, valid_session_id


@pytest.fixture(autouse=True)
def no_code(monkeypatch):
    monkeypatch.delenv("TLCORE_ACCESS_CODE", raising=False)


def _flip(text: str, index: int) -> str:
    return text[:index] + ("0" if text[index] != "0" else "1") + text[index + 1:]


def test_an_issued_id_names_the_folder_of_its_random_part(tmp_path):
    sid = new_session_id()
    random_part = sid.split(".")[0]
    assert valid_session_id(sid) and sessions.admitted(sid, sessions.OPEN)
    assert len(random_part) == 32 and sessions.folder_name(sid) == random_part
    assert Workspace.for_session(sid, tmp_path).root == tmp_path / random_part
    assert new_session_id() != sid


def test_a_trailing_newline_or_any_extra_character_is_not_an_id(tmp_path):
    sid = new_session_id()
    for bad in (sid + "\n", "\n" + sid, sid + " ", sid.upper(), sid + "0", sid[:-1]):
        assert not valid_session_id(bad), repr(bad)
        with pytest.raises(TLError, match="invalid session id"):
            Workspace.for_session(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no folder made for any of them


def test_an_unsigned_id_is_refused_in_one_sentence(tmp_path):
    # What the server used to issue (and accept from any link): 32 random hex digits, nothing proving who made them.
    unsigned = "0123456789abcdef0123456789abcdef"
    assert not valid_session_id(unsigned) and not valid_session_id(None) and not valid_session_id(123)
    with pytest.raises(TLError) as refused:
        Workspace.for_session(unsigned, tmp_path)
    message = str(refused.value)
    assert unsigned in message and "did not issue" in message and "\n" not in message
    assert not (tmp_path / unsigned).exists()


def test_a_forged_signature_is_refused():
    sid = new_session_id()
    random_part, signature = sid.split(".")
    assert not valid_session_id(_flip(sid, 0))  # another random part under the same signature
    assert not valid_session_id(f"{random_part}.{_flip(signature, 5)}")  # the issue signature altered
    assert not sessions.reissue(_flip(sid, 0), sessions.OPEN)
    # The admission half altered: still this server's id (its workspace), but admitted under nothing.
    altered = f"{random_part}.{_flip(signature, 40)}"
    assert valid_session_id(altered) and not sessions.admitted(altered, sessions.OPEN)


def test_an_id_signed_with_another_servers_key_is_refused(tmp_path, monkeypatch):
    sid = new_session_id()
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "other-server"))  # another cache: another secret.key
    assert not valid_session_id(sid)
    assert not sessions.admitted(sid, sessions.OPEN) and sessions.reissue(sid, sessions.OPEN) is None
    assert valid_session_id(new_session_id())


def test_the_signature_binds_the_admission_and_reissue_keeps_the_workspace():
    before = sessions.new_session_id(sessions.OPEN)
    code = sessions.code_admission("tulip-42")
    assert not sessions.admitted(before, code)  # an id from before the code was set does not pass the code
    after = sessions.reissue(before, code)
    assert sessions.admitted(after, code) and not sessions.admitted(after, sessions.OPEN)
    assert sessions.folder_name(after) == sessions.folder_name(before)  # same workspace
    assert not sessions.admitted(after, sessions.code_admission("tulip-43"))  # a changed code asks again
    assert not sessions.admitted(after, None)
    assert "tulip-42" not in code  # the code itself is never part of a signed message


def test_the_default_admission_follows_the_access_code(monkeypatch):
    assert sessions.default_admission() == sessions.OPEN
    monkeypatch.setenv("TLCORE_ACCESS_CODE", "tulip-42")
    sid = new_session_id()
    assert sessions.admitted(sid, sessions.code_admission("tulip-42")) and not sessions.admitted(sid, sessions.OPEN)


def test_each_signed_in_user_has_one_session_of_their_own():
    alice = sessions.user_admission("https://idp.example.org", "alice")
    bob = sessions.user_admission("https://idp.example.org", "bob")
    assert sessions.user_session_id(alice) == sessions.user_session_id(alice)  # the same from any browser
    assert sessions.folder_name(sessions.user_session_id(alice)) != sessions.folder_name(sessions.user_session_id(bob))
    assert sessions.admitted(sessions.user_session_id(alice), alice)
    assert not sessions.admitted(sessions.user_session_id(alice), bob)  # Alice's link is not Bob's workspace
    other_idp = sessions.user_admission("https://evil.example.org", "alice")
    assert not sessions.admitted(sessions.user_session_id(alice), other_idp)


def test_make_serve_generates_an_access_code_once_readable_only_by_the_operator(isolated_cache, monkeypatch):
    code = access_code.ensure_access_code()
    path = isolated_cache / "access.code"
    assert path == access_code.code_path() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(code.replace("-", "")) == 16 and access_code.ensure_access_code() == code  # kept across restarts
    monkeypatch.setenv("TLCORE_ACCESS_CODE", "chosen by the operator")
    assert access_code.ensure_access_code() == "chosen by the operator"


def test_a_wrong_code_is_refused_and_slowed_down(monkeypatch):
    waits = []
    monkeypatch.setattr(access_code.time, "sleep", waits.append)
    assert not access_code.check_access_code("tulip-42")  # no code set: nothing opens the gate
    monkeypatch.setenv("TLCORE_ACCESS_CODE", "tulip-42")
    assert access_code.check_access_code("tulip-42") and access_code.check_access_code("  tulip-42\n")
    assert waits == []  # the right code does not wait
    for wrong in ("tulip-4", "tulip-420", "TULIP-42", "", None):
        assert not access_code.check_access_code(wrong)
    assert waits == [access_code.WRONG_CODE_DELAY] * 5 and access_code.WRONG_CODE_DELAY >= 1
