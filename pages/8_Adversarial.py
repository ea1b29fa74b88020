"""Adversarial: an invisible change that fools the model, and how robust the model is."""
from pathlib import Path

import streamlit as st

from tlcore.adversarial.attacks import AttackConfig, attack_image
from tlcore.adversarial.corruptions import corruptions_args
from tlcore.adversarial.defence import HardenConfig, harden_args, robustness_args
from tlcore.analysis.explain import IdealImageConfig, ideal_args
from tlcore.io.errors import TLError
from tlcore.data.images import ImageDecodeError, decode_image, load_image
from tlcore.jobs.folder import job_path
from tlcore.jobs.runner import new_job_dir, start_job
from tlcore.models.run_files import read_run_json, run_classes
from ui.frame import state, widgets
from ui.views.adversarial import show_attack, show_corruptions, show_harden, show_ideal, show_robustness
from ui.frame.layout import choose_run, guard, t
from ui.views.page import setup
from ui.frame.models import run_model

setup("adv.title")
st.write(t("adv.intro"))
ws = state.workspace()
run_dir = choose_run()
classes = []
with guard():
    classes = run_classes(run_dir)
if not classes:  # the run's files could not be read: guard said why
    st.stop()

st.subheader(t("adv.one"))
left, right = st.columns([1, 1])
with left:
    source = st.radio(t("adv.source"), ["data", "upload"], horizontal=True, format_func=lambda s: t(f"adv.source.{s}"))
    photo = None
    if source == "data":
        with guard():
            # Only photos inside this session's workspace (samples.json may be damaged), as the path to open.
            held_out = [{**s, "path": str(path)} for s in read_run_json(run_dir, "samples.json")
                        if s.get("split") in ("test", "val")
                        and (path := job_path(ws.root, s.get("path"), "photo")) is not None and path.is_file()]
            if held_out:
                photo = st.selectbox(t("adv.image"), held_out, format_func=lambda s: f"{s['label']} · {Path(s['path']).name}")
            else:
                st.info(t("adv.no_held_out"))
    else:
        photo = st.file_uploader(t("predict.upload"), type=None, key="adv_upload")
with right:
    method = widgets.choice(st, AttackConfig, "method", t("adv.method"), widget="radio", horizontal=True,
                            format_func=lambda m: t(f"adv.method.{m}"))
    epsilon = widgets.slider(st, AttackConfig, "epsilon", t("adv.epsilon"), step=0.001, format="%.3f",
                             help=t("adv.epsilon_help"))
    steps = widgets.slider(st, AttackConfig, "steps", t("adv.steps")) if method == "pgd" else 1
    target = st.selectbox(t("adv.target"), [None] + classes, format_func=lambda c: t("adv.untargeted") if c is None else c)

if st.button(t("adv.attack"), type="primary", icon=":material/bolt:", disabled=photo is None):
    with guard(), st.spinner(t("adv.working")):
        model = run_model(run_dir)
        if isinstance(photo, dict):
            image, name = load_image(photo["path"], model.input_size), Path(photo["path"]).stem
        else:
            try:
                image, name = decode_image(photo.getvalue(), model.input_size), Path(photo.name).stem
            except ImageDecodeError as exc:
                raise TLError(f"{photo.name}: {exc}") from None
        config = AttackConfig(method=method, epsilon=epsilon, steps=steps,
                              target=None if target is None else classes.index(target))
        result = attack_image(model.model, image, config)
        state.set_attack_result({**result, "original": image, "epsilon": epsilon, "run": str(run_dir),
                                 "file_name": f"{name}_{method}_eps{epsilon:g}.png"})

result = state.attack_result()
if result is not None and result["run"] == str(run_dir):
    show_attack(result, classes)

st.subheader(t("adv.robustness"))
st.write(t("adv.robustness_intro"))
running = state.job_running()
c1, c2 = st.columns(2)
if c1.button(t("adv.measure"), icon=":material/monitoring:", disabled=running):
    with guard():
        job_dir = new_job_dir(ws.jobs_dir, "robustness")
        start_job(job_dir, robustness_args(run_dir), kind="robustness", meta={"parent": str(run_dir)})
        st.rerun()
harden_eps = widgets.ladder(c2, HardenConfig, "epsilon", t("adv.harden_eps"))
harden_corrupt = widgets.flag(c2, HardenConfig, "corruption_augment", t("adv.corrupt.harden"), widget="toggle",
                              help=t("adv.corrupt.harden_help"))
if c2.button(t("adv.harden"), icon=":material/shield:", disabled=running):
    with guard():
        job_dir = new_job_dir(ws.jobs_dir, "harden")
        config = HardenConfig(epsilon=harden_eps, corruption_augment=harden_corrupt)
        start_job(job_dir, harden_args(config, run_dir, job_dir / "run"),
                  kind="harden", meta={"parent": str(run_dir)})
        st.rerun()
if running:
    st.caption(t("train.busy"))

curves = state.jobs_of(run_dir, "robustness")
hardened = state.jobs_of(run_dir, "harden")
if curves:
    show_robustness(curves[0][0])
if hardened:
    st.caption(t("adv.harden_caption"))
    show_harden(hardened[0][0])

st.subheader(t("adv.corrupt"))
st.write(t("adv.corrupt.intro"))
if st.button(t("adv.corrupt.start"), icon=":material/blur_on:", disabled=running):
    with guard():
        job_dir = new_job_dir(ws.jobs_dir, "corruptions")
        start_job(job_dir, corruptions_args(run_dir), kind="corruptions", meta={"parent": str(run_dir)})
        st.rerun()
corrupted = state.jobs_of(run_dir, "corruptions")
if corrupted:
    show_corruptions(corrupted[0][0])

st.subheader(t("adv.ideal"))
st.write(t("adv.ideal_intro"))
i1, i2 = st.columns(2)
ideal_class = i1.selectbox(t("adv.ideal_class"), classes)
ideal_steps = widgets.slider(i2, IdealImageConfig, "steps", t("adv.ideal_steps"), step=10)
if st.button(t("adv.ideal_start"), icon=":material/auto_awesome:", disabled=running):
    with guard():
        job_dir = new_job_dir(ws.jobs_dir, "ideal")
        start_job(job_dir, ideal_args(IdealImageConfig(steps=ideal_steps), run_dir, ideal_class, job_dir / "frames"),
                  kind="ideal", meta={"parent": str(run_dir)})
        st.rerun()
ideals = state.jobs_of(run_dir, "ideal")
if ideals:
    show_ideal(ideals[0][0])
