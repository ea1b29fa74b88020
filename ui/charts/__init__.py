"""Plotly figures the views draw: pure functions of their data and labels."""
