"""What every page and view shares: the text in the session's language, escaping data for Markdown, the error guard, the
run chooser, and the server's log file."""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
from pathlib import Path

import streamlit as st

from tlcore.cli import log_path
from tlcore.io.errors import TLError

from ui.frame import state
from ui.frame.i18n import catalog, translate

__all__ = ["t", "plain", "job_error", "guard", "run_label", "run_kind", "choose_run", "attach_log_file"]

log = logging.getLogger("tlcore.ui")

# The one log file handler of this server process (not user data: every session writes to the same file).
_log_file: list[logging.FileHandler] = []


def attach_log_file() -> Path:
    """Send the "tlcore" loggers to the log file, once per process; returns the file.

    The CLI attaches its own handler per call; the dashboard needs one that lasts,
    so tracebacks that :func:`guard` keeps from users still reach the operator.
    The handler moves if the file changes (``$TLCORE_CACHE_DIR`` is set per test).
    """
    path = log_path()
    if _log_file and Path(_log_file[0].baseFilename) == path.absolute():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:  # an unwritable cache: the page still works, the log goes to Streamlit's console
        return path
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("tlcore")
    for old in _log_file:
        root.removeHandler(old)
        old.close()
    _log_file[:] = [handler]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return path


def t(key: str, **values) -> str:
    """Text ``key`` in the session's language."""
    return translate(key, state.language(), **values)


# Every ASCII punctuation mark, each of which CommonMark lets a backslash escape: simpler and safer than
# tracking which ones Markdown and Streamlit's extensions (``:emoji:``, ``$math$``, ``&amp;``) give a meaning.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text) -> str:
    """``text`` escaped so that Streamlit's Markdown shows it exactly, as typed or as a file had it.

    Texts from users, files and exceptions (a class name ``*cat*``, an error naming ``a\\b``) are
    data, not Markdown: unescaped, the backslash vanishes and ``*cat*`` turns bold.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def job_error(status: dict) -> str:
    """A failed job's one-sentence error (``job_status``), ready for a catalog text shown as Markdown."""
    return plain(status.get("error", ""))


@contextlib.contextmanager
def guard():
    """Show a user error as one ``st.error`` sentence; log anything unexpected, showing only a reference to it."""
    try:
        yield
    except TLError as exc:
        st.error(plain(" ".join(str(exc).split())))
    except Exception as exc:  # noqa: BLE001 - never a traceback in the page
        attach_log_file()  # also when a page used guard() without setup()
        # The page names only a reference: an exception's text can hold server paths or another user's data,
        # and the team is not the operator. The operator finds the traceback in the log by that reference.
        reference = secrets.token_hex(4)
        log.exception("dashboard error [%s]", reference)
        st.error(t("error.internal", ref=reference))


def run_label(run_dir, status: dict) -> str:
    """A short human label for a run: its job name, backbone, status and validation accuracy."""
    result = status.get("result") or {}
    val = result.get("val_accuracy")
    return t("run.label", name=Path(run_dir).parent.name, kind=run_kind(status.get("kind", "train")),
             backbone=result.get("backbone", "?"), accuracy=f"{val:.0%}" if isinstance(val, (int, float)) else "–")


def run_kind(kind) -> str:
    """A kind of run (train, finetune, harden) in the session's language; an unknown one as it was written."""
    return t(f"runs.kind.{kind}") if f"runs.kind.{kind}" in catalog() else str(kind)


def choose_run(label_key: str = "choose_run", required: bool = True) -> Path | None:
    """Pick one of the session's finished runs; when there is none, stop the page with a hint
    (or, when not ``required``, show the hint and return None)."""
    runs = state.finished_runs()
    if not runs:
        st.warning(t("no_run"))
        if not required:
            return None
        st.stop()
    labels = {str(run): run_label(run, status) for run, status in runs}
    return Path(st.selectbox(t(label_key), list(labels), format_func=labels.get, key="run_select"))
