"""Draw the Adversarial page's pieces: one attacked photo, and robustness / hardening jobs."""
from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from tlcore.analysis.display import contrast_limits, stretch_contrast
from tlcore.data.images import ImageDecodeError, load_image
from tlcore.jobs.events import MEASURING, current_phase
from tlcore.jobs.folder import job_path
from tlcore.jobs.runner import job_status, read_events

from ui.frame import state
from ui.charts.corruptions import corruptions_figure
from ui.charts.figures import probabilities_figure, robustness_figure
from ui.views.follow import follow, phase_progress, show_progress
from ui.frame.layout import job_error, plain, t

__all__ = ["show_attack", "show_robustness", "show_harden", "show_corruptions", "show_ideal"]


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def show_attack(result: dict, classes: list[str]) -> None:
    """Original, amplified perturbation and adversarial image, with the top classes before and after."""
    eps = max(result["epsilon"], 1e-9)
    # The change is at most a few levels: stretch +/- epsilon to the full range so it can be seen.
    amplified = np.clip(result["perturbation"] / (2 * eps * 255.0) + 0.5, 0, 1)
    before, after = np.asarray(result["before"]), np.asarray(result["after"])
    c1, c2, c3 = st.columns(3)
    c1.image(result["original"], caption=t("adv.original", label=classes[int(before.argmax())], conf=float(before.max())),
             width="stretch")
    c2.image((amplified * 255).astype(np.uint8), caption=t("adv.perturbation", linf=result["linf"]), width="stretch")
    c3.image(result["adversarial"], caption=t("adv.adversarial", label=classes[int(after.argmax())], conf=float(after.max())),
             width="stretch")
    if before.argmax() != after.argmax():
        st.error(t("adv.fooled", before=plain(classes[int(before.argmax())]), after=plain(classes[int(after.argmax())]),
                   eps=result["epsilon"]))
    else:
        st.success(t("adv.resisted", label=plain(classes[int(after.argmax())])))
    labels = {"probability": t("chart.probability")}
    b1, b2 = st.columns(2)
    b1.caption(t("adv.before"))
    b1.plotly_chart(probabilities_figure(classes, before.tolist(), labels), key="adv_before")
    b2.caption(t("adv.after"))
    b2.plotly_chart(probabilities_figure(classes, after.tolist(), labels), key="adv_after")
    st.download_button(t("adv.download"), data=_png(result["adversarial"]), file_name=result["file_name"],
                       mime="image/png", icon=":material/download:", on_click="ignore")


def _curve_labels() -> dict:
    return {"epsilon": t("adv.chart.epsilon"), "accuracy": t("chart.accuracy")}


def _draw_robustness(job_dir: Path) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in ("waiting", "running", "stopping"):
        events = read_events(job_dir)
        points = [e for e in events if e.get("type") == "robustness"]
        last = points[-1] if points else {}
        # The photos attacked over every point; before the first count, the points measured.
        fraction, text = phase_progress(events, len(points) / max(int(last.get("total", 1)), 1))
        show_progress(job_dir, status, fraction, text)
    elif key == "failed":
        st.error(t("adv.job_failed", error=job_error(status)))
    elif status.get("result"):
        r = status["result"]
        st.caption(t("adv.curve_caption", n=r["n"], split=r["split"], steps=r["steps"]))
        st.plotly_chart(robustness_figure({"": r}, _curve_labels()), key=f"curve_{job_dir.name}")
    return key


def _draw_harden(job_dir: Path) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in ("waiting", "running", "stopping"):
        events = read_events(job_dir)
        start = next((e for e in events if e.get("type") == "start"), {})
        epochs = sum(1 for e in events if e.get("type") == "epoch")
        total = int(start.get("epochs", 1))
        fraction, text = phase_progress(events, epochs / max(total, 1))
        phase = current_phase(events) or {}
        if phase.get("phase") == MEASURING:  # the curves are measured twice: say which
            when = "adv.harden_after" if epochs else "adv.harden_before"
            text = t(when, done=phase.get("done", 0), total=phase.get("total", 0))
        show_progress(job_dir, status, fraction, text)
    elif key == "failed":
        st.error(t("adv.job_failed", error=job_error(status)))
    elif status.get("result"):
        r = status["result"]
        st.success(t("adv.hardened", val="–" if r.get("val_accuracy") is None else f"{r['val_accuracy']:.1%}"))
        st.caption(t("adv.curve_caption", n=r["n"], split=r["split"], steps=r.get("curve_steps", "?")))
        curves = {t("adv.curve_before"): r["before"], t("adv.curve_after"): r["after"]}
        st.plotly_chart(robustness_figure(curves, _curve_labels()), key=f"harden_{job_dir.name}")
    return key


def show_robustness(job_dir: Path) -> None:
    """A robustness job: progress while it runs, then accuracy against epsilon."""
    follow(job_dir, _draw_robustness)


def show_harden(job_dir: Path) -> None:
    """An adversarial-training job: progress while it runs, then the curves before and after."""
    follow(job_dir, _draw_harden)


def corruption_labels() -> dict:
    """The corruptions chart's words: each corruption's name, in the order the core measures them."""
    from tlcore.adversarial.corruptions import CORRUPTIONS

    return {"accuracy": t("chart.accuracy"), "severity": t("adv.corrupt.severity"), "clean": t("adv.corrupt.clean"),
            "names": {name: t(f"adv.corrupt.{name}") for name in CORRUPTIONS}}


def _draw_corruptions(job_dir: Path) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in ("waiting", "running", "stopping"):
        events = read_events(job_dir)
        points = [e for e in events if e.get("type") == "corruption"]
        fraction, text = phase_progress(events, len(points) / max(int((points or [{}])[-1].get("total", 1)), 1))
        phase = current_phase(events) or {}
        if phase.get("phase") == MEASURING:  # not attacks here: photos corrupted and scored
            text = t("adv.corrupt.progress", done=phase.get("done", 0), total=phase.get("total", 0))
        show_progress(job_dir, status, fraction, text)
    elif key == "failed":
        st.error(t("adv.job_failed", error=job_error(status)))
    elif status.get("result"):
        r = status["result"]
        where = t("adv.corrupt.folder") if r.get("source") == "folder" else r.get("source", "")
        st.caption(t("adv.corrupt.caption", n=r["n"], split=where, clean=r["clean_accuracy"], mean=r["mean_accuracy"]))
        st.plotly_chart(corruptions_figure(r, corruption_labels()), key=f"corruptions_{job_dir.name}")
    return key


def show_corruptions(job_dir: Path) -> None:
    """An everyday-corruptions job: progress while it runs, then the accuracy per corruption and severity."""
    follow(job_dir, _draw_corruptions)


def _image(root: Path, value) -> str | None:
    """An image path from the job's files, when it is a file inside this session's workspace."""
    path = job_path(root, value, "image")
    return str(path) if path is not None and path.is_file() else None


def _pixels(path: str | None) -> np.ndarray | None:
    """The image at ``path`` (from :func:`_image`) as pixels, or None when there is none or it does not decode."""
    try:
        return None if path is None else load_image(path)
    except ImageDecodeError:
        return None


def _draw_ideal(job_dir: Path) -> str:
    status = job_status(job_dir)
    key = status["status"]
    root = state.workspace().root
    steps = [e for e in read_events(job_dir) if e.get("type") == "ideal"]
    frames = [{**e, "image": image} for e in steps if (image := _image(root, e.get("image")))]
    if key in ("waiting", "running", "stopping"):
        last = steps[-1] if steps else {}
        if last:
            text = t("adv.ideal_step", step=last["step"], total=last["total"], p=last.get("probability", 0.0))
            fraction = last.get("step", 0) / max(int(last.get("total", 1)), 1)
        else:  # starting, loading TensorFlow and the model
            fraction, text = phase_progress(read_events(job_dir))
        show_progress(job_dir, status, fraction, text)
        if frames:
            st.image(frames[-1]["image"], width=280, caption=t("adv.ideal_frame", step=frames[-1]["step"]))
    elif key == "failed":
        st.error(t("adv.job_failed", error=job_error(status)))
    elif status.get("result"):
        r = status["result"]
        final = _image(root, r.get("image"))
        raw = _pixels(final)
        limits = None
        if raw is not None:
            # The grown image stays near mid-grey; each channel is stretched for the eye, the download is as made.
            limits = contrast_limits(raw)
            # PNG: JPEG would blur the fine patterns the stretch brings out.
            st.image(stretch_contrast(raw, limits), width=336, output_format="PNG",
                     caption=t("adv.ideal_done", label=r["class"], p=r.get("probability") or 0.0))
            st.caption(t("adv.ideal_stretched"))
            st.download_button(t("adv.ideal_download"), data=partial(Path(final).read_bytes),
                               file_name=f"ideal_{r['class']}.png", mime="image/png", icon=":material/download:",
                               on_click="ignore", key=f"ideal_download_{job_dir.name}")
        shown = [(f, pixels) for f in frames if (pixels := _pixels(f["image"])) is not None]
        if shown:
            st.caption(t("adv.ideal_evolution"))
            # Stretched as the final image is (by its limits), so the growth from grey still shows.
            st.image([pixels if limits is None else stretch_contrast(pixels, limits) for _, pixels in shown],
                     width=110, caption=[str(f["step"]) for f, _ in shown], output_format="PNG")
    return key


def show_ideal(job_dir: Path) -> None:
    """An ideal-class job: the image as it evolves, then the result and its history."""
    follow(job_dir, _draw_ideal)
