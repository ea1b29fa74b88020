"""Grad-CAM on the Predict page: a heat map wider than the photo's column, with its colour scale labelled."""
from __future__ import annotations

from tests.ui.conftest import copy_of_trained, open_page
from tests.ui.test_pages import png


def columns_of(node, weights=()) -> list[tuple[tuple[float, ...], object]]:
    """Every element under ``node`` with the weights of the columns it sits in, outermost first."""
    found = []
    for child in (getattr(node, "children", None) or {}).values():
        inner = weights + (child.proto.weight,) if getattr(child, "type", None) == "column" else weights
        found.append((inner, child))
        found += columns_of(child, inner)
    return found


def test_the_grad_cam_map_is_drawn_large_with_a_low_to_high_scale(trained):
    """Issue 17, item 6: the map was a thumbnail in the photo's third of the page, and no colour scale said how to
    read it."""
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    next(t for t in at.toggle if t.label == "Where the model looks").set_value(True).run()
    assert not at.exception
    elements = columns_of(at.main)
    (heat,) = [(w, e) for w, e in elements if e.type == "image" and "Where the model sees" in str(e.proto)]
    assert heat[0] == (0.6,)  # three fifths of the page, where the photo has a third
    # The scale: a caption, then "low", the colour bar and "high" side by side, in the column beside the map.
    beside = [(w, e) for w, e in elements if w[:1] == (0.4,) and e.type in ("caption", "image")]
    assert [e.value if e.type == "caption" else "bar" for _, e in beside] == [
        "Colour scale: how much each region raises the class's score.", "low", "bar", "high"]


def test_the_scale_is_translated(trained, tmp_path):
    from tlcore.lab.workspace import Workspace

    sid, _ = copy_of_trained(trained, tmp_path)  # the shared session keeps its language
    Workspace.for_session(sid).update_settings(language="fr")
    at = open_page("pages/6_Predict.py", sid)
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    next(t for t in at.toggle if t.label == "Où le modèle regarde").set_value(True).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "faible" in captions and "forte" in captions
