"""Fine-tune: phase 2, unfreeze the backbone's top layers at a low learning rate."""
import json

import streamlit as st

from tlcore.training.alarms import config_alarms
from tlcore.training.commands import check_config, finetune_args
from tlcore.jobs.runner import new_job_dir, start_job
from tlcore.data.resample import RESAMPLE_MODES
from tlcore.training.config import TrainConfig
from ui import state
from ui.advice_view import show_warnings
from ui.follow import show_job
from ui.layout import choose_run, guard, setup, t
from ui.models import backbone_structure, unfrozen_layers

setup("ft.title")
st.write(t("ft.intro"))
ws = state.workspace()
base = choose_run("ft.base")
config = json.loads((base / "config.json").read_text(encoding="utf-8"))
backbone = config["backbone"]
trained_with = config.get("train", {})
with guard():
    n_layers = len(backbone_structure(backbone).layers) - 1
    c1, c2 = st.columns([2, 1])
    k = c1.slider(t("ft.layers"), 1, n_layers, min(20, n_layers))
    trainable = unfrozen_layers(backbone, k)
    c1.caption(t("ft.trainable", n=len(trainable)) + " " + ", ".join(trainable[-12:]) + (" …" if len(trainable) > 12 else ""))
    lr = c2.select_slider(t("ft.lr"), [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3], value=1e-5, format_func=lambda v: f"{v:g}")
    epochs = c2.slider(t("ft.epochs"), 1, 20, 5)
    early_stopping = c2.toggle(t("alarm.early_stopping"), value=True, key="early_stopping")
    patience = c2.slider(t("ft.patience"), 1, 10, 3) if early_stopping else TrainConfig.patience
    # Start from the base run's choice: fine-tuning sees the same training images.
    modes, saved_resample = list(RESAMPLE_MODES), trained_with.get("resample", "none")
    resample = c2.selectbox(t("alarm.resample"), modes, key="resample", format_func=lambda v: t(f"alarm.resample.{v}"),
                            index=modes.index(saved_resample) if saved_resample in modes else 0)
    # The same alarms fine-tuning will report, on the base run's training images.
    train_counts = json.loads((base / "metrics.json").read_text(encoding="utf-8")).get("counts", {}).get("train")
    show_warnings(config_alarms(TrainConfig(
        weights=config.get("weights", "imagenet"), class_weights=trained_with.get("class_weights", "auto"),
        fine_tune_layers=k, fine_tune_lr=lr, fine_tune_epochs=epochs, early_stopping=early_stopping,
        resample=resample), train_counts or ws.counts()))

running = state.job_running()
if st.button(t("ft.start"), type="primary", icon=":material/lock_open:", disabled=running):
    with guard():
        config = TrainConfig(fine_tune_layers=k, fine_tune_lr=lr, fine_tune_epochs=epochs, patience=patience,
                             resample=resample, early_stopping=early_stopping)
        check_config(config)  # a refused setting leaves no job folder behind
        job_dir = new_job_dir(ws.jobs_dir, "finetune")
        start_job(job_dir, finetune_args(config, base, job_dir / "run"), kind="finetune", meta={"parent": str(base)})
        state.set_current_job(job_dir)
        st.rerun()
if running:
    st.caption(t("train.busy"))

job = state.current_job()
if job is not None and job.name.startswith("finetune-"):
    show_job(job)
