"""docs/RELIABILITY.md and docs/SECURITY.md name tests as proof: each of them must exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


# How many tests each page names at least: a page that lost its proofs (a bad edit, a broken pattern) fails too.
@pytest.mark.parametrize("doc, least", [("RELIABILITY.md", 50), ("SECURITY.md", 60)])
def test_every_test_named_in_the_doc_exists(doc, least):
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) > least
    missing = [f"{file}::{name}" for file, name in named
               if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)]
    assert missing == []
