"""``python -m tlcore``: see :mod:`tlcore.cli`."""
import sys

from .cli import main, route_native_stderr

route_native_stderr()
sys.exit(main())
