"""Draw an export job: live progress, then the verification table, charts and downloads."""
from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import streamlit as st

from tlcore.export.formats import VERIFIED_FORMATS
from tlcore.export.verify import exported_accuracy
from tlcore.jobs.folder import job_path
from tlcore.jobs.runner import job_status, read_events

from ui.frame import state
from ui.charts.figures import export_figure
from ui.views.advice import show_warnings
from ui.views.follow import follow, phase_progress, show_progress
from ui.frame.layout import job_error, plain, t

__all__ = ["show_export"]


def _zip_folder(folder: Path, root: Path) -> bytes:
    """The folder (a SavedModel) as ZIP bytes, with only the files that are inside ``root`` (no link out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            inside = job_path(root, path)
            if inside is not None and not path.is_symlink() and inside.is_file():
                z.write(inside, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


def _progress(job_dir: Path, status: dict) -> None:
    events = read_events(job_dir)
    start = next((e for e in events if e.get("type") == "start"), {})
    formats = start.get("formats") or []
    done = sum(1 for e in events if e.get("type") == "export" and e.get("stage") == "exported")
    # The photos of a phase that counts them (reference, calibration, verification), else the formats written.
    fraction, text = phase_progress(events, min(done / max(len(formats), 1), 1.0))
    st.info(t("export.running"))
    show_progress(job_dir, status, fraction, text)


def _table(result: dict) -> list[dict]:
    float32 = next((e["size_bytes"] for e in result["exports"] if e["format"] == "tflite-float32"), None)
    rows = []
    for e in result["exports"]:
        v = e.get("verification") or {}
        pct = lambda x: "–" if x is None else f"{x:.1%}"  # noqa: E731
        rows.append({
            t("export.col.format"): e["format"] + (" (uint8 I/O)" if e["input"]["dtype"] == "uint8" else ""),
            t("export.col.file"): Path(e["path"]).name,
            # Numbers written as the chart and the model card write them: sizes with two decimals, latencies with one.
            t("export.col.size"): f"{e['size_bytes'] / 1e6:.2f}",
            t("export.col.ratio"): f"{e['size_bytes'] / float32:.2f}x" if float32 else "–",
            t("export.col.keras"): pct(v.get("keras_accuracy")),
            t("export.col.tflite"): pct(exported_accuracy(v)),
            t("export.col.change"): "–" if not v else f"{v['accuracy_change'] * 100:+.1f}",
            t("export.col.agreement"): pct(v.get("agreement")),
            t("export.col.latency"): "–" if v.get("latency_ms") is None else f"{v['latency_ms']:.1f}",
        })
    return rows


def _per_class(result: dict) -> list[dict]:
    rows = []
    for e in result["exports"]:
        for name, c in ((e.get("verification") or {}).get("per_class") or {}).items():
            rows.append({t("export.col.format"): e["format"], t("chart.class"): name, "n": c["n"],
                         t("export.col.keras"): f"{c['keras_accuracy']:.1%}",
                         t("export.col.tflite"): f"{exported_accuracy(c):.1%}",
                         t("export.col.change"): f"{c['change'] * 100:+.1f}"})
    return rows


def _downloads(job_dir: Path, result: dict) -> None:
    # Paths from the job's result: served only when they lead inside this session's workspace.
    root = state.workspace().root
    bundle = job_path(root, result.get("bundle"), "bundle")
    if bundle is not None and bundle.is_file():
        st.download_button(t("export.bundle"), data=functools.partial(bundle.read_bytes),
                           file_name=bundle.name, mime="application/zip", type="primary",
                           icon=":material/folder_zip:", on_click="ignore", key=f"dl_bundle_{job_dir.name}")
    columns = st.columns(4)
    exports = [e for e in result["exports"] if isinstance(e, dict)]
    files = [f for f in (job_path(root, e.get("path"), "export") for e in exports) if f is not None]
    if files:  # the labels every file of the export shares (one labels.txt beside them)
        files.append(next((job_path(root, e.get("labels"), "labels") for e in exports if e.get("labels")), None))
    for i, path in enumerate(p for p in files if p is not None and p.exists()):
        if path.is_dir():
            data, name = functools.partial(_zip_folder, path, root), f"{path.name}.zip"
        else:
            data, name = functools.partial(path.read_bytes), path.name
        columns[i % 4].download_button(name, data=data, file_name=name, icon=":material/download:",
                                       on_click="ignore", key=f"dl_{job_dir.name}_{name}")


def _source(source) -> str:
    """What an export was verified on, said in the session's language: the run's held-out split, or a folder's
    name (the job file says which; a folder given on the command line is the operator's, shown by name only)."""
    split = {"run test split": "test", "run val split": "val"}.get(source)
    return t(f"export.source.{split}") if split else plain(Path(str(source or "")).name)


def _draw(job_dir: Path) -> str:
    status = job_status(job_dir)
    key = status["status"]
    if key in ("waiting", "running", "stopping"):
        _progress(job_dir, status)
        return key
    if key == "failed":
        st.error(t("export.failed", error=job_error(status)))
        return key
    result = status.get("result") or {}
    if key == "stopped" or result.get("stopped"):
        st.warning(t("export.stopped"))
    if not result.get("exports"):
        return key
    data = result.get("verification_data") or {}
    if data.get("n"):
        st.success(t("export.verified", n=data["n"], source=_source(data.get("source")),
                     keras=data.get("keras_accuracy") or 0))
    show_warnings(result.get("warnings", []))
    # A static table: all its columns fit the page, wrapped (a grid pushed the latency out of view, to the right).
    st.table(_table(result), hide_index=True)
    verified = [e for e in result["exports"] if e["format"] in VERIFIED_FORMATS]
    if verified:
        names = [e["format"].removeprefix("tflite-") for e in verified]
        sizes = [e["size_bytes"] / 1e6 for e in verified]
        latencies = [(e.get("verification") or {}).get("latency_ms") for e in verified]
        keras = next((e for e in result["exports"] if e["format"] == "keras"), None)
        if data.get("keras_latency_ms") is not None:
            names.append("Keras")
            sizes.append(keras["size_bytes"] / 1e6 if keras else None)  # no .keras file made: no size bar
            latencies.append(data["keras_latency_ms"])
        st.plotly_chart(export_figure(names, sizes, latencies, {"size": t("export.chart.size"),
                                                                "latency": t("export.chart.latency")}),
                        key=f"export_chart_{job_dir.name}")
        per_class = _per_class(result)
        if per_class:
            with st.expander(t("export.per_class")):
                st.dataframe(per_class, hide_index=True)
    st.subheader(t("export.downloads"))
    _downloads(job_dir, result)
    return key


def show_export(job_dir: Path) -> None:
    """Draw an export job: progress while it runs, then its verification and downloads."""
    follow(job_dir, _draw)
