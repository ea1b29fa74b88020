"""Export: TFLite (float32, float16, dynamic range, INT8), ONNX, a web page, .keras and SavedModel; TFLite and ONNX
(the web page's model too) checked against Keras."""

import streamlit as st

from tlcore.export.formats import (BUNDLED_FORMATS, DEFAULT_FORMATS, FORMATS, RECOMMENDED_CALIBRATION,
                                   ExportConfig, default_filename, export_args)
from tlcore.jobs.runner import new_job_dir, start_job
from tlcore.models.run_files import read_run_json
from ui.frame import state, widgets
from ui.views.export import show_export
from ui.frame.layout import choose_run, guard, t
from ui.views.page import setup

setup("export.title")
st.write(t("export.intro"))
ws = state.workspace()
run_dir = choose_run()

formats = st.multiselect(t("export.formats"), list(FORMATS), default=list(DEFAULT_FORMATS),
                         format_func=lambda f: t(f"export.format.{f}"))
low, high = RECOMMENDED_CALIBRATION
int8_io, calibration = ExportConfig.int8_io, ExportConfig.calibration_samples
if "tflite-int8" in formats:
    n_train = 0  # unknown when samples.json cannot be read (guard says why): the full slider then
    with guard():
        n_train = sum(1 for s in read_run_json(run_dir, "samples.json") if s.get("split") == "train")
    c1, c2 = st.columns([2, 1])
    if n_train and n_train < low:  # nothing to choose: every training image calibrates
        calibration = n_train
        c1.warning(t("export.calibration_few", n=n_train, low=low, high=high))
    else:
        calibration = widgets.slider(c1, ExportConfig, "calibration_samples", t("export.calibration"),
                                     high=n_train or None, step=10, help=t("export.calibration_help"))
        if calibration < low:
            c1.warning(t("export.calibration_low", low=low, high=high))
    int8_io = widgets.flag(c2, ExportConfig, "int8_io", t("export.int8_io"), help=t("export.int8_io_help"))

running = state.job_running()
if st.button(t("export.start"), type="primary", icon=":material/ios_share:", disabled=running or not formats):
    with guard():
        job_dir = new_job_dir(ws.jobs_dir, "export")
        out = job_dir / "exports"
        if len(formats) == 1:  # one format: --out names the file itself
            out = out / default_filename(formats[0], int8_io)
        bundle = job_dir / "transfer-lab-model.zip" if any(f in BUNDLED_FORMATS for f in formats) else None
        config = ExportConfig(calibration_samples=calibration, int8_io=int8_io)
        start_job(job_dir, export_args(config, run_dir, formats, out, bundle), kind="export",
                  meta={"parent": str(run_dir)})
        st.rerun()
if running:
    st.caption(t("train.busy"))

exports = state.export_jobs(run_dir)
if exports:
    st.subheader(t("export.latest"))
    show_export(exports[0][0])
else:
    st.caption(t("export.none"))
