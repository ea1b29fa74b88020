"""The dashboard's figures (pure functions of plain data): what they draw, where, and how they write numbers."""
from __future__ import annotations

from ui.charts.figures import export_figure

EXPORT_LABELS = {"size": "File size (MB)", "latency": "Latency per photo (ms)"}


def test_the_export_chart_leaves_out_a_size_it_does_not_have_and_writes_numbers_as_the_table_does():
    """Issue 17, item 4: Keras (timed as the reference, no .keras file made) was an empty size bar, and the chart
    wrote sizes with one decimal where the table and the model card use two."""
    figure = export_figure(["float32", "int8", "Keras"], [13.471, 3.98, None], [8.0, 5.44, 23.8], EXPORT_LABELS)
    size, latency = figure.data
    assert list(size.x) == ["float32", "int8"] and list(size.y) == [13.471, 3.98]
    assert list(size.text) == ["13.47", "3.98"]
    assert list(latency.x) == ["float32", "int8", "Keras"]
    assert list(latency.text) == ["8.0", "5.4", "23.8"]  # one decimal, "8.0" too


def test_the_export_chart_marks_a_latency_it_does_not_have():
    figure = export_figure(["float32", "Keras"], [13.4, 20.0], [None, 23.8], EXPORT_LABELS)
    size, latency = figure.data
    assert list(size.x) == ["float32", "Keras"]
    assert list(latency.text) == ["–", "23.8"]
