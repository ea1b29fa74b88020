"""Streamlit-side helpers of the dashboard (state, text catalog, layout, charts)."""
