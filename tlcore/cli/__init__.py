"""Command line: ``python -m tlcore <command>``; ``python -m tlcore --help`` lists the commands.

With ``--json`` the last line of stdout is one JSON object (or list). Errors a user can cause exit with status 2
and one line on stderr; anything else exits with status 1, one line on stderr, and the traceback in the log file.
One module per command group (training, models, adversarial, lab); their options come from the config
dataclasses' fields (:mod:`tlcore.cli.options`).
"""
from .main import build_parser, log_path, main, route_native_stderr

__all__ = ["build_parser", "main", "route_native_stderr", "log_path"]
