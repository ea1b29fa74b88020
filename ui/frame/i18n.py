"""The dashboard's texts: one JSON file per language in ``ui/locales/``, ``<code>.json``, key -> text.

``en.json`` is the reference: every other language file has exactly its keys, plus the translations of
``tlcore``'s texts described below (``tests/ui/test_i18n.py`` lists what is missing or extra). Adding a
language is adding one file, named after the language's code; its ``"language.name"`` is what the language
menu shows.

English has one home per text. The texts the dashboard shows as ``tlcore`` returns them (today the
diagnosis remedies, ``tlcore.analysis.diagnosis.REMEDIES``) are written in English in ``tlcore`` only: the
CLI speaks English, and ``tlcore`` never reads the dashboard's files. So English is ``en.json`` plus those
texts of ``tlcore``'s, and every other language translates both: its file also has ``diag.<code>.remedies``
for each diagnosis code, one line per remedy in ``tlcore``'s order, which ``en.json`` does not have.

Each file is read once per process (a language added while the server runs appears after a restart).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

__all__ = ["ENGLISH", "LANGUAGES", "LOCALES", "catalog", "translate"]

# Where the language files are read from; a module attribute so that a test can point it at a folder of its own.
LOCALES = Path(__file__).resolve().parents[1] / "locales"  # ui/locales
ENGLISH = "en"
_NAME_KEY = "language.name"
_EMPTY: Mapping[str, str] = MappingProxyType({})


@functools.lru_cache(maxsize=None)
def _files(folder: Path) -> dict[str, Path]:
    """The language files of ``folder`` by code: English first (the menu's default), then by code."""
    codes = sorted((path.stem for path in folder.glob("*.json")), key=lambda code: (code != ENGLISH, code))
    return {code: folder / f"{code}.json" for code in codes}


@functools.lru_cache(maxsize=None)
def _read(path: Path) -> Mapping[str, str]:
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError covers bad JSON and bad UTF-8
        raise ValueError(f"The language file {path} cannot be read as JSON ({exc}).") from None
    if not isinstance(texts, dict) or not all(isinstance(text, str) for text in texts.values()):
        raise ValueError(f"The language file {path} must be one JSON object whose values are all texts.")
    # Read-only: the cached texts are shared by every session of the process.
    return MappingProxyType(texts)


@functools.lru_cache(maxsize=None)
def _names(folder: Path) -> dict[str, str]:
    return {code: _read(path).get(_NAME_KEY, code) for code, path in _files(folder).items()}


class _Languages(Mapping):
    """Code -> name of each language in :data:`LOCALES`, English first, looked up on use rather than at import
    so that it always agrees with :func:`translate` (also when a test points :data:`LOCALES` elsewhere)."""

    def __getitem__(self, code: str) -> str:
        return _names(LOCALES)[code]

    def __iter__(self) -> Iterator[str]:
        return iter(_names(LOCALES))

    def __len__(self) -> int:
        return len(_names(LOCALES))

    def __repr__(self) -> str:
        return repr(_names(LOCALES))


LANGUAGES: Mapping[str, str] = _Languages()


def catalog(lang: str = ENGLISH) -> Mapping[str, str]:
    """Every text of language ``lang`` (read-only, key -> text, in its file's order).

    Empty for a language without a file. ``key in catalog()`` tells whether the dashboard has a text for
    ``key`` (English has every key but the translations of ``tlcore``'s texts, see the module's docstring);
    ``key in catalog(lang)`` whether ``lang`` has it.
    Raises ``ValueError`` (one sentence) if the file is not a JSON object of texts.
    """
    path = _files(LOCALES).get(lang)
    return _read(path) if path is not None else _EMPTY


def translate(key: str, lang: str = ENGLISH, **values) -> str:
    """The text ``key`` in language ``lang``, formatted with ``values``.

    A language without a file, or without ``key``, falls back to English, and a key English lacks too
    comes back as the key itself, so a missing text never breaks a page. ``str.format(**values)``
    is applied only when values are given, so a text without placeholders may hold braces.
    """
    text = catalog(lang).get(key)
    if text is None:
        text = catalog(ENGLISH).get(key, key)
    return text.format(**values) if values else text
