"""docs/BENCHMARKS.md in sections, one per benchmark script.

Each script owns the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` and replaces only that, so running one benchmark
keeps the others' figures. A section not yet in the file is appended.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"

HEADER = """# Benchmarks

Produced by `make bench`: `scripts/bench_core.py` writes the core and dashboard
section, `scripts/bench_export.py` the export section, `scripts/bench_attack.py` the
adversarial section, `scripts/bench_perf.py` the performance section, `scripts/bench_data_tiers.py`
the data tiers section, `scripts/bench_suggest.py` the labelling help section, `scripts/bench_labels.py` the
suspicious labels section, `scripts/bench_learning_curve.py` the learning curve section and
`scripts/bench_corruptions.py` the everyday corruptions section, `scripts/bench_click_to_done.py` the click to
"Done" after a server start, `scripts/bench_camera.py` the camera recording. Each script replaces only
the text between its own `<!-- bench:... -->` markers; do not edit by hand.
"""


def cpu_description() -> str:
    """The CPU a benchmark ran on, as every section states it: model, usable cores and the flags that decide
    inference speed, read by ``tlcore.io.cpus`` (the one reader of /proc/cpuinfo)."""
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tlcore.io.cpus import REPORTED_FLAGS, cpu_flags, cpu_model, int8_dot_product, usable_cpus

    flags = cpu_flags()
    have = ", ".join(f for f in REPORTED_FLAGS if f in flags) or "none of " + ", ".join(REPORTED_FLAGS)
    dot = "with" if int8_dot_product(flags) else "without"
    return f"{cpu_model()}, {usable_cpus()} cores, flags {have} ({dot} int8 dot products)"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def replace_section(name: str, body: str, doc: Path = DOC, header: str = HEADER) -> str:
    """Put ``body`` between the markers of section ``name`` in ``doc`` (a new file starts with ``header``) and
    return the file's new text."""
    start, end = markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else header
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    text = text.rstrip("\n") + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
    return text
