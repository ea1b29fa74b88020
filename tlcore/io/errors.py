"""The one exception type whose message is meant for users."""
from __future__ import annotations

__all__ = ["TLError"]


class TLError(Exception):
    """An error a user can cause and fix; its message is one clear sentence."""
