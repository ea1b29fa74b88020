"""Train: phase 1, a new head on the frozen backbone, with live curves."""
import time
from pathlib import Path

import numpy as np
import streamlit as st

from tlcore.training.alarms import config_alarms
from tlcore.data.augment import AugmentConfig, augment_image
from tlcore.data.images import load_image
from tlcore.training.commands import check_config, train_args
from tlcore.jobs.runner import job_status, new_job_dir, start_job
from tlcore.backbones.registry import get_spec
from tlcore.training.config import TrainConfig
from tlcore.training.learning_curve import LearningCurveConfig
from ui.frame import state, widgets
from ui.views.advice import show_warnings
from ui.views.follow import show_job
from ui.views.learning_curve import show_learning_curve
from ui.frame.layout import guard, t
from ui.views.page import setup

setup("train.title")
st.write(t("train.intro"))
ws = state.workspace()
counts = {c: n for c, n in ws.counts().items() if n}
backbone = state.backbone()
st.caption(t("backbone.chosen", name=backbone))

if len(counts) < 2:
    st.warning(t("no_data"))
else:
    c1, c2, c3, c4 = st.columns(4)
    epochs = widgets.slider(c1, TrainConfig, "epochs", t("train.epochs"))
    batch = widgets.choice(c2, TrainConfig, "batch_size", t("train.batch"))
    lr = widgets.ladder(c3, TrainConfig, "lr", t("train.lr"), format_func=lambda v: f"{v:g}")
    dropout = widgets.slider(c4, TrainConfig, "dropout", t("train.dropout"), step=0.05)
    c1, c2 = st.columns(2)
    class_weights = widgets.choice(c1, TrainConfig, "class_weights", t("alarm.class_weights"), key="class_weights",
                                   format_func=lambda v: t(f"alarm.class_weights.{v}"))
    resample = widgets.choice(c2, TrainConfig, "resample", t("alarm.resample"), key="resample",
                              format_func=lambda v: t(f"alarm.resample.{v}"))
    augment = widgets.flag(st, TrainConfig, "augment", t("train.augment"))
    strength = TrainConfig.augment_strength
    if augment:
        strength = round(widgets.slider(st, TrainConfig, "augment_strength", t("alarm.augment_strength"), step=0.05,
                                        key="augment_strength"), 2)  # 0.3, not 0.30000000000000004, at the alarm's edge
        first = ws.images(next(iter(counts)))[0]
        with guard():
            image = load_image(first, get_spec(backbone).input_size)
            rng = np.random.default_rng(int(time.time()) // 5)  # new samples every few seconds, stable across quick reruns
            look = AugmentConfig(brightness=strength, contrast=strength, saturation=strength)
            st.caption(t("train.preview"))
            st.image([image] + [augment_image(image, rng, look) for _ in range(5)], width=120)
    few = min(counts.values()) < 10  # few-shot data: the step-by-step loop with clipping is the safer default
    with st.expander(t("fewshot.loop"), expanded=few):
        loop = widgets.choice(st, TrainConfig, "loop", t("fewshot.loop"), widget="radio", start="tape" if few else None,
                              horizontal=True, help=t("fewshot.loop.help"), format_func=lambda v: t(f"fewshot.loop.{v}"),
                              key="loop", label_visibility="collapsed")
        clip = loop == "tape" and st.checkbox(t("fewshot.clip"), value=True, help=t("fewshot.clip.help"))
        clip_norm = widgets.number(st, TrainConfig, "clip_norm", t("fewshot.clip_norm")) if clip else None
    # The same alarms training will report, while the settings can still be changed.
    show_warnings(config_alarms(TrainConfig(backbone=backbone, epochs=epochs, batch_size=batch, lr=lr, dropout=dropout,
                                            class_weights=class_weights, resample=resample, augment=augment,
                                            augment_strength=strength), counts))

    running = state.job_running()
    if st.button(t("train.start"), type="primary", icon=":material/play_arrow:", disabled=running):
        with guard():
            train_pct, val_pct, test_pct, seed = state.split()
            config = TrainConfig(backbone=backbone, epochs=epochs, batch_size=batch, lr=lr, dropout=dropout,
                                 split=(train_pct / 100, val_pct / 100, test_pct / 100), seed=seed,
                                 class_weights=class_weights, resample=resample, loop=loop,
                                 clip_norm=float(clip_norm) if clip_norm else None, augment=augment,
                                 augment_strength=strength if augment else TrainConfig.augment_strength)
            check_config(config)  # a refused setting leaves no job folder behind
            job_dir = new_job_dir(ws.jobs_dir, "run")
            data = ws.snapshot(job_dir / "data")
            start_job(job_dir, train_args(config, data, job_dir / "run"), kind="train")
            state.set_current_job(job_dir)
            st.rerun()
    if running:
        st.caption(t("train.busy"))

job = state.current_job()
if job is not None:
    show_job(job)

jobs = state.training_jobs()
if jobs:
    st.subheader(t("train.runs"))
    labels = {str(j): f"{j.name} · {t('train.status.' + job_status(j)['status'])}" for j in jobs}
    selected = st.radio(t("train.runs"), list(labels), format_func=labels.get, label_visibility="collapsed",
                        index=list(labels).index(str(job)) if job is not None and str(job) in labels else 0)
    if job is None or selected != str(job):
        state.set_current_job(Path(selected))
        st.rerun()

if len(counts) >= 2:
    # Will more photos help? The same backbone, split and head as training, on shares of the training photos.
    train_pct, val_pct, test_pct, seed = state.split()
    show_learning_curve(ws, LearningCurveConfig(backbone=backbone, epochs=epochs, seed=seed,
                                                split=(train_pct / 100, val_pct / 100, test_pct / 100)))
