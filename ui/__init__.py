"""Streamlit-side helpers of the dashboard (state, text catalog, layout, charts)."""
from .runtime import prepare_process

prepare_process()  # once per process, before any page runs (ui/runtime.py says why)
