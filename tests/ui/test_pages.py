"""Every page under AppTest: state set up directly, no exception, key widgets present."""
from __future__ import annotations

import pytest

from tests.conftest import make_image_folder
from ui.frame.i18n import translate
from tests.ui.conftest import open_page, shown
from tlcore.lab.workspace import Workspace


def texts(at) -> str:
    parts = [shown(e.value) for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_home_page_introduces_the_steps_and_keeps_the_session_in_the_address(sid):
    at = open_page("app.py", sid)
    assert not at.exception
    assert at.title[0].value == "Transfer Lab"
    assert at.query_params["s"] == sid


def test_language_switch_translates_the_page(sid):
    at = open_page("app.py", sid)
    at.selectbox(key="language_select").select("fr").run()
    assert not at.exception
    assert "Commencez par la page Données" in texts(at)
    assert Workspace.for_session(sid).settings()["language"] == "fr"


def test_a_saved_language_without_a_file_reads_as_english(sid, workspace):
    workspace.update_settings(language="xx")  # e.g. its file was removed since it was chosen
    at = open_page("app.py", sid)
    assert not at.exception
    assert "Start with the Data page" in texts(at)
    assert at.selectbox(key="language_select").value == "en"


def test_data_page_loads_the_sample_and_draws_counts(sid, workspace):
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert "No classes yet" in texts(at)
    sample = next(b for b in at.button if "sample" in b.label)
    sample.click().run()
    assert not at.exception
    assert workspace.counts() == {"circle": 40, "square": 40, "triangle": 40}
    assert "Sample loaded: 120 images in 3 classes" in texts(at)
    assert at.selectbox(key="target_class").options == ["circle", "square", "triangle"]  # target class for uploads
    assert len(at.get("plotly_chart")) == 1


def test_data_page_adds_a_class_and_rejects_a_bad_class_name(sid, workspace):
    at = open_page("pages/1_Data.py", sid)
    at.text_input[0].input("cats")
    next(b for b in at.button if b.label == "Add class").click().run()
    assert workspace.classes() == ["cats"]
    at.text_input[0].input("../evil")
    next(b for b in at.button if b.label == "Add class").click().run()
    assert not at.exception
    assert any("not allowed" in shown(e.value) for e in at.error)
    assert workspace.classes() == ["cats"]


def test_data_page_split_must_add_up_to_100(sid, workspace):
    at = open_page("pages/1_Data.py", sid)
    at.number_input[0].set_value(90).run()
    assert any("add up to 100" in shown(e.value) for e in at.error)
    assert workspace.settings().get("split") in (None, [80, 10, 10])
    at.number_input[1].set_value(5).run()
    at.number_input[2].set_value(5).run()
    assert not at.error
    assert workspace.settings()["split"] == [90, 5, 5]


def test_backbone_page_compares_and_remembers_the_choice(sid, workspace):
    at = open_page("pages/2_Backbone.py", sid)
    assert not at.exception
    assert len(at.dataframe) == 1
    assert at.selectbox(key="backbone_select").value == "efficientnet_lite0"
    at.selectbox(key="backbone_select").select("mobilenet_v2").run()
    assert workspace.settings()["backbone"] == "mobilenet_v2"
    assert any("downloads its ImageNet weights" in shown(w.value) for w in at.warning)


def test_train_page_asks_for_data_first(sid):
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert "at least two classes" in texts(at)


def test_train_page_shows_settings_and_the_finished_run(trained):
    sid, job = trained
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert at.slider[0].value == 20  # epochs default
    assert at.select_slider[0].value == 1e-3
    assert any(b.label == "Train" for b in at.button)
    assert any("Done: validation accuracy" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 1  # the curves
    runs = runs_radio(at)
    assert job.name in runs.options[0] or job.name in runs.value


def runs_radio(at):
    """The Train page's list of runs (the page has other radios: the training loop)."""
    return next(r for r in at.radio if r.label == "Runs")


@pytest.mark.parametrize("per_class, loop", [(3, "tape"), (12, "fit")])
def test_train_page_defaults_to_the_tape_loop_with_clipping_for_few_shot_data(sid, workspace, per_class, loop):
    make_image_folder(workspace.data_dir, n_per_class=per_class, size=16)
    at = open_page("pages/3_Train.py", sid)
    assert not at.exception
    assert at.radio(key="loop").value == loop
    clipping = [c for c in at.checkbox if c.label == "Limit each step (gradient clipping)"]
    assert [c.value for c in clipping] == ([True] if loop == "tape" else [])


def test_fine_tune_page_lists_trainable_layers(trained):
    from tlcore.io.settings import setting_info
    from tlcore.training.config import TrainConfig

    sid, _ = trained
    at = open_page("pages/4_Fine-tune.py", sid)
    assert not at.exception
    suggested = setting_info(TrainConfig, "fine_tune_layers").suggested
    assert at.slider[0].value == suggested and at.slider[0].max == 49  # Lite0 has 49 layers that learn
    # One unit: the number chosen is the number of layers the caption says will learn, and lists.
    for k in (suggested, 3):
        at.slider[0].set_value(k).run()
        caption = next(c.value for c in at.caption if "become trainable" in c.value)
        assert caption.startswith(f"{k} layers with weights become trainable")
        assert len(caption.split(":", 1)[1].split(",")) == k
    assert at.select_slider[0].value == TrainConfig.fine_tune_lr
    assert any(b.label == "Fine-tune" for b in at.button)


def test_fine_tune_page_early_stopping_label_fits_its_column_and_explains_itself_in_its_help(trained):
    """Issue 17, item 6: the toggle's long label was cut to "...loss st..." in its narrow column."""
    sid, _ = trained
    at = open_page("pages/4_Fine-tune.py", sid)
    toggle = at.toggle(key="early_stopping")
    assert toggle.label == "Early stopping"
    assert "validation loss has not improved" in toggle.help
    assert any(s.label.startswith("Early-stopping patience") for s in at.slider)  # on by default, its patience below


@pytest.mark.parametrize("page", ["pages/4_Fine-tune.py", "pages/5_Evaluate.py", "pages/6_Predict.py"])
def test_pages_needing_a_run_say_so(sid, page):
    at = open_page(page, sid)
    assert not at.exception
    assert "No finished training yet" in texts(at)


def test_evaluate_page_shows_metrics_and_confusion(trained):
    sid, _ = trained
    at = open_page("pages/5_Evaluate.py", sid)
    assert not at.exception
    assert [m.label for m in at.metric] == ["Accuracy", "Images", "Mistakes", "Calibration error (ECE)"]
    assert len(at.dataframe) == 1
    assert len(at.get("plotly_chart")) == 2  # confusion matrix, reliability diagram (tests/ui/test_calibration_view.py)


def test_predict_page_offers_upload_and_webcam(trained):
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    assert not at.exception
    assert at.selectbox(key="run_select").value.endswith("/run")


def test_two_sessions_see_only_their_own_data_and_runs(trained, sid):
    owner, _ = trained
    other = open_page("pages/1_Data.py", sid)
    assert "No classes yet" in texts(other)
    assert "No finished training yet" in texts(open_page("pages/5_Evaluate.py", sid))
    mine = open_page("pages/1_Data.py", owner)
    assert "No classes yet" not in texts(mine)


def png(colour=(220, 30, 30)) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), colour, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_data_page_upload_keeps_images_and_lists_bad_files_with_reasons(sid, workspace):
    workspace.add_class("cats")
    at = open_page("pages/1_Data.py", sid)
    at.file_uploader[1].set_value([("a.png", png(), "image/png"), ("notes.jpg", b"not an image", "image/jpeg")]).run()
    next(b for b in at.button if b.label == "Add these photos").click().run()
    assert not at.exception
    assert [p.name for p in workspace.images("cats")] == ["a.png"]
    assert any("Added 1 photo" in s.value for s in at.success)
    assert any("1 file(s) could not be used" in shown(w.value) for w in at.warning)


def test_data_page_states_the_upload_caps_and_what_the_session_holds(sid, workspace, monkeypatch):
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "50")
    workspace.add_class("cats")
    workspace.add_image("cats", "a.png", png())
    at = open_page("pages/1_Data.py", sid)
    caption = next(c.value for c in at.caption if "per session" in c.value)
    assert "200 MB per file" in caption and "50 MB per session" in caption  # .streamlit/config.toml and the env
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "lots")
    at = open_page("pages/1_Data.py", sid)
    assert not at.exception
    assert any("TLCORE_MAX_SESSION_MB" in shown(e.value) for e in at.error)


def test_predict_page_classifies_an_upload_and_rejects_a_non_image(trained):
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    assert not at.exception
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1
    at.file_uploader[0].set_value(("notes.png", b"hello", "image/png")).run()
    assert not at.exception
    assert any("notes.png" in shown(e.value) and "not an image" in shown(e.value) for e in at.error)


def test_predict_page_shows_grad_cam_for_the_keras_model(trained):
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    assert not any(img.captions and img.captions[0].startswith("Where the model sees") for img in at.get("image"))
    assert at.toggle(key="predict_live").value is False  # the live camera is off until asked for
    next(tg for tg in at.toggle if tg.label == translate("cam.show")).set_value(True).run()
    assert not at.exception
    chosen = at.selectbox[1].value  # the class whose evidence is shown: the predicted one by default
    captions = [c for img in at.get("image") for c in img.captions]
    assert f"Where the model sees {chosen}" in captions


def test_evaluate_page_shows_grad_cam_on_mistakes(trained, sid, workspace):
    import json
    import shutil

    # A copy of the finished run whose saved predictions are all wrong: a gallery of mistakes.
    _, job = trained
    copy = workspace.jobs_dir / job.name
    shutil.copytree(job, copy)  # with its photos: a page shows none from another session (issue 14)
    rows = json.loads((copy / "run" / "predictions.json").read_text())
    classes = (copy / "run" / "labels.txt").read_text().splitlines()
    for r in rows:  # 0.9 on the first class that is not the label
        r["path"] = r["path"].replace(str(job), str(copy))
        wrong = next(c for c in classes if c != r["label"])
        r["probs"] = [0.9 if c == wrong else 0.1 / (len(classes) - 1) for c in classes]
    (copy / "run" / "predictions.json").write_text(json.dumps(rows))
    at = open_page("pages/5_Evaluate.py", sid)
    assert not at.exception
    n_mistakes = sum(1 for r in rows if r["split"] == "val")  # the page opens on the validation split
    assert n_mistakes > 0
    at.toggle[0].set_value(True).run()
    assert not at.exception
    galleries = [img for img in at.get("image") if img.captions and img.captions[0].startswith("true: ")]
    assert len(galleries) == 1 and len(galleries[0].captions) == min(n_mistakes, 8)


def test_predict_page_shows_feature_maps_of_a_chosen_layer(trained):
    sid, _ = trained
    at = open_page("pages/6_Predict.py", sid)
    at.file_uploader[0].set_value(("red.png", png(), "image/png")).run()
    next(tg for tg in at.toggle if tg.label == translate("maps.show")).set_value(True).run()
    assert not at.exception
    layers = at.select_slider[0].options
    assert len(layers) > 4
    caption = next(c for img in at.get("image") for c in img.captions if "most active channels" in c)
    assert caption.startswith(at.select_slider[0].value) and "the 16 most active channels" in caption
    at.select_slider[0].set_value(layers[-1]).run()
    assert not at.exception
    assert any(c.startswith(f"{layers[-1]} (layer {len(layers)} of {len(layers)})")
               for img in at.get("image") for c in img.captions)
