"""The gate in front of every page: which browser session may use this server, and as which workspace.

Three modes, chosen by the operator (see the README's "Running it for a team"):

- ``"oidc"``: ``.streamlit/secrets.toml`` has an ``[auth]`` section; people sign in with the
  organisation's identity provider (``st.login``) and each user has one workspace.
- ``"code"``: ``$TLCORE_ACCESS_CODE`` is set (``make serve`` sets it); people enter that code once,
  then the session id in the address is what proves it (refresh and bookmarks do not ask again).
- ``"open"``: neither; for ``make run`` on the local machine.

Until a browser session passes, the page shows only the gate and stops: no photo, run, class
name or download is drawn, and no workspace folder is created.
"""
from __future__ import annotations

import logging

import streamlit as st

from tlcore.lab import sessions
from tlcore.lab.access_code import access_code, check_access_code

from ui.frame.i18n import ENGLISH, LANGUAGES, translate

__all__ = ["mode", "admission", "admitted_session", "gate_language", "sign_out_button"]

log = logging.getLogger("tlcore.ui")

_PASSED = "tl_access_passed"  # the admission this browser session earned by entering the code


def mode() -> str:
    """``"oidc"``, ``"code"`` or ``"open"`` (see the module's docstring)."""
    try:
        if "auth" in st.secrets:
            return "oidc"
    except FileNotFoundError:  # no secrets.toml: Streamlit raises its StreamlitSecretNotFoundError
        pass
    return "code" if access_code() else "open"


def gate_language() -> str:
    """The language of the gate: the browser's if the dashboard has it, else English (the one chosen is kept
    in the workspace, behind the gate)."""
    locale = (st.context.locale or "").lower()  # "fr-FR", "de-AT", "en"
    code = locale.replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else ENGLISH


def _user_admission() -> str | None:
    """The signed-in user's admission, or None when nobody (identifiable) is signed in."""
    user = st.user
    if not user.get("is_logged_in"):
        return None
    subject = user.get("sub") or user.get("email")  # "sub" is the provider's stable id of the person
    return sessions.user_admission(str(user.get("iss") or ""), str(subject)) if subject else None


def admission(current: str | None, candidate: str | None) -> str | None:
    """The id this browser session may use, or None while it has to pass the gate (draws nothing).

    ``current`` (kept in its state) or ``candidate`` (from the address) when admitted; after
    passing the gate, ``candidate`` re-signed (same workspace) if this server issued it, else a
    new id. With single sign-on, the signed-in user's own session whatever link they followed.
    """
    gate = mode()
    if gate == "oidc":
        user = _user_admission()
        return sessions.user_session_id(user) if user is not None else None
    admission_tag = sessions.code_admission(access_code()) if gate == "code" else sessions.OPEN
    for sid in (current, candidate):
        if sessions.admitted(sid, admission_tag):
            return sid
    if gate == "open" or st.session_state.get(_PASSED) == admission_tag:
        # An id issued before the code changed keeps its workspace; a made-up one gets a new session.
        return sessions.reissue(candidate, admission_tag) or sessions.new_session_id(admission_tag)
    return None


def admitted_session(current: str | None, candidate: str | None) -> str:
    """:func:`admission`'s id; until there is one, draws the gate and stops the page (before its own code)."""
    sid = admission(current, candidate)
    if sid is None:
        _show_gate(mode())
        st.stop()
    return sid


def _show_gate(gate: str) -> None:
    lang = gate_language()
    st.set_page_config(page_title="Transfer Lab", page_icon="🔬")
    st.title(translate("access.title", lang))
    if gate == "oidc":
        st.write(translate("access.sso_intro", lang))
        if st.user.get("is_logged_in"):  # signed in, but the provider did not say who
            st.error(translate("access.no_identity", lang))
        elif st.button(translate("access.sign_in", lang), type="primary"):
            try:
                st.login()
            except Exception as exc:  # noqa: BLE001 - e.g. Authlib missing or a bad [auth]: one sentence
                log.exception("sign-in failed")
                st.error(translate("access.sign_in_failed", lang, detail=type(exc).__name__))
        return
    st.write(translate("access.code_intro", lang))
    with st.form("access_form"):
        code = st.text_input(translate("access.code", lang), type="password")
        sent = st.form_submit_button(translate("access.enter", lang), type="primary")
    if sent:
        if check_access_code(code):  # constant time; a wrong code waits (against guessing)
            st.session_state[_PASSED] = sessions.code_admission(access_code())
            st.rerun()
        st.error(translate("access.wrong_code", lang))


def sign_out_button(lang: str) -> None:
    """A "Sign out" button, with single sign-on only (an access code has nothing to sign out of)."""
    if mode() == "oidc" and st.button(translate("access.sign_out", lang), key="sign_out"):
        st.logout()
