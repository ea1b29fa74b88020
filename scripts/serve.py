"""``make serve``: the dashboard for a team, on every network interface, behind a gate.

Prints the address to share and how people get in, then becomes the Streamlit server:

- with single sign-on (``.streamlit/secrets.toml`` has an ``[auth]`` section), people sign in;
- otherwise with an access code: ``$TLCORE_ACCESS_CODE`` when set, else one generated once and
  kept in ``<cache>/access.code`` (mode 0600), so a restart keeps the code and people's bookmarks.

``make run`` stays on the local machine (127.0.0.1) without a gate.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlcore.lab.access_code import ENV, code_path, ensure_access_code  # noqa: E402
from tlcore.io.errors import TLError  # noqa: E402

__all__ = ["sso_configured", "share_address", "plan", "main"]


def sso_configured(root: Path = ROOT) -> bool:
    """Whether ``.streamlit/secrets.toml`` configures Streamlit's sign-in (an ``[auth]`` section)."""
    try:
        return "auth" in tomllib.loads((root / ".streamlit" / "secrets.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def share_address(port: int) -> str:
    """The address other machines reach this one at (the interface of the default route), with ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a documentation address: UDP connect sends nothing
            host = probe.getsockname()[0]
        except OSError:  # no network route: the machine's name is the best guess
            host = socket.gethostname()
    return f"http://{host}:{port}"


def plan(host: str, port: int, root: Path = ROOT) -> tuple[list[str], dict[str, str], str]:
    """(Streamlit command, its environment, the message for the operator) of serving on ``host``:``port``."""
    env = dict(os.environ)
    argv = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"),
            "--server.address", host, "--server.port", str(port)]
    address = share_address(port)
    if sso_configured(root):
        how = "People sign in with the identity provider set in .streamlit/secrets.toml ([auth])."
    else:
        env[ENV] = ensure_access_code()
        kept = "" if os.environ.get(ENV, "").strip() else f" (kept in {code_path()}, mode 0600)"
        how = f"Access code: {env[ENV]}{kept}\nGive it only to the people you invite; set {ENV} to choose another."
    message = f"Transfer Lab for your team\nShare this address: {address}\n{how}\n"
    return argv, env, message


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on (default: all)")
    parser.add_argument("--port", type=int, default=8501)
    ns = parser.parse_args(args)
    try:
        argv, env, message = plan(ns.host, ns.port)
    except TLError as exc:
        print(f"make serve: {exc}", file=sys.stderr)
        sys.exit(2)
    print(message, flush=True)
    os.chdir(ROOT)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
