"""The server settings a team deployment relies on."""
from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_streamlit_security_settings_stay_on():
    server = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert 0 < server["maxUploadSize"] <= 1000  # MB per uploaded file, enforced by Streamlit and the workspace
