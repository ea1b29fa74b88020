"""Streamlit's own widget texts (uploader, camera) are replaced by the catalog's in every language but English."""
from __future__ import annotations

from tests.ui.conftest import open_page
from ui.frame.chrome import WIDGET_TEXTS, widget_texts_css
from ui.frame.i18n import translate


def test_english_keeps_streamlits_own_texts():
    assert widget_texts_css("en", {key: "x" for key in WIDGET_TEXTS}) == ""


def test_another_language_hides_each_text_and_draws_the_catalogs_written_as_css_strings():
    texts = {key: translate(f"widget.{key}", "fr") for key in WIDGET_TEXTS}
    css = widget_texts_css("fr", texts)
    for text in texts.values():
        assert f'content: "{text}"' in css  # written as is: CSS reads "\\u00e9" as other characters than "é"
    # A quote, a backslash or a closing tag in a translation cannot end the CSS string or the style early.
    hostile = widget_texts_css("fr", {**texts, "upload": 'a"}body{display:none}</style>\\'})
    assert 'content: "a\\"}body{display:none}\\3c /style>\\\\"' in hostile
    assert hostile.count("</style>") == 1


def test_a_french_page_carries_the_style_and_an_english_one_does_not(sid, workspace):
    def styles(at):
        return [h.proto.body for h in at.get("html") if "stFileUploaderDropzone" in h.proto.body]

    assert styles(open_page("pages/1_Data.py", sid)) == []
    workspace.update_settings(language="fr")
    (style,) = styles(open_page("pages/1_Data.py", sid))
    assert translate("widget.upload", "fr") in style
