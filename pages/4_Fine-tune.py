"""Fine-tune: phase 2, unfreeze the backbone's top layers at a low learning rate."""
import streamlit as st

from tlcore.training.alarms import config_alarms
from tlcore.training.commands import check_config, finetune_args
from tlcore.jobs.runner import new_job_dir, start_job
from tlcore.models.run_files import read_run_json
from tlcore.training.config import TrainConfig
from ui.frame import state, widgets
from ui.views.advice import show_warnings
from ui.views.follow import show_job
from ui.frame.layout import choose_run, guard, t
from ui.views.page import setup
from ui.frame.models import learning_layer_count, unfrozen_layers

setup("ft.title")
st.write(t("ft.intro"))
ws = state.workspace()
base = choose_run("ft.base")
k = None
with guard():
    config = read_run_json(base, "config.json")
    backbone = config["backbone"]
    trained_with = config.get("train", {})
    c1, c2 = st.columns([2, 1])
    # Counted in layers that learn (BatchNorm stays frozen; activations have no weights): the number chosen here is
    # the number the caption lists, the run records and the Runs page and model card show.
    k = widgets.slider(c1, TrainConfig, "fine_tune_layers", t("ft.layers"), high=learning_layer_count(backbone),
                       suggested=True)
    trainable = unfrozen_layers(backbone, k)
    c1.caption(t("ft.trainable", n=len(trainable)) + " " + ", ".join(trainable[-12:]) + (" …" if len(trainable) > 12 else ""))
    lr = widgets.ladder(c2, TrainConfig, "fine_tune_lr", t("ft.lr"), format_func=lambda v: f"{v:g}")
    epochs = widgets.slider(c2, TrainConfig, "fine_tune_epochs", t("ft.epochs"))
    # A short label (a toggle's label is cut to one line in this narrow column); the rest in its help.
    early_stopping = widgets.flag(c2, TrainConfig, "early_stopping", t("ft.early_stopping"), widget="toggle",
                                  key="early_stopping", help=t("ft.early_stopping_help"))
    patience = widgets.slider(c2, TrainConfig, "patience", t("ft.patience")) if early_stopping else TrainConfig.patience
    # Start from the base run's choice: fine-tuning sees the same training images.
    saved_resample = trained_with.get("resample")
    resample = widgets.choice(c2, TrainConfig, "resample", t("alarm.resample"), key="resample",
                              start=saved_resample if saved_resample in widgets.options(TrainConfig, "resample") else None,
                              format_func=lambda v: t(f"alarm.resample.{v}"))
    # The same alarms fine-tuning will report, on the base run's training images.
    train_counts = read_run_json(base, "metrics.json").get("counts", {}).get("train")
    show_warnings(config_alarms(TrainConfig(
        weights=config.get("weights", "imagenet"), class_weights=trained_with.get("class_weights", "auto"),
        fine_tune_layers=k, fine_tune_lr=lr, fine_tune_epochs=epochs, early_stopping=early_stopping,
        resample=resample), train_counts or ws.counts()))

if k is None:  # the run's files could not be read: guard said why
    st.stop()
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
