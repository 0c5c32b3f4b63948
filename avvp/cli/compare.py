"""`avvp-compare A B`: per array and per video, how close two feature sources are (stores or released folders).

Prints a summary table (median / 1st percentile cosine, median / 99th percentile max relative difference,
worst videos), differing provenance and one-sided ids; writes compare.csv and a histogram PNG per array
to --out. Exit codes: 0 = compared; 2 = nothing to compare (unreadable input, no shared array or video).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avvp import faults
from avvp._env import apply_defaults
from avvp.data.compare import CompareError, run_compare


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-compare", description=__doc__, epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="a store (.h5) or a released folder (with feats/ or CLIP/ CLAP/)")
    p.add_argument("b", type=Path, help="the other store or released folder")
    p.add_argument("--out", type=Path, default=Path("avvp_compare"),
                   help="folder for compare.csv and the histograms (default ./avvp_compare)")
    return p


def main(argv: list[str] | None = None) -> int:
    apply_defaults()
    args = build_parser().parse_args(argv)
    try:
        run_compare(args.a, args.b, args.out)
    except (CompareError, OSError) as err:
        print(f"avvp-compare: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    return faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
