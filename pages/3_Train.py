"""Train: phase 1, a new head on the frozen backbone, with live curves."""
import time
from pathlib import Path

import numpy as np
import streamlit as st

from tlcore.augment import augment_image
from tlcore.images import load_image
from tlcore.jobs import job_status, start_job
from tlcore.registry import get_spec
from ui import state
from ui.follow import show_job
from ui.layout import guard, setup, t

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
    epochs = c1.slider(t("train.epochs"), 1, 100, 20)
    batch = c2.selectbox(t("train.batch"), [8, 16, 32, 64], index=2)
    lr = c3.select_slider(t("train.lr"), [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], value=1e-3,
                          format_func=lambda v: f"{v:g}")
    dropout = c4.slider(t("train.dropout"), 0.0, 0.8, 0.2, 0.05)
    if lr > 1e-2:
        st.warning(t("train.lr_high"))
    augment = st.checkbox(t("train.augment"))
    if augment:
        first = ws.images(next(iter(counts)))[0]
        with guard():
            image = load_image(first, get_spec(backbone).input_size)
            rng = np.random.default_rng(int(time.time()) // 5)  # new samples every few seconds, stable across quick reruns
            st.caption(t("train.preview"))
            st.image([image] + [augment_image(image, rng) for _ in range(5)], width=120)

    running = state.job_running()
    if st.button(t("train.start"), type="primary", icon=":material/play_arrow:", disabled=running):
        with guard():
            train_pct, val_pct, test_pct, seed = state.split()
            job_dir = ws.jobs_dir / time.strftime("run-%Y%m%d-%H%M%S")
            data = ws.snapshot(job_dir / "data")
            args = ["train", str(data), "--out", str(job_dir / "run"), "--backbone", backbone,
                    "--epochs", str(epochs), "--batch-size", str(batch), "--lr", str(lr), "--dropout", str(dropout),
                    "--split", f"{train_pct / 100},{val_pct / 100},{test_pct / 100}", "--seed", str(seed)]
            if augment:
                args.append("--augment")
            start_job(job_dir, args, kind="train")
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
