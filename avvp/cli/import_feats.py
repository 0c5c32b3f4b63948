"""`avvp-import`: bring the released AVVP / VALOR feature folders into an avvp store."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avvp import faults
from avvp._env import apply_defaults
from avvp.data.importer import import_released, print_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-import", description=__doc__, epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feats", type=Path, help="folder with vggish/, res152/, r2plus1d_18/ (official AVVP release)")
    p.add_argument("--valor", type=Path, help="folder with CLIP/ and CLAP/ (features, segment_pseudo_labels)")
    p.add_argument("--out", type=Path, required=True, help="store to create or complete (HDF5)")
    return p


def main(argv: list[str] | None = None) -> int:
    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    args = build_parser().parse_args(argv)
    if args.feats is None and args.valor is None:
        print("avvp-import: give --feats and/or --valor", file=sys.stderr)
        return faults.EXIT_USAGE
    try:
        summary = import_released(args.out, args.feats, args.valor)
    except (FileNotFoundError, ValueError, faults.OneLineError) as err:
        print(f"avvp-import: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    print_summary(summary, args.out)
    return faults.EXIT_PARTIAL if summary.failures else faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
