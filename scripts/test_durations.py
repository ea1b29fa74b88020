"""Write tests/durations.json from a JUnit XML of a `make test` run: seconds per worker group.

    .venv/bin/python -m pytest -n auto --dist loadscope --junitxml=/tmp/suite.xml
    .venv/bin/python scripts/test_durations.py /tmp/suite.xml

The suite's scheduler (tests/conftest.py) starts the longest groups first; these figures only order
the groups, so a stale file costs minutes, never a result.
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import _module_group  # noqa: E402  (the groups are the scheduler's own)


def test_file(classname: str) -> str | None:
    """``tests.core.test_x`` or ``tests.core.test_x.TestClass`` as the file's path from the root."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (ROOT / path).is_file():
            return path
    return None


def group_seconds(junit: Path) -> dict[str, float]:
    seconds: Counter = Counter()
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = test_file(case.get("classname", ""))
        if path:
            seconds[_module_group(f"{path}::x")] += float(case.get("time") or 0)
    return {group: round(s, 1) for group, s in sorted(seconds.items(), key=lambda kv: -kv[1])}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/test_durations.py JUNIT.xml")
    out = ROOT / "tests" / "durations.json"
    out.write_text(json.dumps(group_seconds(Path(sys.argv[1])), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
