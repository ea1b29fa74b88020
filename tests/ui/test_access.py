"""Only invited people get in (issue 14, item 9): with an access code set, or single sign-on configured,
every page shows only the gate until the browser passes it, and the id in the address then proves it."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import seed_lite0_engine, write_image
from tests.ui.browser import browser_page, dashboard, missing_browser_reason, wait_idle
from tests.ui.conftest import ROOT, open_page, shown
from tlcore.lab import sessions
from tlcore.lab.workspace import Workspace, new_session_id

CODE = "okapi-tulip-9314"
PAGES = ["app.py"] + sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py"))
SECRETS = ("okapi_secret", "zebra_secret", "run-planted-4471")  # what the planted session holds
GATE_TITLE = "Transfer Lab: sign in"
WRONG = "That access code is not the right one; check it with the organiser and try again."
# Everything the gate may draw: nothing else (no image, table, chart, download, sidebar) is allowed on it.
GATE_ELEMENTS = {"title", "markdown", "text_input", "button", "error", "form"}


@pytest.fixture
def no_code(monkeypatch):
    monkeypatch.delenv("TLCORE_ACCESS_CODE", raising=False)


@pytest.fixture
def planted(no_code, shared_ui_cache) -> str:
    """A session made before the operator set a code: photos in two classes, a job folder, settings."""
    sid = new_session_id()
    ws = Workspace.for_session(sid)
    for name, colour in zip(SECRETS[:2], ((200, 30, 30), (30, 30, 200))):
        for i in range(3):
            write_image(ws.data_dir / name / f"{name}_{i}.png", colour)
    (ws.jobs_dir / SECRETS[2]).mkdir()
    ws.update_settings(backbone="mobilenet_v3_small", language="en")
    return sid


@pytest.fixture
def code(planted, monkeypatch) -> str:
    monkeypatch.setenv("TLCORE_ACCESS_CODE", CODE)
    return CODE


def _elements(at):
    """(type, text) of every element of the page, main area and sidebar, however deeply nested."""
    found = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None and node.type not in ("main", "sidebar", "event", "bottom"):
            found.append((node.type, str(proto)))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def _folders(cache: Path) -> set[str]:
    return {p.name for p in (cache / "sessions").iterdir()}


def _enter(at: AppTest, code: str) -> AppTest:
    at.text_input[0].input(code)
    return at.button[0].click().run()


def _assert_only_the_gate(at: AppTest) -> None:
    assert not at.exception
    assert [t.value for t in at.title] == [GATE_TITLE]
    elements = _elements(at)
    assert {kind for kind, _ in elements} <= GATE_ELEMENTS, elements
    shown = "\n".join(text for _, text in elements)
    for secret in SECRETS + ("mobilenet", "Data page"):
        assert secret not in shown
    assert not at.sidebar.children or not _elements(at.sidebar)


@pytest.mark.parametrize("page", PAGES)
def test_with_a_code_every_page_shows_only_the_gate(page, planted, code, shared_ui_cache):
    before = _folders(shared_ui_cache)
    at = open_page(page, planted)  # the planted session's own address, from before the code was set
    _assert_only_the_gate(at)
    fresh = AppTest.from_file(str(ROOT / page), default_timeout=60).run()  # no address at all
    _assert_only_the_gate(fresh)
    assert _folders(shared_ui_cache) == before  # no workspace is made for a browser that has not passed
    assert "s" not in fresh.query_params


def test_a_direct_page_address_is_gated_through_the_navigation(planted, code):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["s"] = planted
    at.run()
    at.switch_page("pages/1_Data.py").run()  # as a browser opening .../Data?s=...
    _assert_only_the_gate(at)
    # That the code then leads to the page asked for is checked in the browser (test_the_gate_in_a_browser):
    # AppTest drops a form's submission on a switched page when the app has a pages/ folder.


def test_a_wrong_code_is_one_sentence_and_shows_nothing(planted, code):
    at = open_page("pages/1_Data.py", planted)
    _enter(at, "okapi-tulip-9315")
    _assert_only_the_gate(at)
    assert [shown(e.value) for e in at.error] == [WRONG]
    _enter(at, "")
    assert [shown(e.value) for e in at.error] == [WRONG]


def test_the_right_code_opens_the_page_and_the_address_then_needs_no_code(planted, code, shared_ui_cache):
    at = open_page("pages/1_Data.py", planted)
    _enter(at, code)
    assert not at.exception
    assert at.title[0].value == "1 · Data"
    admitted = at.query_params["s"]
    assert admitted != planted  # re-signed for the code ...
    assert sessions.folder_name(admitted) == sessions.folder_name(planted)  # ... same workspace: nothing lost
    assert at.selectbox(key="target_class").options == list(SECRETS[:2])

    later = open_page("pages/1_Data.py", admitted)  # a refresh, a bookmark, a restart: no code asked again
    assert not later.exception and later.title[0].value == "1 · Data"
    assert later.query_params["s"] == admitted
    assert later.selectbox(key="target_class").options == list(SECRETS[:2])
    assert GATE_TITLE not in [t.value for t in later.title]


def test_an_id_admitted_under_an_old_code_asks_for_the_new_one(planted, code, monkeypatch):
    at = open_page("pages/1_Data.py", planted)
    admitted = _enter(at, code).query_params["s"]
    monkeypatch.setenv("TLCORE_ACCESS_CODE", "a-new-code-for-day-two")
    _assert_only_the_gate(open_page("pages/1_Data.py", admitted))


def test_a_made_up_id_gets_a_new_session_after_the_code(planted, code, shared_ui_cache):
    random_part, signature = planted.split(".")
    forged = f"{random_part}.{'0' * 64}"  # the planted folder's name with a signature the server did not make
    before = _folders(shared_ui_cache)
    at = open_page("pages/1_Data.py", forged)
    _assert_only_the_gate(at)
    _enter(at, code)
    assert not at.exception and at.title[0].value == "1 · Data"
    new = at.query_params["s"]
    assert sessions.folder_name(new) != random_part
    assert not [s for s in at.selectbox if s.key == "target_class"]  # an empty workspace: no class to upload to
    assert SECRETS[0] not in "\n".join(text for _, text in _elements(at))
    assert _folders(shared_ui_cache) == before | {sessions.folder_name(new)}


# Single sign-on. There is no identity provider here (no network), so Streamlit's own test seams stand in for
# the sign-in: AppTest.secrets carries an [auth] section and AppTest.user the identity st.user reports.
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
        "client_id": "transfer-lab", "client_secret": "x", "server_metadata_url":
        "https://idp.example.org/.well-known/openid-configuration"}


def _sso(page: str, user: dict, sid: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.secrets["auth"] = AUTH
    at.user = user
    if sid:
        at.query_params["s"] = sid
    return at.run()


@pytest.mark.parametrize("page", ["app.py", "pages/1_Data.py", "pages/9_Runs.py"])
def test_with_sign_in_configured_nobody_signed_in_sees_only_the_gate(page, planted, shared_ui_cache):
    before = _folders(shared_ui_cache)
    at = _sso(page, {"is_logged_in": False}, planted)
    assert not at.exception
    assert [t.value for t in at.title] == [GATE_TITLE]
    assert [b.label for b in at.button] == ["Sign in"]
    shown = "\n".join(text for _, text in _elements(at))
    assert not any(secret in shown for secret in SECRETS)
    assert _folders(shared_ui_cache) == before


def test_each_signed_in_user_gets_their_own_workspace_whatever_link_they_follow(no_code):
    alice = {"is_logged_in": True, "iss": "https://idp.example.org", "sub": "alice-123", "email": "a@example.org"}
    bob = {"is_logged_in": True, "iss": "https://idp.example.org", "sub": "bob-456", "email": "b@example.org"}
    at = _sso("pages/1_Data.py", alice)
    assert not at.exception and at.title[0].value == "1 · Data"
    alice_sid = at.query_params["s"]
    assert "Sign out" in [b.label for b in at.button]
    Workspace.for_session(alice_sid).add_class("alice_private")
    assert _sso("pages/1_Data.py", alice).query_params["s"] == alice_sid  # another browser, same workspace

    at = _sso("pages/1_Data.py", bob, alice_sid)  # Bob follows Alice's link
    assert not at.exception
    assert at.query_params["s"] != alice_sid
    assert "alice_private" not in "\n".join(text for _, text in _elements(at))
    assert sessions.admitted(alice_sid, sessions.user_admission(alice["iss"], alice["sub"]))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(missing_browser_reason() is not None, reason=f"browser test skipped: {missing_browser_reason()}")
def test_the_gate_in_a_browser(tmp_path, tmp_path_factory, monkeypatch):
    """The real server: a page's address with a made-up id shows the gate, the code opens that page, the
    address then works without the code, and the menu offers no Deploy, Rerun or Clear cache."""
    monkeypatch.setenv("TLCORE_ACCESS_CODE", CODE)  # the dashboard inherits the environment
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(cache))  # this process reads the server's key, to check ids
    seed_lite0_engine(tmp_path_factory)  # nothing for the server to prepare: this test starts no job
    with dashboard(cache, jobs=False) as base, browser_page() as page:
        page.goto(f"{base}/Data?s=0123456789abcdef0123456789abcdef")
        page.wait_for_selector(f"text={GATE_TITLE}")
        wait_idle(page)
        assert "Your classes" not in page.inner_text("body")
        page.fill("input[type=password]", "not-the-code")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"text={WRONG}")
        page.fill("input[type=password]", CODE)
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Your classes")  # the Data page, as the address asked
        wait_idle(page)
        admitted = page.url.split("s=")[-1]
        assert sessions.folder_name(admitted) != "0123456789abcdef0123456789abcdef"
        assert [p.name for p in (cache / "sessions").iterdir()] == [sessions.folder_name(admitted)]

        page.goto(f"{base}/Runs?s={admitted}")  # a bookmark, in a new browser session: no code asked
        page.wait_for_selector("text=9 · Runs")
        wait_idle(page)
        assert GATE_TITLE not in page.inner_text("body")

        assert page.locator("[data-testid=stAppDeployButton]").count() == 0
        page.locator("[data-testid=stMainMenu]").click()
        menu = page.locator("[data-testid=stMainMenuList]").inner_text()
        assert "Print" in menu and "Rerun" not in menu and "Clear cache" not in menu
