"""Evaluate: accuracy, per-class scores, confusion matrix, calibration and mistakes on a held-out split.

The validation split comes first: it is where runs are compared. Opening the test split is a look at the
final score, counted once per run in the session's test-set ledger and shown with how many runs have been
scored on these test photos.
"""
import numpy as np
import streamlit as st

from tlcore.analysis.evaluate import classification_metrics
from tlcore.analysis.explain import grad_cam, overlay
from tlcore.data.images import load_image
from tlcore.jobs.folder import job_path
from tlcore.models.run_files import read_run_json, run_classes
from tlcore.training.ledger import score_run_test_set
from ui.frame import state
from ui.views.advice import show_test_set_looks
from ui.views.calibration import show_reliability
from ui.views.embedding_map import run_map_points, show_embedding_map
from ui.views.heatmap import CAM_WIDTH, show_colour_scale
from ui.charts.figures import confusion_figure
from ui.frame.layout import choose_run, guard, t
from ui.views.page import setup
from ui.frame.models import run_model

_CAM_MISTAKES = 8

setup("eval.title")
run_dir = choose_run()
root = state.workspace().root


def photo(row: dict) -> str | None:
    """A prediction's photo when it is a file inside this session's workspace (predictions.json may be damaged)."""
    path = job_path(root, row.get("path"), "photo")
    return str(path) if path is not None and path.is_file() else None


split = st.radio(t("eval.split"), ["val", "test"], format_func=lambda s: t(f"eval.split.{s}"), horizontal=True,
                 help=t("eval.split_help"), key="eval_split")

with guard():
    classes = run_classes(run_dir)
    rows = [p for p in read_run_json(run_dir, "predictions.json") if p["split"] == split]
    if not rows:
        st.info(t("eval.empty_split"))
        st.stop()
    if split == "test":
        # The ledger is the session's own (its workspace): other sessions' looks at the same photos are not its.
        show_test_set_looks(score_run_test_set(run_dir, folder=root, root=root))
    y_true = [classes.index(r["label"]) for r in rows]
    probs = np.array([r["probs"] for r in rows])
    metrics = classification_metrics(y_true, probs, classes)
    predicted = probs.argmax(axis=1)

    c1, c2, c3 = st.columns(3)
    c1.metric(t("eval.accuracy"), f"{metrics['accuracy']:.1%}")
    c2.metric(t("eval.images"), metrics["n"])
    c3.metric(t("eval.mistakes_n"), int(np.sum(predicted != np.array(y_true))))

    left, right = st.columns([1, 1])
    with left:
        st.subheader(t("eval.per_class"))
        st.dataframe([{t("chart.class"): name, **{t(f"eval.col.{k}"): f"{m[k]:.2f}" for k in ("precision", "recall", "f1")},
                       t("eval.col.n"): m["support"]} for name, m in metrics["per_class"].items()], hide_index=True)
    with right:
        st.subheader(t("eval.confusion"))
        chart_labels = {"true": t("chart.true"), "predicted": t("chart.predicted")}
        event = st.plotly_chart(confusion_figure(metrics["confusion"], classes, chart_labels),
                                on_select="rerun", selection_mode="points", key=f"cm_{run_dir.parent.name}_{split}")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points:
        true_name, pred_name = points[0]["y"], points[0]["x"]
        cell = [r for r, p in zip(rows, predicted) if r["label"] == true_name and classes[p] == pred_name]
        st.subheader(t("eval.cell", true=true_name, pred=pred_name, n=len(cell)))
        shown = [(r, path) for r in cell[:30] if (path := photo(r))]
        if shown:
            st.image([path for _, path in shown], width=110, caption=[f"{max(r['probs']):.0%}" for r, _ in shown])

    show_reliability(metrics["calibration"], key=f"reliability_{run_dir.parent.name}_{split}")

    st.subheader(t("eval.mistakes"))
    mistakes = [(r, p) for r, p in zip(rows, predicted) if classes[p] != r["label"]]
    if not mistakes:
        st.success(t("eval.no_mistakes"))
    else:
        mistakes.sort(key=lambda rp: -rp[0]["probs"][rp[1]])  # the most confident mistakes first
        # Only the mistakes whose photo is there to show (inside this workspace), each with its path.
        mistakes = [(r, p, path) for r, p in mistakes if (path := photo(r))]
        captions = [t("eval.caption", true=r["label"], pred=classes[p], conf=r["probs"][p])
                    for r, p, _ in mistakes[:30]]
        if mistakes and st.toggle(t("cam.mistakes"), help=t("cam.help")):
            with st.spinner(t("cam.working")):
                model = run_model(run_dir)
                shown = mistakes[:_CAM_MISTAKES]  # about a second each on a CPU
                images = [load_image(path, model.input_size) for _, _, path in shown]
                st.image([overlay(im, grad_cam(model, im, int(p))["heatmap"]) for im, (_, p, _) in zip(images, shown)],
                         width=CAM_WIDTH, caption=captions[:_CAM_MISTAKES])
            show_colour_scale()
            if len(mistakes) > _CAM_MISTAKES:
                st.caption(t("cam.first", n=_CAM_MISTAKES))
        elif mistakes:
            st.image([path for _, _, path in mistakes[:30]], width=140, caption=captions)

    points = run_map_points(run_dir, rows)
    if points is None:
        st.subheader(t("map.title"))
        st.caption(t("map.not_cached"))
    else:
        show_embedding_map(points, key=f"map_{run_dir.parent.name}_{split}", root=root,
                           mistakes=[r["path"] for r, p in zip(rows, predicted) if classes[p] != r["label"]])
