"""`avvp-info`: what a store or a checkpoint holds and how it was made.

    avvp-info PATH [PATH ...] [--json]

A store (HDF5): videos per split, every array with its shape, rows and provenance attributes, failures.
A checkpoint (.pt): model, preset, inputs, the selected epoch and, per input, how its features were made
(backbone, weights, options, profile, precision, release). The logic is `avvp.train.info`.
Exit codes: 0 = every path described, 2 = a path is missing or not an avvp file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from avvp import faults
from avvp._env import apply_defaults


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-info", description=__doc__.split("\n\n")[0], epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="store (.h5) or checkpoint (.pt) files")
    p.add_argument("--json", action="store_true", help="one JSON object per path instead of text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    apply_defaults()
    args = build_parser().parse_args(argv)
    from avvp.train.info import describe, format_description

    rc = faults.EXIT_OK
    for path in args.paths:
        try:
            d = describe(path)
        except (FileNotFoundError, ValueError, OSError) as err:
            print(f"avvp-info: error: {path}: {err}", file=sys.stderr)
            rc = faults.EXIT_USAGE
            continue
        print(json.dumps(d, default=str) if args.json else format_description(d))
    return rc


if __name__ == "__main__":
    sys.exit(main())
