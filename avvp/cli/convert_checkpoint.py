"""`avvp-convert-checkpoint`: an official repository's checkpoint → an avvp checkpoint.

    avvp-convert-checkpoint --from {han,valor,valor+,valor++,mmpyr,leap,mmcse,cvcms,ma} OFFICIAL.pt --out avvp.pt

The official state dict is mapped key by key onto avvp's model with the matching preset
(avvp.train.convert); unmatched, missing or mis-shaped keys stop it with the full list. The written file
is an `avvp.train.checkpoint.Checkpoint` (its provenance: the released features the official code trained
on), accepted by `avvp-parse`, `avvp-train --init-from` and `Checkpoint.load`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from avvp import faults


def build_parser() -> argparse.ArgumentParser:
    from avvp.train.convert import LAYOUTS

    p = argparse.ArgumentParser(prog="avvp-convert-checkpoint", description=__doc__.split("\n\n")[0],
                                epilog=faults.EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, choices=LAYOUTS.names(), help="official network")
    p.add_argument("checkpoint", help="the official .pt (a state dict, possibly wrapped)")
    p.add_argument("--out", required=True, help="avvp checkpoint to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from avvp.train.convert import convert_checkpoint

    try:
        report = convert_checkpoint(args.source, args.checkpoint, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"avvp-convert-checkpoint: error: {exc}", file=sys.stderr)
        return faults.EXIT_USAGE
    print(f"converted {args.checkpoint} (--from {args.source}): {report.mapped} tensors, {report.parameters} "
          f"parameters; {len(report.ignored)} keys of unused official modules skipped -> {args.out}")
    return faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
