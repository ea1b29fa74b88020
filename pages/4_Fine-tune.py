"""Fine-tune: phase 2, unfreeze the backbone's top layers at a low learning rate."""
import json
import time

import streamlit as st

from tlcore.jobs import start_job
from ui import state
from ui.follow import show_job
from ui.layout import choose_run, guard, setup, t
from ui.models import backbone_structure, unfrozen_layers

setup("ft.title")
st.write(t("ft.intro"))
ws = state.workspace()
base = choose_run("ft.base")
config = json.loads((base / "config.json").read_text(encoding="utf-8"))
backbone = config["backbone"]
with guard():
    n_layers = len(backbone_structure(backbone).layers) - 1
    c1, c2 = st.columns([2, 1])
    k = c1.slider(t("ft.layers"), 1, n_layers, min(20, n_layers))
    trainable = unfrozen_layers(backbone, k)
    c1.caption(t("ft.trainable", n=len(trainable)) + " " + ", ".join(trainable[-12:]) + (" …" if len(trainable) > 12 else ""))
    lr = c2.select_slider(t("ft.lr"), [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3], value=1e-5, format_func=lambda v: f"{v:g}")
    if lr > 1e-4:
        c2.warning(t("ft.lr_high"))
    epochs = c2.slider(t("ft.epochs"), 1, 20, 5)
    patience = c2.slider(t("ft.patience"), 1, 10, 3)

running = state.job_running()
if st.button(t("ft.start"), type="primary", icon=":material/lock_open:", disabled=running):
    with guard():
        job_dir = ws.jobs_dir / time.strftime("finetune-%Y%m%d-%H%M%S")
        start_job(job_dir, ["finetune", str(base), "--out", str(job_dir / "run"), "--layers", str(k), "--lr", str(lr),
                            "--epochs", str(epochs), "--patience", str(patience)],
                  kind="finetune", meta={"parent": str(base)})
        state.set_current_job(job_dir)
        st.rerun()
if running:
    st.caption(t("train.busy"))

job = state.current_job()
if job is not None and job.name.startswith("finetune-"):
    show_job(job)
