"""Predict: classify a new photo (upload or webcam) with a trained run, one of its TFLite or ONNX exports, or a
model file; "unknown" below a confidence threshold."""
from pathlib import Path

import streamlit as st

from tlcore.io.errors import TLError
from tlcore.analysis.explain import conv_layers, feature_grid, feature_maps, grad_cam, overlay
from tlcore.data.images import ImageDecodeError, decode_image
from tlcore.models.run import RunModel
from ui.frame import state
from ui.views.calibration import choose_threshold, show_answer
from ui.views.heatmap import show_colour_scale
from ui.charts.figures import probabilities_figure
from ui.frame.layout import choose_run, guard, t
from ui.views.live import live_camera
from ui.views.page import setup
from ui.views.model_upload import load_uploaded_model, uploaded_model
from ui.frame.models import backbone_structure, exported_model, run_model

setup("predict.title")
run_dir = choose_run(required=False)  # a model file brought by the user works without a run
exported = state.exported_models(run_dir) if run_dir else []
uploaded = uploaded_model()
if st.session_state.pop("tl_choose_uploaded", False):  # a model file just loaded: select it
    st.session_state["predict_model"] = "uploaded"
choices = (["keras"] if run_dir else []) + [str(p) for p in exported] + (["uploaded"] if uploaded else [])
labels = {"keras": t("predict.keras"), "uploaded": t("predict.uploaded", name=uploaded["name"]) if uploaded else ""}
choice = None
if choices:
    choice = st.radio(t("predict.model"), choices, horizontal=True, key="predict_model",
                      format_func=lambda c: labels.get(c) or t("predict.tflite", name=Path(c).name))
if run_dir and not exported:
    st.caption(t("predict.tflite_hint"))
# A run's exports share its validation photos, which suggest the threshold; a model file brought by the user has none.
threshold_run = None if choice == "uploaded" else run_dir
threshold = None
if choice is not None:
    threshold = choose_threshold(threshold_run, key=f"threshold_{threshold_run.parent.name if threshold_run else 'file'}")


def chosen_model():
    """The model the radio names: the run's Keras model, one of its exported files, or the uploaded file."""
    if choice == "uploaded":
        return uploaded["model"]
    return run_model(run_dir) if choice == "keras" else exported_model(Path(choice))


# The camera classified continuously: in the browser with an ONNX export of the run, else on the server, slower.
live = choice is not None and st.toggle(t("predict.live"), key="predict_live", help=t("predict.live_help"))
if live:
    with guard():
        live_model = chosen_model()
        onnx = Path(choice) if choice.endswith(".onnx") else next((p for p in exported if p.suffix == ".onnx"), None)
        if choice == "uploaded":
            onnx = None  # the uploaded model has no export of its own
        st.caption(t("predict.live_browser", name=onnx.name) if onnx else t("predict.live_server"))
        problem = live_camera("live_camera", list(live_model.classes), onnx, live_model)
        if problem:
            st.warning(t(f"camera.error_{problem}"))
        if choice != "uploaded":  # a run's demo: full screen, with a link for phones
            st.page_link("pages/10_Demo.py", label=t("predict.demo"), icon=":material/present_to_all:")
left, right = st.columns([1, 1])
upload = left.file_uploader(t("predict.upload"), type=None)
shot = None if live else right.camera_input(t("predict.camera"))  # one camera at a time: the live view has it
source = shot or upload
with st.expander(t("predict.model_file"), expanded=not choices):
    model_file = st.file_uploader(t("predict.model_file_upload"), type=None, key="model_file",
                                  help=t("predict.model_file_help"))
    if model_file is not None:
        # Nothing in the session changes unless the file loads; a refused one leaves the chosen model in use.
        with guard():
            if load_uploaded_model(model_file.name, model_file.getvalue()):
                st.session_state["tl_choose_uploaded"] = True
                st.rerun()

if source is not None and choice is None:
    st.info(t("predict.no_model"))
elif source is not None:
    with guard():
        model = chosen_model()
        try:
            image = decode_image(source.getvalue(), model.input_size)
        except ImageDecodeError as exc:
            raise TLError(f"{source.name}: {exc}") from None
        probs = model.predict_batch(image[None])[0]
        best = int(probs.argmax())
        c1, c2 = st.columns([1, 2])
        c1.image(source.getvalue(), width="stretch")
        show_answer(c2, probs, model.classes, threshold)
        c2.caption(t("predict.topk"))
        c2.plotly_chart(probabilities_figure(model.classes, probs.tolist(), {"probability": t("chart.probability")}))
        keras_run = isinstance(model, RunModel)  # Grad-CAM and feature maps need a backbone Transfer Lab built
        cam_class = None
        if keras_run and c1.toggle(t("cam.show"), help=t("cam.help")):
            cam_class = c1.selectbox(t("cam.class"), model.classes, index=best)
        if keras_run and c2.toggle(t("maps.show"), help=t("maps.help")):
            layers = conv_layers(backbone_structure(model.spec.name))
            layer = c2.select_slider(t("maps.layer"), layers, value=layers[len(layers) // 4])
            maps = feature_maps(model, image, layer, max_maps=16)
            scale = max(1, 96 // maps.shape[1])  # late layers are a few pixels wide: enlarge them
            c2.image(feature_grid(maps, columns=4, scale=scale),
                     caption=t("maps.caption", layer=layer, n=len(maps), depth=layers.index(layer) + 1,
                               total=len(layers)))
        if cam_class is not None:
            # Under the photo and the answer, larger than the photo's column, with the scale to read it by.
            cam = grad_cam(model, image, model.classes.index(cam_class))
            heat, scale = st.columns([3, 2])
            heat.image(overlay(image, cam["heatmap"]), caption=t("cam.caption", label=cam_class), width="stretch")
            show_colour_scale(scale)
