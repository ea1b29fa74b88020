"""The Data page's dataset health section: a planted copy is shown, and one click removes it."""
from __future__ import annotations

import numpy as np

from tests.conftest import make_image_folder, write_image
from tests.ui.conftest import open_page, shown
from tests.ui.test_pages import texts
from tlcore.data.health import check_dataset


def _pairs(ws):
    return [(str(p), c) for c in ws.classes() for p in ws.images(c)]


def _seed_where(ws, leaking: bool) -> int:
    """A split seed under which the planted copy crosses splits (``leaking``) or stays in one split."""
    for seed in range(50):
        report = check_dataset(_pairs(ws), split=(0.5, 0.3, 0.2), seed=seed)
        if bool(report["leaks"]) == leaking and report["duplicates"]:
            return seed
    raise AssertionError("no such seed")


def _plant_copy(ws):
    make_image_folder(ws.data_dir, n_per_class=8, size=40)
    (ws.data_dir / "red" / "red_copy.png").write_bytes((ws.data_dir / "red" / "red_0.png").read_bytes())


def test_a_leak_is_shown_as_an_error_and_remove_the_copy_removes_the_one_outside_train(sid, workspace):
    _plant_copy(workspace)
    seed = _seed_where(workspace, leaking=True)
    workspace.update_settings(split=[50, 30, 20], seed=seed)
    leak = check_dataset(_pairs(workspace), split=(0.5, 0.3, 0.2), seed=seed)["leaks"][0]
    kept, copy = leak["a"]["path"], leak["b"]["path"]  # b is the one outside train: original or planted copy
    before = {p.name for p in workspace.images("red")}
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    leaks = [shown(e.value) for e in at.error if "exact copy" in shown(e.value)]
    assert len(leaks) == 1 and leaks[0].startswith(f"red/{copy.rsplit('/', 1)[1]} ")
    at.button(key=f"health_leak_0_red/{copy.rsplit('/', 1)[1]}").click().run()
    assert not at.exception
    assert {p.name for p in workspace.images("red")} == before - {copy.rsplit("/", 1)[1]}
    assert (workspace.data_dir / "red" / kept.rsplit("/", 1)[1]).is_file()
    assert not [e for e in at.error if "exact copy" in shown(e.value)]
    assert "No copies, leaks, imbalance or capture bias found." in texts(at)


def test_a_copy_within_one_split_can_be_removed_keeping_one(sid, workspace):
    _plant_copy(workspace)
    workspace.update_settings(split=[50, 30, 20], seed=_seed_where(workspace, leaking=False))
    at = open_page("pages/1_Data.py", sid)
    assert "1 group(s) of copies inside one split" in texts(at)
    keep = next(b for b in at.button if shown(b.label).startswith("Keep red/"))
    assert keep.label.endswith("remove 1 cop(ies)")
    keep.click().run()
    assert not at.exception
    assert len(workspace.images("red")) == 8
    assert "group(s) of copies" not in texts(at)


def test_counts_imbalance_and_capture_bias_are_drawn_in_french_too(sid, workspace):
    rng = np.random.default_rng(0)
    for i in range(12):
        write_image(workspace.data_dir / "cats" / f"{i}.png", (200, 40, 40), 48, rng)
    for i in range(6):
        write_image(workspace.data_dir / "dogs" / f"{i}.jpg", (40, 40, 200), 48, rng, fmt="JPEG")
    workspace.update_settings(language="fr")
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    page = texts(at)
    assert "Les classes sont déséquilibrées : cats a 12 photos et dogs 6 (2.0 pour 1)" in page
    assert "Les fichiers de cats sont surtout en PNG (100%) mais ceux de dogs en JPEG (100%)" in page
    assert "2 classe(s) ont moins de photos que les 25 par classe qui suffisent pour commencer (dogs 6, cats 12)" in page
    assert len(at.get("plotly_chart")) == 1


def test_one_class_asks_for_a_second(sid, workspace):
    make_image_folder(workspace.data_dir, n_per_class=3, classes=("red",), size=40)
    workspace.add_class("blue")  # still empty: not a class to check yet
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert "Add photos to at least two classes to check the dataset." in texts(at)
