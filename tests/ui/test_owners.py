"""Pages and views read files only through the module that owns each format, and start every setting's widget at
the default its config dataclass defines (no page retypes a default)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.ui.conftest import open_page
from tlcore.adversarial.attacks import AttackConfig
from tlcore.analysis.explain import IdealImageConfig
from tlcore.io.settings import setting_info
from tlcore.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
# The text catalog's loader is the one view that reads a data file of its own (ui/locales).
VIEWS = sorted(p for p in [*ROOT.glob("pages/*.py"), *ROOT.glob("ui/**/*.py"), ROOT / "app.py"]
               if p.name != "i18n.py")


def _calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"import {n}" for n in names if n.split(".")[0] in ("json", "pickle", "csv")]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("read_text", "open", "loads", "load"):
                found.append(f"{name}()")
    return found


@pytest.mark.parametrize("path", VIEWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_or_view_parses_a_file_itself(path):
    """Run folders are read through tlcore.models.run_files, job folders through tlcore.jobs.runner, projects
    through tlcore.lab.project: each checks what it reads once, for every reader."""
    assert _calls(path) == [], f"{path.relative_to(ROOT)} reads a file itself"


def test_the_check_sees_a_page_that_parses_json(tmp_path):
    page = tmp_path / "page.py"
    page.write_text('import json\nconfig = json.loads((run / "config.json").read_text())\n', encoding="utf-8")
    assert _calls(page) == ["import json", "loads()", "read_text()"]


def test_train_page_widgets_start_at_train_config_defaults(trained):
    sid, _ = trained
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    epochs = next(s for s in at.slider if s.label == "Epochs")
    assert (epochs.value, epochs.min, epochs.max) == (TrainConfig.epochs, *setting_info(TrainConfig, "epochs").offered)
    dropout = next(s for s in at.slider if s.label == "Dropout")
    assert dropout.value == pytest.approx(TrainConfig.dropout)
    lr = at.select_slider[0]
    assert lr.value == TrainConfig.lr and tuple(lr.options) == tuple(f"{v:g}" for v in setting_info(TrainConfig, "lr").offered)
    batch = next(s for s in at.selectbox if s.label == "Batch size")
    assert batch.value == TrainConfig.batch_size and tuple(batch.options) == tuple(
        str(v) for v in setting_info(TrainConfig, "batch_size").offered)
    weights = at.selectbox(key="class_weights")
    assert weights.value == TrainConfig.class_weights and len(weights.options) == len(setting_info(
        TrainConfig, "class_weights").choices)


def test_adversarial_page_widgets_start_at_their_configs(trained):
    sid, _ = trained
    at = open_page("pages/8_Adversarial.py", sid)
    assert not at.exception
    epsilon = next(s for s in at.slider if "epsilon" in s.label.lower() or "ε" in s.label)
    assert epsilon.value == pytest.approx(AttackConfig.epsilon)
    assert at.radio[1].value == AttackConfig.method  # the first radio chooses the photo's source
    ideal = at.slider[-1]
    assert (ideal.value, ideal.min, ideal.max) == (IdealImageConfig.steps, *setting_info(IdealImageConfig, "steps").offered)


UI_LAYERS = ["frame", "charts", "views"]  # lowest first; pages and app.py above them all


def _ui_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ui."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ui.")}
    return found


@pytest.mark.parametrize("layer", UI_LAYERS)
def test_the_dashboard_layers_import_downward(layer):
    """ui/frame draws no view, ui/charts are figures only, ui/views never reach a page (docs/ARCHITECTURE.md)."""
    for path in (ROOT / "ui" / layer).glob("*.py"):
        above = sorted(p for p in _ui_imports(path) if p in UI_LAYERS and UI_LAYERS.index(p) > UI_LAYERS.index(layer))
        assert not above, f"{path.relative_to(ROOT)} imports ui.{above}"
    assert not [p for p in (ROOT / "ui").glob("*.py") if p.name != "__init__.py"], "every ui module is in a layer"
