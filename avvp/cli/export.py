"""`avvp-export`: a store's arrays as the released per-video .npy folders (AVVP feats/, VALOR CLIP|CLAP/).

Exit codes: 0 = every folder of the layout written; 3 = written, but some arrays or videos were not
(each named on one line); 2 = nothing could be exported (bad store, no layout array, output not writable).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avvp import faults
from avvp._env import apply_defaults
from avvp.data.export import EXPORT_LAYOUTS, ExportError, export_release
from avvp.data.store import StoreError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-export", description=__doc__, epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the avvp store (HDF5)")
    p.add_argument("--out", type=Path, required=True, help="release root: avvp writes OUT/feats/..., valor OUT/CLIP|CLAP/...")
    p.add_argument("--layout", choices=sorted(EXPORT_LAYOUTS), required=True)
    p.add_argument("--allow-nonrelease", action="store_true",
                   help="also export arrays the released files could not have been (random weights, clean profile, "
                        "bf16/fp16); PROVENANCE.json says so")
    return p


def main(argv: list[str] | None = None) -> int:
    apply_defaults()
    args = build_parser().parse_args(argv)
    try:
        summary = export_release(args.data, args.out, args.layout, allow_nonrelease=args.allow_nonrelease,
                                 echo=lambda line: print(f"avvp-export: {line}", file=sys.stderr))
    except (ExportError, StoreError, FileNotFoundError, OSError) as err:
        print(f"avvp-export: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    for folder, count in summary.folders.items():
        print(f"avvp-export: {summary.root / folder}: {count} files", file=sys.stderr)
    if not summary.folders:
        print("avvp-export: nothing exported", file=sys.stderr)
        return faults.EXIT_USAGE
    return faults.EXIT_PARTIAL if summary.problems else faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
