"""`avvp-convert-weights`: official pretrained weight files, as their users hold them, → the files avvp loads.

    avvp-convert-weights vggish --tf-checkpoint vggish_model.ckpt [--pca vggish_pca_params.npz] --out DIR
                                [--tf-python PYTHON]

writes DIR/vggish-10086976.pth (+ DIR/vggish_pca_params-970ea276.pth) in the torchvggish layout; then
`avvp-extract --backbones vggish --weights-dir DIR` uses them (the `weights` attribute names the source).
Reading the TF checkpoint needs TensorFlow, which avvp's environment cannot hold: --tf-python names the
interpreter of one that has it. (CLIP needs no conversion: a transformers folder is read as it is,
`--backbone-opt clip.checkpoint=DIR`.)
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from avvp import faults
from avvp._env import apply_defaults


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-convert-weights", description=__doc__.split("\n\n")[0],
                                epilog=faults.EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="backbone", required=True)
    v = sub.add_parser("vggish", help="the AudioSet TF-slim release -> torchvggish files")
    v.add_argument("--tf-checkpoint", required=True, help="vggish_model.ckpt (a V1 file or a V2 prefix)")
    v.add_argument("--pca", help="vggish_pca_params.npz (for --backbone-opt vggish.postprocess=true)")
    v.add_argument("--out", required=True, help="folder to write; give it to avvp-extract as --weights-dir")
    v.add_argument("--tf-python", help="a Python interpreter with tensorflow installed (default: this one)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    apply_defaults()  # offline hub, like every avvp command
    args = build_parser().parse_args(argv)
    from avvp.extract.backbones.vggish_tf import convert_vggish_release

    try:
        written = convert_vggish_release(args.tf_checkpoint, args.pca, args.out, tf_python=args.tf_python)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"avvp-convert-weights: error: {exc}", file=sys.stderr)
        return faults.EXIT_USAGE
    for role, path in written.items():
        print(f"{role}: {path}")
    print(f"use: --weights-dir {args.out}")
    return faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
