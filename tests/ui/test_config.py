"""The server settings a team deployment relies on: security settings on, local-only by default, `make serve`
as the explicit team choice (issue 14, item 8)."""
from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_streamlit_security_settings_stay_on():
    server = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert 0 < server["maxUploadSize"] <= 1000  # MB per uploaded file, enforced by Streamlit and the workspace


ROOT = CONFIG.parents[1]


def _recipe(target: str) -> list[str]:
    """The command lines of ``target`` in the Makefile."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_the_safe_defaults_are_set_and_streamlit_reads_them():
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert config["server"]["address"] == "127.0.0.1"  # local only, whatever starts Streamlit
    assert config["client"] == {"showErrorDetails": "none", "toolbarMode": "viewer"}
    # Streamlit's own reading of the file (an unknown key or section would only be a warning).
    code = ("from streamlit import config; print(config.get_option('server.address'), "
            "config.get_option('client.showErrorDetails'), config.get_option('client.toolbarMode'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["127.0.0.1", "none", "viewer"]


def test_make_run_listens_on_this_machine_only_and_make_serve_is_the_team_choice():
    (run,) = _recipe("run")
    assert "streamlit run app.py" in run and "--server.address 127.0.0.1" in run
    (serve,) = _recipe("serve")
    assert "scripts/serve.py" in serve


def _serve_module():
    spec = importlib.util.spec_from_file_location("serve_script", ROOT / "scripts" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_serve_listens_everywhere_behind_a_generated_access_code(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TLCORE_ACCESS_CODE", raising=False)
    serve = _serve_module()
    argv, env, message = serve.plan("0.0.0.0", 8502, root=tmp_path)  # a checkout without secrets.toml
    assert argv[-4:] == ["--server.address", "0.0.0.0", "--server.port", "8502"]
    assert argv[1:4] == ["-m", "streamlit", "run"]
    code = env["TLCORE_ACCESS_CODE"]
    kept = tmp_path / "cache" / "access.code"
    assert kept.read_text(encoding="utf-8").strip() == code and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert f"Access code: {code}" in message and ":8502" in message and "Share this address: http://" in message
    assert serve.plan("0.0.0.0", 8502, root=tmp_path)[1]["TLCORE_ACCESS_CODE"] == code  # the same after a restart

    monkeypatch.setenv("TLCORE_ACCESS_CODE", "chosen-by-the-operator")
    argv, env, message = serve.plan("0.0.0.0", 8502, root=tmp_path)
    assert env["TLCORE_ACCESS_CODE"] == "chosen-by-the-operator" and "access.code" not in message


def test_make_serve_with_single_sign_on_needs_no_code(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TLCORE_ACCESS_CODE", raising=False)
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[auth]\nredirect_uri = "https://lab.example.org/oauth2callback"\n',
                                                         encoding="utf-8")
    argv, env, message = _serve_module().plan("0.0.0.0", 8501, root=tmp_path)
    assert "TLCORE_ACCESS_CODE" not in env and "sign in" in message
    assert not (tmp_path / "cache" / "access.code").exists()
