"""The Data page's photos of a class: paged (every photo reachable), each removable from any page."""
from __future__ import annotations

from tests.conftest import make_image_folder
from tests.ui.conftest import open_page
from ui.views.photos import PER_PAGE, page_count


def on_page(at, name: str) -> list[str]:
    """The file names of the photos drawn, by their Remove buttons (one under each thumbnail)."""
    prefix = f"rm_{name}_"
    return [b.key.removeprefix(prefix) for b in at.button if (b.key or "").startswith(prefix)]


def test_page_count():
    assert [page_count(n) for n in (0, 1, PER_PAGE, PER_PAGE + 1, 3 * PER_PAGE)] == [1, 1, 1, 2, 3]


def test_every_photo_of_a_class_is_on_one_page_and_one_removed_from_page_two_is_that_one(sid, workspace):
    """Issue 17, item 6: only the first 24 photos of a class could be seen ("168 more not shown")."""
    make_image_folder(workspace.data_dir, n_per_class=PER_PAGE + 6, classes=("red",), size=16)
    names = [p.name for p in workspace.images("red")]
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    page = at.number_input(key="photos_page_red")
    assert (page.value, page.min, page.max) == (1, 1, 2)
    first = on_page(at, "red")
    page.set_value(2).run()
    second = on_page(at, "red")
    assert (len(first), len(second)) == (PER_PAGE, 6)
    assert first + second == names  # each photo once, in order: nothing out of reach
    assert any("of 2: photos 25 to 30 of 30" in c.value for c in at.caption)

    victim = second[3]
    next(b for b in at.button if b.key == f"rm_red_{victim}").click().run()
    assert not at.exception
    assert [p.name for p in workspace.images("red")] == [n for n in names if n != victim]
    assert at.number_input(key="photos_page_red").value == 2  # still on the page the user was on
    assert on_page(at, "red") == [n for n in second if n != victim]

    for name in on_page(at, "red"):  # empty page 2: the page number goes and page 1 is shown
        next(b for b in at.button if b.key == f"rm_red_{name}").click().run()
    assert not at.exception
    assert not [n for n in at.number_input if n.key == "photos_page_red"]
    assert on_page(at, "red") == first
