"""What a reader sees of a page run under AppTest: every text, wherever Streamlit draws it.

Titles, Markdown, captions, alerts, widget labels, options and help, metric labels and values, image captions,
progress texts, expander labels, the column names and the text cells of tables, and the texts of plotly
charts (titles, axis titles, legend names, annotations, hover templates). Collected from the element protos
and the chart specs rather than from AppTest's per-kind lists, so that a kind of element no test thought of
is still read.
"""
from __future__ import annotations

import json
import re

from google.protobuf.message import Message

from tests.ui.conftest import shown

__all__ = ["visible_texts", "chart_texts"]

# The proto fields a reader sees. Others are ids, icons, keys, formats, MIME types or values of no language.
_FIELDS = frozenset({"body", "label", "help", "options", "placeholder", "caption", "text", "default", "value",
                     "delta"})
# Streamlit Markdown that is not text: icons, colours, emphasis.
_ICON = re.compile(r":material/[a-z_]+:")
_COLOUR = re.compile(r":(?:red|orange|green|blue|violet|gray|grey|rainbow|primary)\[(.*?)\]")
# A style sheet in an HTML element (ui/frame/chrome.py) is drawn, not read.
_STYLE = re.compile(r"<style[\s\S]*?</style>", re.IGNORECASE)
# Plotly's template syntax in hover texts: %{y:.1%}, <br>, <extra></extra>.
_TEMPLATE = re.compile(r"%\{[^}]*\}|<extra>.*?</extra>|<[^>]+>")


def _strings(message: Message):
    """Every visible string field of a proto, nested messages included."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.type == field.TYPE_MESSAGE:
            for item in values:
                if isinstance(item, Message):
                    yield from _strings(item)
        elif field.type == field.TYPE_STRING and field.name in _FIELDS:
            yield from values


def _markdown(text: str) -> str:
    text = _COLOUR.sub(r"\1", _ICON.sub(" ", shown(_STYLE.sub(" ", text))))
    return text.replace("**", "").replace("`", "")


def chart_texts(spec: dict) -> list[str]:
    """The words of a plotly figure (its JSON): titles, axis titles, annotations, trace names, hover texts."""
    texts = []
    layout = spec.get("layout", {})
    for key, value in layout.items():
        if isinstance(value, dict) and (key == "title" or key.startswith(("xaxis", "yaxis", "legend"))):
            title = value.get("title", value) if key != "title" else value
            texts.append(title.get("text", "") if isinstance(title, dict) else str(title or ""))
    texts += [a.get("text", "") for a in layout.get("annotations", [])]
    for trace in spec.get("data", []):
        texts.append(str(trace.get("name") or ""))
        texts.append(_TEMPLATE.sub(" ", str(trace.get("hovertemplate") or "")))
        words = trace.get("text")
        if isinstance(words, list):  # bar values and marker names; numbers are not words
            texts += [w for w in words if isinstance(w, str)]
    return [t for t in texts if t.strip()]


def _table_texts(frame) -> list[str]:
    texts = [str(c) for c in frame.columns]
    for column in frame.columns:
        texts += [v for v in frame[column].tolist() if isinstance(v, str)]
    return texts


def _nodes(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def visible_texts(at) -> list[str]:
    """Every text the page of ``at`` (an :class:`AppTest` after a run) shows, main area and sidebar, in order."""
    texts = []
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        kind = type(node).__name__
        if kind in ("Dataframe", "Table"):
            texts += _table_texts(node.value)
        elif proto is not None and type(proto).__name__ == "PlotlyChart":
            texts += chart_texts(json.loads(proto.spec))
        elif isinstance(proto, Message):
            texts += [_markdown(s) for s in _strings(proto)]
    return [t for t in texts if t.strip()]
