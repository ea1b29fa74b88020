"""One rule for class names: every bad name is refused with its name in the message; good ones pass."""
from __future__ import annotations

import pytest

from tlcore.io.errors import TLError
from tlcore.io.names import MAX_CLASS_NAME, check_class_name

BAD = {
    "right-to-left override": "cat\u202egnp.exe",
    "left-to-right embedding": "a\u202ab",
    "pop directional formatting": "a\u202cb",
    "left-to-right isolate": "a\u2066b",
    "pop directional isolate": "a\u2069b",
    "DEL": "dog\x7f",
    "C1 control": "do\x85g",
    "newline": "dog\ncat",
    "NUL": "dog\x00",
    "leading dash": "-rf",
    "dot": ".",
    "dot dot": "..",
    "hidden": ".git",
    "slash": "a/b",
    "backslash": "a\\b",
    "too long": "x" * (MAX_CLASS_NAME + 1),
    "empty": "",
    "only spaces": "   ",
}


@pytest.mark.parametrize("name", list(BAD.values()), ids=list(BAD))
def test_a_bad_class_name_is_refused_naming_it(name):
    with pytest.raises(TLError) as info:
        check_class_name(name)
    message = str(info.value)
    assert message.startswith(f"class name {name!r} is not allowed")
    assert "\n" not in message and "\u202e" not in message  # one line, with the invisible characters escaped


@pytest.mark.parametrize("name", ["cats", "Golden retriever", "chat noir", "猫", "x" * MAX_CLASS_NAME, "a-b", "3"])
def test_good_class_names_pass_unchanged(name):
    assert check_class_name(name) == name


def test_surrounding_spaces_are_trimmed():
    assert check_class_name("  bees ") == "bees"
