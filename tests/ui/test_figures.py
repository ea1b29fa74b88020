"""The dashboard's figures (pure functions of plain data): what they draw, where, and how they write numbers."""
from __future__ import annotations

from ui.charts.compare import compare_figure
from ui.charts.figures import curves_figure, export_figure

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


HEAD = [{"epoch": e, "phase": "head", "loss": 1.0 / e, "accuracy": 0.5 + 0.1 * e, "val_loss": 1.2 / e,
         "val_accuracy": 0.45 + 0.1 * e} for e in (1, 2, 3)]
# A fine-tuning run's history as tlcore.training.pipeline.fine_tune saves it: its parent's epochs, then its own,
# numbered on.
TUNED = HEAD + [{"epoch": e, "phase": "fine_tune", "loss": 0.2, "accuracy": 0.95, "val_loss": 0.3,
                 "val_accuracy": 0.9} for e in (4, 5)]
CURVE_LABELS = {"loss": "Loss", "accuracy": "Accuracy", "train": "train", "val": "validation", "epoch": "epoch"}


def traces(figure) -> dict:
    """(trace name, "loss" or "accuracy") -> (x values, y values)."""
    return {(tr.name, "accuracy" if tr.xaxis == "x2" else "loss"): (list(tr.x), list(tr.y)) for tr in figure.data}


def test_a_fine_tuning_run_shown_with_its_parent_is_drawn_as_its_continuation():
    """Issue 17, item 6: the fine-tuning run's epochs 1-3 (its parent's) were drawn exactly under the parent's."""
    drawn = traces(compare_figure({"tuned": TUNED, "base": HEAD}, CURVE_LABELS, parents={"tuned": "base"}))
    for metric in ("loss", "accuracy"):
        for part, key in (("validation", "val_" + metric), ("train", metric)):
            x, y = drawn[f"tuned · {part}", metric]
            assert x == [4, 5] and y == [h[key] for h in TUNED[3:]]  # after the parent's last head epoch
            assert drawn[f"base · {part}", metric] == ([1, 2, 3], [h[key] for h in HEAD])  # the shared part, once
    # Joined to the parent's last point by a dotted segment in the run's colour, one per curve.
    joins = [tr for tr in compare_figure({"tuned": TUNED, "base": HEAD}, CURVE_LABELS, {"tuned": "base"}).data
             if tr.name == "tuned"]
    assert len(joins) == 4 and all(list(tr.x) == [3, 4] and tr.line.dash == "dot" for tr in joins)


def test_a_fine_tuning_run_shown_without_its_parent_keeps_its_whole_history():
    drawn = traces(compare_figure({"tuned": TUNED}, CURVE_LABELS, parents={"tuned": "base"}))
    assert drawn["tuned · validation", "accuracy"][0] == [1, 2, 3, 4, 5]
    assert not [name for name, _ in drawn if name == "tuned"]  # nothing to join to


CURVES_LABELS = {**CURVE_LABELS, "fine_tune_start": "fine-tuning starts"}


def test_the_fine_tuning_mark_sits_inside_the_accuracy_panel_not_on_its_title():
    """Issue 17, item 6: "fine-tuning starts" was written at the height of the panel titles, over "Accuracy"."""
    early = HEAD[:1] + [{**TUNED[-1], "epoch": e} for e in range(2, 9)]  # one head epoch, seven fine-tuning
    for history, side in ((TUNED, "right"), (early, "left")):
        figure = curves_figure(history, CURVES_LABELS)
        (mark,) = [a for a in figure.layout.annotations if a.text == "fine-tuning starts"]
        titles = [a for a in figure.layout.annotations if a.text in ("Loss", "Accuracy")]
        assert mark.xref == "x2" and mark.yref == "y2 domain" and 0 <= mark.y < 0.5  # low in the panel
        assert mark.yanchor == "bottom"
        assert all(t.yref == "paper" and t.y >= 1 for t in titles)  # the titles sit above the panels
        # On the side of the line with more epochs, so the text stays inside the panel.
        boundary = next(h["epoch"] for h in history if h["phase"] == "fine_tune") - 0.5
        assert mark.x == boundary and mark.xanchor == side
