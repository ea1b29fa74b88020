r"""The one rule for class names, wherever they come from: "Add class", photo uploads, ZIPs, projects, the CLI.

A class name becomes a folder name, a label in ``labels.txt``, a chart label and a download
name, so it must be harmless in all of them: no path separators or control characters, no
bidirectional overrides that make a label read differently than it is stored (``U+202E`` turns
``cat\u202egnp.exe`` into "catexe.png"), no leading ``-`` that a command line would read as an
option, no leading dot (hidden folders are skipped when a dataset is read) and at most 60
characters.
"""
from __future__ import annotations

import re

from .errors import TLError

__all__ = ["MAX_CLASS_NAME", "check_class_name", "class_name_problem"]

MAX_CLASS_NAME = 60
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def class_name_problem(name) -> str | None:
    """Why ``name`` cannot be a class name, or None when it can (no surrounding-space trimming here)."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_CLASS_NAME:
        return f"it has {len(name)} characters, more than {MAX_CLASS_NAME}"
    bad = _FORBIDDEN.search(name)
    if bad:
        char = bad.group()
        return "it contains a / or \\" if char in "/\\" else f"it contains the invisible or control character U+{ord(char):04X}"
    if name in (".", ".."):
        return "it is a folder reference"
    if name.startswith("."):
        return "it starts with a dot"
    if name.startswith("-"):
        return "it starts with a dash"
    if name != name.strip():
        return "it starts or ends with a space"
    return None


def check_class_name(name) -> str:
    """``name`` with surrounding spaces removed, or :class:`TLError` naming the bad name and why."""
    cleaned = name.strip() if isinstance(name, str) else name
    problem = class_name_problem(cleaned)
    if problem:
        raise TLError(f"class name {name!r} is not allowed: {problem}; use 1-{MAX_CLASS_NAME} characters without "
                      "/ or \\, not starting with a dot or a dash")
    return cleaned
