"""Predict: classify a new photo (upload or webcam) with a trained run."""
import numpy as np
import streamlit as st

from tlcore.errors import TLError
from tlcore.images import ImageDecodeError, decode_image
from ui.charts import probabilities_figure
from ui.layout import choose_run, guard, setup, t
from ui.models import run_model

setup("predict.title")
run_dir = choose_run()
left, right = st.columns([1, 1])
upload = left.file_uploader(t("predict.upload"), type=None)
shot = right.camera_input(t("predict.camera"))
source = shot or upload

if source is not None:
    with guard():
        model = run_model(run_dir)
        size = int(model.config.get("input_size", model.spec.input_size))
        try:
            image = decode_image(source.getvalue(), size)
        except ImageDecodeError as exc:
            raise TLError(f"{source.name}: {exc}") from None
        probs = np.asarray(model.model.predict_on_batch(image[None].astype(np.float32)))[0]
        best = int(probs.argmax())
        c1, c2 = st.columns([1, 2])
        c1.image(source.getvalue(), width="stretch")
        c2.markdown(t("predict.result", label=model.classes[best], conf=float(probs[best])))
        c2.caption(t("predict.topk"))
        c2.plotly_chart(probabilities_figure(model.classes, probs.tolist(), {"probability": t("chart.probability")}))
