"""Models the dashboard caches: backbone structures (shared, read-only) and per-session run models.

A run or export this server did not produce (one from an opened project, say) is parsed first in a
separate, limited process (:func:`tlcore.models.model_check.ensure_checked`): the server process, shared
by every user, only ever parses model files it made or that passed that check.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from tlcore.models.classifier import layers_to_unfreeze, learning_layers
from tlcore.models.model_check import ensure_checked
from tlcore.backbones.registry import create_backbone
from tlcore.models.run import RunModel, load_run
from tlcore.models.onnx_model import OnnxModel, load_onnx
from tlcore.models.tflite_model import TFLiteModel, load_tflite

from ui.frame.layout import t

__all__ = ["backbone_structure", "learning_layer_count", "unfrozen_layers", "checked", "run_model",
           "exported_model"]


@st.cache_resource(show_spinner=False)
def backbone_structure(name: str):
    """A random-weight backbone, only ever read for its layer list (never trained: shared by all sessions)."""
    return create_backbone(name, weights=None)


def learning_layer_count(name: str) -> int:
    """How many layers of backbone ``name`` fine-tuning can train (the unit a number of fine-tuned layers counts)."""
    return len(learning_layers(backbone_structure(name)))


def unfrozen_layers(name: str, k: int) -> list[str]:
    """The layers that fine-tuning the top ``k`` layers of backbone ``name`` trains."""
    return layers_to_unfreeze(backbone_structure(name), k)


def checked(path: Path, name: str) -> None:
    """Return when ``path`` may be parsed in this process (produced here, or it passed the check); else raise
    :class:`~tlcore.io.errors.TLError`. A spinner naming ``name`` shows while a check runs (seconds)."""
    ensure_checked(path, progress=lambda: st.spinner(t("models.checking", name=name)))


def run_model(run_dir: Path) -> RunModel:
    """The session's own copy of a trained run (user data: never in a shared cache)."""
    key = f"run_model::{run_dir}::{(run_dir / 'model.weights.h5').stat().st_mtime_ns}"
    models = st.session_state.setdefault("run_models", {})
    if key not in models:
        checked(run_dir, run_dir.parent.name)
        models.clear()  # one model at a time per session keeps memory bounded
        models[key] = load_run(run_dir)
    return models[key]


def exported_model(path: Path) -> TFLiteModel | OnnxModel:
    """The session's own runtime for an exported ``.tflite`` or ``.onnx`` (interpreters are not shared between
    threads); an ONNX file only when this server exported it (:mod:`tlcore.models.onnx_model`)."""
    key = f"exported::{path}::{path.stat().st_mtime_ns}"
    models = st.session_state.setdefault("exported_models", {})
    if key not in models:
        checked(path, path.name)
        models.clear()
        models[key] = load_onnx(path) if path.suffix == ".onnx" else load_tflite(path)
    return models[key]
