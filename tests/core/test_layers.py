"""The core's layers import in one direction only, and no module imports itself back through others.

Every import counts, the ones inside functions too: an import deferred to run time is still a dependency, and a
cycle hidden in a function is how a layer ends up needing the one above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "tlcore"

# Lowest first: a module may import its own layer and the ones before it, never one after it (docs/ARCHITECTURE.md).
LAYERS = ["io", "jobs", "data", "backbones", "models", "analysis", "training", "export", "adversarial", "lab", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in CORE.rglob("*.py") if "templates" not in p.parts}


def layer(module: str) -> int:
    """The rank of a module's layer; the package itself (``tlcore``: its version, its log set-up) is below all."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    name = "cli" if parts[1] in ("cli", "__main__") else parts[1]
    if name not in LAYERS:
        raise AssertionError(f"{module} is in no layer; put it in one of {', '.join(LAYERS)}")
    return LAYERS.index(name)


def imports_of(module: str) -> set[str]:
    """Every tlcore module that ``module`` imports, at the top or inside a function."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != module}
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_against_the_layer_order(module):
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert not upward, f"{module} ({LAYERS[layer(module)] if layer(module) >= 0 else 'tlcore'}) imports {upward}"


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 while on the path, 2 when done
    path: list[str] = []

    def visit(module):
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_walk_sees_deferred_imports():
    # The rules above only mean something if the walk finds imports at all, those inside functions included:
    # the engine converts a backbone with a conversion it imports only when it runs.
    assert "tlcore.io.errors" in GRAPH["tlcore.training.pipeline"]
    assert "tlcore.models.conversion" in GRAPH["tlcore.training.engine"]
    assert "tlcore.backbones.registry" in GRAPH["tlcore.models.run"]


def test_the_core_never_imports_streamlit_or_the_dashboard():
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not [n for n in names if n.split(".")[0] in ("streamlit", "ui", "pages")], module


ROOT = CORE.parent
# Every Python file of the product: the core, the dashboard's helpers and pages.
PRODUCT = sorted([*CORE.rglob("*.py"), *(ROOT / "ui").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"])


def _own_modules(path: Path) -> set[str]:
    """The names under which ``path``'s module knows the product's modules it imports (``import tlcore.x as y``,
    ``from tlcore import x``, ``from . import x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in ("tlcore", "ui")):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in ("tlcore", "ui")}
    return names


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_crosses_a_module_boundary(path):
    """A name starting with ``_`` is its module's own: another module neither imports it nor reaches it through
    a module it imported (what a test may do, the product may not)."""
    own = _own_modules(path)
    crossing = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in ("tlcore", "ui")):
            crossing += [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and isinstance(node.value, ast.Name) and node.value.id in own):
            crossing.append(f"{node.value.id}.{node.attr}")
    assert not crossing, f"{path.relative_to(ROOT)} uses another module's private {crossing}"


def test_import_tlcore_gives_its_public_names_without_tensorflow():
    import subprocess
    import sys

    script = ("import sys, tlcore; loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
              "print(loaded, sorted(n for n in tlcore.__all__ if not n.startswith('_')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("[] ")  # nothing heavy at import time
    import tlcore

    assert tlcore.TrainConfig.__module__ == "tlcore.training.config" and callable(tlcore.train)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tlcore.nope  # noqa: B018
