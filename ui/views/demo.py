"""The demo page's link and QR code (issue 21, item 3)."""
from __future__ import annotations

import io
from urllib.parse import urlencode, urlsplit, urlunsplit

__all__ = ["demo_link", "qr_png"]


def demo_link(page_url: str, token: str) -> str:
    """The address of the demo ``token`` on the server that served ``page_url`` (the address this browser sees):
    its Demo page with the token alone, never the session id."""
    parts = urlsplit(page_url)
    return urlunsplit((parts.scheme, parts.netloc, "/Demo", urlencode({"d": token}), ""))


def qr_png(text: str, scale: int = 6) -> bytes:
    """A QR code of ``text`` as PNG bytes."""
    import segno

    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=2)
    return out.getvalue()
