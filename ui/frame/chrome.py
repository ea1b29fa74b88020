"""Streamlit's own words in the session's language: the file uploader's and the camera's texts.

Streamlit writes a few texts of its widgets itself, in English, and offers no way to change them (its issue
13500 asks for one). For another language, a style sheet hides each of them (``display: none`` or
``visibility: hidden``, so that they are neither seen nor read aloud nor in the page's text) and draws the
catalog's text in its place with ``::after``. English keeps Streamlit's own texts.
"""
from __future__ import annotations

from ui.frame.i18n import ENGLISH

__all__ = ["WIDGET_TEXTS", "widget_texts_css"]

# The catalog's keys are widget.<name>.
WIDGET_TEXTS = ("upload", "drop", "camera_note", "take_photo")

# Streamlit's markup (1.67): the uploader's button and its size hint; the camera's permission note and button.
_UPLOAD = "[data-testid=stFileUploaderDropzone] button"
_HINT = "[data-testid=stFileUploaderDropzoneInstructions]"
_CAMERA_NOTE = "[data-testid=stCameraInputWebcamComponent] > div:not([hidden])"
_CAMERA_BUTTON = "[data-testid=stCameraInputButton]"


def _css_string(text: str) -> str:
    """``text`` as a CSS string: quotes and backslashes escaped, line breaks and ``<`` as CSS escapes (so that no
    text can end the string or the ``<style>`` element early)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\a ").replace("<", "\\3c ")
    return f'"{escaped}"'


def widget_texts_css(lang: str, texts) -> str:
    """The ``<style>`` that replaces Streamlit's English widget texts with ``texts`` (key -> text: ``upload``,
    ``drop``, ``camera_note``, ``take_photo``) for ``lang``; empty for English."""
    if lang == ENGLISH:
        return ""
    upload, drop = _css_string(texts["upload"]), _css_string(texts["drop"])
    note, take = _css_string(texts["camera_note"]), _css_string(texts["take_photo"])
    return f"""<style>
{_UPLOAD} [data-testid=stMarkdownContainer] {{ display: none; }}
{_UPLOAD} > div > span::after {{ content: {upload}; }}
{_HINT} > div {{ display: none; }}
{_HINT}::after {{ content: {drop}; font-size: 0.875rem; opacity: 0.7; }}
{_CAMERA_NOTE} > p {{ display: none; }}
{_CAMERA_NOTE}::after {{ content: {note}; padding: 1rem; text-align: center; }}
{_CAMERA_BUTTON} {{ visibility: hidden; position: relative; }}
{_CAMERA_BUTTON}::after {{ visibility: visible; content: {take}; position: absolute; inset: 0; display: flex;
  align-items: center; justify-content: center; background: inherit; border: inherit; border-radius: inherit;
  color: inherit; }}
</style>"""
