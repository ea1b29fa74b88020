"""Data: classes and photos (upload, ZIP, webcam, sample), counts, split settings and the dataset's health."""
import time

import streamlit as st

from tlcore.data.advice import data_tier, tier_values
from ui.views import health as health_view
from ui.views.suggest import show_labelling_help
from ui.views import labels as label_view
from tlcore.io.settings import setting_info
from ui.views.camera import RecordConfig, camera_recorder
from ui.views.photos import show_class_photos
from ui.frame import state
from ui.frame.layout import guard, t
from ui.views.page import setup

NEAR_FULL = 0.9  # share of the session cap from which the page warns

setup("data.title")
ws = state.workspace()
st.write(t("data.intro", **tier_values()))

# Actions that change the photos rerun the page and say what they did on the next run: the sidebar's
# checklists are drawn before this point and would otherwise show the photos as they were.
with guard():
    if st.button(t("data.sample"), icon=":material/science:"):
        ws.load_sample()
        counts = ws.counts()
        st.session_state["sample_done"] = (sum(counts.values()), len(counts), data_tier(counts))
        st.rerun()
    if "sample_done" in st.session_state:
        # Said in the tiers every other data advice uses: the sample is described like the user's own photos.
        n, k, where = st.session_state.pop("sample_done")
        st.success(t("data.sample_done", n=n, k=k, per_class=where["photos"], tier=t(f"tier.{where['tier']}")))

left, right = st.columns([1, 1])
with left, guard():
    with st.form("new_class", clear_on_submit=True, border=False):
        name = st.text_input(t("data.new_class"))
        if st.form_submit_button(t("data.add_class")) and name.strip():
            ws.add_class(name)
with right, guard():
    zip_file = st.file_uploader(t("data.upload_zip"), type=["zip"], key="zip_upload")
    if zip_file is not None and st.session_state.get("zip_done") != zip_file.file_id:
        added, rejected = ws.add_zip(zip_file.getvalue())
        st.session_state["zip_done"] = zip_file.file_id  # a rerun must not add the same ZIP twice
        st.session_state["last_zip"] = (len(added), rejected)
        st.rerun()
    if "last_zip" in st.session_state:
        n, rejected = st.session_state.pop("last_zip")
        st.success(t("data.added", n=n))
        if rejected:
            st.warning(t("data.rejected", n=len(rejected)))
            st.dataframe(rejected, hide_index=True)

classes = ws.classes()
if classes:
    with guard():
        target = st.selectbox(t("data.target_class"), classes, key="target_class")
        up, cam = st.columns([1, 1])
        with up:
            files = st.file_uploader(t("data.upload"), accept_multiple_files=True,
                                     key=f"files_{st.session_state.get('upload_round', 0)}")
            if files and st.button(t("data.add_files")):
                added, rejected = ws.add_files(target, [(f.name, f.getvalue()) for f in files])
                st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
                st.session_state["last_upload"] = (len(added), rejected)
                st.rerun()
        with cam:
            st.write(t("data.camera", name=target))
            rate = st.select_slider(t("camera.rate"), setting_info(RecordConfig, "frames_per_second").offered,
                                    value=RecordConfig.frames_per_second, key="camera_rate")
            recording = camera_recorder("camera_recorder", RecordConfig(frames_per_second=rate))
            if recording is not None and recording.bad:
                st.error(t("camera.bad"))
            elif recording is not None and recording.error:
                st.warning(t(f"camera.error_{recording.error}"))
            elif recording is not None and state.first_sight_of_recording(recording.batch):
                stamp = time.strftime("%Y%m%d-%H%M%S")
                added, rejected = ws.add_files(target, [(f"camera_{stamp}_{i:03d}.jpg", frame)
                                                        for i, frame in enumerate(recording.frames)])
                st.session_state["last_upload"] = (len(added), rejected)
                st.rerun()
        if "last_upload" in st.session_state:
            n, rejected = st.session_state.pop("last_upload")
            st.success(t("data.added", n=n))
            if rejected:
                st.warning(t("data.rejected", n=len(rejected)))
                st.dataframe(rejected, hide_index=True)

with guard():  # a bad TLCORE_MAX_SESSION_MB is one sentence, like every other setting
    quota = ws.quota()
    st.caption(t("data.quota", used=quota["used_mb"], session=quota["session_mb"], file=quota["file_mb"]))
    if quota["used_mb"] >= quota["session_mb"]:  # photos, runs, exports and projects all count: say how to free room
        st.error(t("disk.over", used=quota["used_mb"], session=quota["session_mb"]))
    elif quota["used_mb"] >= NEAR_FULL * quota["session_mb"]:
        st.warning(t("disk.near", used=quota["used_mb"], session=quota["session_mb"]))

st.subheader(t("data.classes"))
counts = ws.counts()
if not counts:
    st.info(t("data.empty"))
else:
    for name in counts:
        with st.expander(f"{name} ({counts[name]})"), guard():
            show_class_photos(ws, name)
            if st.button(t("data.remove_class", name=name), key=f"rmc_{name}", type="secondary"):
                ws.remove_class(name)
                st.rerun()

with guard():
    show_labelling_help(ws)  # unlabelled photos, a run's suggestions, the chosen ones added to their classes

st.subheader(t("data.split"))
train_pct, val_pct, test_pct, seed = state.split()
c1, c2, c3, c4 = st.columns(4)
train_pct = c1.number_input(t("data.train_pct"), 1, 98, train_pct)
val_pct = c2.number_input(t("data.val_pct"), 0, 98, val_pct)
test_pct = c3.number_input(t("data.test_pct"), 0, 98, test_pct)
seed = c4.number_input(t("data.seed"), 0, 10**6, seed)
st.caption(t("data.split_help"))
if train_pct + val_pct + test_pct != 100:
    st.error(t("data.split_bad", total=train_pct + val_pct + test_pct))
elif (train_pct, val_pct, test_pct, seed) != state.split():
    state.set_split(int(train_pct), int(val_pct), int(test_pct), int(seed))

st.subheader(t("health.title"))
st.caption(t("health.intro"))
with guard():
    report = health_view.dataset_report(ws, state.split())
    if report is None:
        st.info(t("health.need_two"))
    else:
        health_view.show_report(report, ws)

with guard():
    label_view.show_label_check(ws)
