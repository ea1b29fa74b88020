"""The Predict page's live camera (issue 21, item 2): frames a browser sends are checked, the server answers new
ones with the run's probabilities, and the page offers the live view with the right runtime named."""
from __future__ import annotations

import base64

import pytest

from tests.ui.conftest import open_page
from tests.ui.test_camera import b64, jpeg
from tlcore.models.run import load_run
from ui.frame.i18n import translate
from ui.views.live import read_frame, server_answer


@pytest.mark.parametrize("value", [None, "x", {"frame": b64(jpeg())}, {"frame": 3, "n": 1}, {"n": 1},
                                   {"frame": "%%%", "n": 1}, {"frame": b64(jpeg()), "n": "1"},
                                   {"frame": "A" * (4 * 1024 * 1024), "n": 1}, {"error": "denied"}],
                         ids=lambda v: repr(v)[:30])
def test_only_a_frame_of_the_right_shape_is_taken(value):
    assert read_frame(value, 0) is None


def test_a_frame_is_taken_once():
    data = jpeg()
    assert read_frame({"frame": base64.b64encode(data).decode(), "n": 3}, 2) == (3, data)
    assert read_frame({"frame": base64.b64encode(data).decode(), "n": 3}, 3) is None  # answered already


def test_the_server_answers_each_new_frame_with_the_runs_probabilities(trained):
    _, job = trained
    model = load_run(job / "run")
    red, blue = (b64(jpeg(colour, (80, 60))) for colour in ((220, 30, 30), (30, 30, 220)))
    first = server_answer({"frame": red, "n": 1}, None, model, len(model.classes))
    assert first["n"] == 1 and len(first["probabilities"]) == len(model.classes)
    assert sum(first["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert server_answer({"frame": red, "n": 1}, first, model, 2) is first  # the same frame: not predicted again
    second = server_answer({"frame": blue, "n": 2}, first, model, len(model.classes))
    assert second["n"] == 2 and second["probabilities"] != first["probabilities"]
    broken = server_answer({"frame": b64(b"not a photo"), "n": 3}, second, model, len(model.classes))
    assert broken == {"n": 3, "probabilities": [0.0] * len(model.classes)}


def test_the_live_camera_is_offered_and_says_where_it_runs(trained):
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    assert not at.exception and at.toggle(key="predict_live").value is False
    at.toggle(key="predict_live").set_value(True).run()
    assert not at.exception
    # No ONNX export of this run yet: the server classifies, and the page says how to run it in the browser.
    assert translate("predict.live_server") in [c.value for c in at.caption]
    assert not [c for c in at.get("camera_input")]  # one camera at a time: the live view has it


# The demo page (issue 21, item 3) ----------------------------------------------------------------------------------

def test_the_demo_page_makes_a_link_that_shows_that_run_alone_in_another_session(trained, sid):
    from streamlit.testing.v1 import AppTest

    from tests.ui.conftest import ROOT
    from tlcore.lab.demos import find_demo

    owner, job = trained
    at = open_page("pages/10_Demo.py", owner)
    assert not at.exception
    assert not at.get("code")  # no link until one is asked for
    next(b for b in at.button if b.label == translate("demo.make_link")).click().run()
    assert not at.exception
    link = at.get("code")[0].value
    token = link.split("d=")[1]
    assert "/Demo?d=" in link and owner not in link  # the session's id never leaves in a link
    assert find_demo(token).run_dir == (job / "run").resolve()
    assert len(at.get("image")) >= 1  # the QR code

    phone = AppTest.from_file(str(ROOT / "pages/10_Demo.py"), default_timeout=60)
    phone.query_params["s"] = sid  # another browser: its own session
    phone.query_params["d"] = token
    phone.run()
    assert not phone.exception and not phone.error
    assert not phone.selectbox  # no run to choose, nothing of the owner's session but this run's camera
    assert not [b for b in phone.button if b.label == translate("demo.make_link")]

    next(b for b in at.button if b.label == translate("demo.end")).click().run()
    phone.run()
    assert [e.value for e in phone.error] == [translate("demo.gone")]


def test_a_made_up_demo_link_is_one_sentence(sid):
    from streamlit.testing.v1 import AppTest

    from tests.ui.conftest import ROOT

    at = AppTest.from_file(str(ROOT / "pages/10_Demo.py"), default_timeout=60)
    at.query_params["s"] = sid
    at.query_params["d"] = "0" * 32
    at.run()
    assert not at.exception and [e.value for e in at.error] == [translate("demo.gone")]
