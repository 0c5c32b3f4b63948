"""Console scripts: one module per command, each a thin wrapper over the Python API."""
from __future__ import annotations

import functools
import sys
from typing import Callable

from avvp.faults import EXIT_USAGE


def reports_missing_extras(main: Callable[..., int]) -> Callable[..., int]:
    """A console script's main(): a missing pyproject extra (avvp._extras.MissingExtra) is one line on
    stderr naming `pip install 'avvp[...]'` and exit code 2, not a traceback."""

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        from avvp._extras import MissingExtra

        try:
            return main(*args, **kwargs)
        except MissingExtra as err:
            prog = main.__module__.rsplit(".", 1)[-1].replace("_", "-")
            print(f"avvp-{prog}: error: {err}", file=sys.stderr)
            return EXIT_USAGE

    return run
