"""The dashboard's Streamlit side, in layers: frame (state, access, texts, layout, widgets, cached models) < charts <
views (what pages draw) < pages."""
from ui.frame.runtime import prepare_process

prepare_process()  # once per process, before any page runs (ui/frame/runtime.py says why)
