"""Demo: a run's live camera full screen, the class names large, nothing else; a link and a QR code open the same
demo on a phone (issue 21, item 3). With ``?d=TOKEN`` (a demo link) it shows the run that link names, and only
that (tlcore.lab.demos)."""
from urllib.parse import urlsplit

import streamlit as st

from tlcore.lab.demos import DEMO_HOURS, create_demo, end_demo, find_demo
from ui.frame import access, state
from ui.frame.layout import choose_run, guard, t
from ui.frame.models import run_model
from ui.views.demo import demo_link, qr_png
from ui.views.live import live_camera
from ui.views.page import setup

setup("demo.title", bare=True)
token = st.query_params.get("d")
demo = find_demo(token) if token is not None else None
if token is not None and demo is None:
    st.error(t("demo.gone"))
    st.stop()

stage = st.container()  # the camera and its bars first; the presenter's settings under them
if demo is not None:
    run_dir, onnx = demo.run_dir, demo.onnx
else:
    settings = st.expander(t("demo.settings"), expanded=False)
    with settings:
        run_dir = choose_run()
    onnx = next((p for p in state.exported_models(run_dir) if p.suffix == ".onnx"), None)

with stage, guard():
    model = run_model(run_dir)
    problem = live_camera("demo_live", list(model.classes), onnx, model, large=True)
    if problem:
        st.warning(t(f"camera.error_{problem}"))
    st.caption(t("demo.https"))

if demo is None:  # the presenter's own page: a link for phones, to this run alone
    with settings, guard():
        st.subheader(t("demo.share"))
        shared = find_demo(st.session_state.get("tl_demo_token"))
        if shared is None or shared.run_dir != run_dir.resolve():
            if st.button(t("demo.make_link")):
                st.session_state["tl_demo_token"] = create_demo(state.workspace(), state.session_id(), run_dir, onnx)
                st.rerun()
        else:
            link = demo_link(st.context.url or "", shared.token)  # no address outside a browser (a test)
            left, right = st.columns([1, 2])
            left.image(qr_png(link), width=240)
            right.code(link, language=None)
            right.caption(t("demo.link_scope", hours=DEMO_HOURS))
            if urlsplit(link).hostname in ("localhost", "127.0.0.1", "::1"):
                right.warning(t("demo.localhost"))
            if access.mode() != "open":
                right.caption(t("demo.code"))
            if right.button(t("demo.end")):
                end_demo(shared.token)
                st.session_state.pop("tl_demo_token", None)
                st.rerun()
