"""Two users on one server: neither sees the other's photos, settings or models."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import write_image
from tests.ui.conftest import open_page
from tests.ui.test_pages import texts
from tlcore.lab import sessions
from tlcore.lab.workspace import Workspace, new_session_id, valid_session_id


def test_two_sessions_of_the_data_page_do_not_share_data():
    a_sid, b_sid = new_session_id(), new_session_id()
    a = open_page("pages/1_Data.py", a_sid)
    b = open_page("pages/1_Data.py", b_sid)
    assert "No classes yet" in texts(a) and "No classes yet" in texts(b)

    next(x for x in a.button if "sample" in x.label).click().run()
    a.selectbox(key="language_select").select("fr").run()
    assert not a.exception
    assert Workspace.for_session(a_sid).counts() == {"circle": 40, "square": 40, "triangle": 40}

    b.run()  # B's next rerun, after A's changes
    assert not b.exception
    assert "No classes yet" in texts(b)  # still English, still empty
    assert not [s for s in b.selectbox if s.key == "target_class"]
    assert Workspace.for_session(b_sid).classes() == []
    assert Workspace.for_session(b_sid).settings().get("language", "en") == "en"
    assert Workspace.for_session(a_sid).root != Workspace.for_session(b_sid).root
    assert b.query_params["s"] == b_sid and a.query_params["s"] == a_sid


def test_a_new_browser_gets_a_fresh_random_session():
    # A fresh session gets its own random id, never an existing one, signed by this server.
    a = open_page("pages/1_Data.py", new_session_id())
    page = Path(__file__).resolve().parents[2] / "pages" / "1_Data.py"
    fresh = AppTest.from_file(str(page), default_timeout=60).run()  # no ?s= in the address
    assert fresh.query_params["s"] not in ("", a.query_params["s"])
    assert valid_session_id(fresh.query_params["s"]) and len(sessions.folder_name(fresh.query_params["s"])) == 32


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("forge", ["unsigned", "trailing newline", "forged signature", "another server"])
def test_a_link_with_an_id_the_server_did_not_issue_gets_a_new_session(forge, shared_ui_cache, tmp_path, monkeypatch):
    """Session fixation: the sender of a link must not know which workspace the victim fills."""
    known = "0123456789abcdef" * 2  # a folder name the attacker chose (any 32 hex digits used to be a session)
    planted = shared_ui_cache / "sessions" / known
    write_image(planted / "data" / "bait" / "bait_0.png", (200, 30, 30))
    (planted / "settings.json").write_text('{"language": "en"}', encoding="utf-8")
    before = _listing(planted)
    if forge == "unsigned":
        link = known
    elif forge == "trailing newline":
        link = new_session_id() + "\n"  # re.match(...$) used to accept it
    elif forge == "forged signature":
        link = f"{known}.{'ab' * 32}"
    else:  # a real id, signed by another server's key
        with monkeypatch.context() as other:
            other.setenv("TLCORE_CACHE_DIR", str(tmp_path / "other-server"))
            link = new_session_id()
        assert not valid_session_id(link)

    victim = open_page("pages/1_Data.py", link)
    assert not victim.exception
    assert "No classes yet" in texts(victim) and "bait" not in texts(victim)  # not the planted workspace
    next(b for b in victim.button if "sample" in b.label).click().run()  # the victim adds photos
    assert not victim.exception
    sid = victim.query_params["s"]
    assert sid != link and valid_session_id(sid)  # a new id in the address
    assert sessions.folder_name(sid) not in (known, link.split(".")[0].strip())
    assert Workspace.for_session(sid).counts() == {"circle": 40, "square": 40, "triangle": 40}
    assert _listing(planted) == before  # the planted workspace is untouched
    assert not any("\n" in p.name for p in (shared_ui_cache / "sessions").iterdir())


def _load_model_script(run_dir: str) -> None:
    from pathlib import Path

    import streamlit as st

    from ui.frame.models import run_model

    st.session_state["model_id"] = id(run_model(Path(run_dir)))
    st.session_state["same_again"] = run_model(Path(run_dir)) is run_model(Path(run_dir))


def test_each_session_loads_its_own_model(trained):
    _, job = trained
    run_dir = str(job / "run")
    sessions = [AppTest.from_function(_load_model_script, args=(run_dir,), default_timeout=120).run()
                for _ in range(2)]
    for at in sessions:
        assert not at.exception
        assert at.session_state["same_again"]  # cached within the session ...
    first, second = (at.session_state["run_models"] for at in sessions)
    (a,), (b,) = first.values(), second.values()
    assert a is not b  # ... but never shared: one session's model is not another's object
    assert id(a) == sessions[0].session_state["model_id"] and id(b) == sessions[1].session_state["model_id"]
    assert a.classes == b.classes
