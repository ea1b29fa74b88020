"""The parser of every command, the log file, and :func:`main`: one line on stderr and exit status 2 for an
error the user can fix, 1 (with the traceback in the log) for anything else."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

from ..io.errors import TLError
from ..io.paths import default_cache_dir
# Each group's module by name, not ``from . import``: that form reads as importing the package itself, which
# imports this module (a cycle to any reader of the import graph).
from .adversarial import COMMANDS as _ADVERSARIAL, add_parsers as _adversarial_parsers
from .lab import COMMANDS as _LAB, add_parsers as _lab_parsers
from .models import COMMANDS as _MODELS, add_parsers as _models_parsers
from .options import PROG, Parser, one_line
from .progress import clear_progress_line, release_slot, wait_for_slot
from .training import COMMANDS as _TRAINING, add_parsers as _training_parsers

__all__ = ["build_parser", "main", "route_native_stderr", "log_path"]

log = logging.getLogger("tlcore")

# Each command group adds its commands to the parser and names their handlers: (its parsers, its commands), in the
# order ``--help`` lists them.
_GROUPS = ((_training_parsers, _TRAINING), (_models_parsers, _MODELS), (_adversarial_parsers, _ADVERSARIAL),
           (_lab_parsers, _LAB))
_COMMANDS = {name: handler for _, commands in _GROUPS for name, handler in commands.items()}


def build_parser() -> Parser:
    """The parser of ``python -m tlcore`` and all its commands."""
    parser = Parser(prog=PROG, description="Transfer Lab: transfer learning for image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add_parsers, _ in _GROUPS:
        add_parsers(sub)
    return parser


def log_path() -> Path:
    """The CLI's log file: tracebacks and TensorFlow's native messages go there."""
    return default_cache_dir() / "logs" / "tlcore.log"


def route_native_stderr() -> None:
    """Send file descriptor 2 (TensorFlow's C++ start-up noise) to the log file.

    Python's ``sys.stderr`` keeps writing to the terminal, so users see only
    this CLI's own lines. Called by ``python -m tlcore`` only, never by tests
    that run :func:`main` in-process.
    """
    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        terminal = os.dup(2)
        log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="replace")


def _setup_log() -> tuple[Path, logging.Handler]:
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return path, handler


def main(argv=None) -> int:
    """Run the CLI; returns the exit status."""
    path, handler = _setup_log()
    try:
        return _main(argv, path)
    finally:
        # Each call adds its own handler; remove it so repeated in-process calls neither
        # duplicate log lines nor leak open files.
        log.removeHandler(handler)
        handler.close()


# The password of a URL given as an option (--mlflow https://user:password@host): never written to the log.
_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^@/\s]*@")


def _without_passwords(argv) -> list[str]:
    return [_PASSWORD.sub(r"\1***@", str(a)) for a in argv]


def _main(argv, path: Path) -> int:
    try:
        ended = wait_for_slot(argv)
        if ended is not None:
            return ended
        args = build_parser().parse_args(argv)
        log.info("command %s", _without_passwords(sys.argv[1:] if argv is None else argv))
        result = _COMMANDS[args.command](args)
        if args.json:
            print(json.dumps(result))
        return 0
    except TLError as exc:
        log.info("user error: %s", exc)
        clear_progress_line()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        clear_progress_line()
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        log.exception("internal error")
        clear_progress_line()
        print(f"error: internal error ({type(exc).__name__}: {one_line(exc)}); details in {path}", file=sys.stderr)
        return 1
    finally:
        release_slot()  # a command that failed before its work (bad arguments) frees its slot too
