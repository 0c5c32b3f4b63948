"""`avvp-pseudolabel`: VALOR segment pseudo-labels, EIoU matrices, threshold calibration and a quality report.

    avvp-pseudolabel --data data.h5 [--eiou paper|leap-code] [--calibrate val] [--write-thresholds]
                     [--clip-thresholds X] [--clap-thresholds X] [--report [--report-dir DIR]]
                     [--annotations 2024|2020]

Steps, in this order (so test ground truth is read only after thresholds are fixed):
1. per modality, the label source: the VALOR rule on /zeroshot/{clip,clap}, or labels already in the store
   (imported VALOR release labels are never overwritten; then only EIoU is computed);
2. --calibrate val: per-class threshold search on val labels only; then the gain on val and test;
3. write /pseudo/{audio,visual} (computed ones) and /pseudo/eiou (upsert: re-running replaces rows);
   --write-thresholds uses the calibrated thresholds and writes them to `<store>.valor_thresholds.json`;
4. --report: official metric of the pseudo-labels on val and test, per-class table, PNG charts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avvp import faults
from avvp._env import apply_defaults
from avvp.data.llp import EVAL_ANNOTATIONS
from avvp.data.store import StoreError
from avvp.pseudolabels.calibrate import CALIBRATION_SPLITS, CalibrationConfig
from avvp.pseudolabels.eiou import EIOU_DEFINITIONS
from avvp.pseudolabels.run import DEFAULT_EIOU, PseudoLabelRunConfig, run_pseudolabels
from avvp.pseudolabels.valor import PseudoLabelError

__all__ = ["build_parser", "main", "PseudoLabelRunConfig", "run_pseudolabels"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-pseudolabel", description=__doc__, epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the HDF5 store")
    p.add_argument("--eiou", choices=EIOU_DEFINITIONS.names(), default=DEFAULT_EIOU,
                   help=f"EIoU definition written to /pseudo/eiou (default {DEFAULT_EIOU})")
    p.add_argument("--calibrate", dest="calibrate_split", choices=CALIBRATION_SPLITS,
                   help="search per-class thresholds on this split's labels and report the gain on val and test")
    p.add_argument("--write-thresholds", action="store_true",
                   help="write the calibrated thresholds into the pseudo-labels and <store>.valor_thresholds.json")
    p.add_argument("--clip-thresholds", help="visual thresholds: a .json/.txt file of 25 numbers or a comma list")
    p.add_argument("--clap-thresholds", help="audio thresholds: a .json/.txt file of 25 numbers or a comma list")
    p.add_argument("--report", action="store_true", help="official metric of the pseudo-labels on val and test")
    p.add_argument("--report-dir", type=Path, help="where the PNG charts go (default: next to the store)")
    p.add_argument("--annotations", choices=list(EVAL_ANNOTATIONS), default="2024",
                   help="LLP eval annotations when the store has no /gt arrays")
    p.add_argument("--min-weak-videos", type=int, default=CalibrationConfig().min_weak_videos,
                   help="calibration keeps the threshold of classes carried by fewer val videos")
    return p


def main(argv: list[str] | None = None) -> int:
    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    args = build_parser().parse_args(argv)
    cfg = PseudoLabelRunConfig(
        data=args.data, eiou=args.eiou, calibrate_split=args.calibrate_split, write_thresholds=args.write_thresholds,
        clip_thresholds=args.clip_thresholds, clap_thresholds=args.clap_thresholds, report=args.report,
        report_dir=args.report_dir, annotations=args.annotations,
        calibration=CalibrationConfig(min_weak_videos=args.min_weak_videos),
    )
    try:
        run_pseudolabels(cfg)
    except (PseudoLabelError, StoreError, FileNotFoundError, KeyError) as err:
        print(f"avvp-pseudolabel: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    return faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
