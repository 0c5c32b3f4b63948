"""`python -m avvp.demo --out demo_out [--weights-dir DIR]`: see avvp/demo/run.py."""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from avvp._env import apply_defaults

    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    from avvp.demo.run import DemoConfig, PlantedConfig, SyntheticPartConfig, __doc__ as doc, run_demo

    p = argparse.ArgumentParser(prog="python -m avvp.demo", description=doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--weights-dir", default=None, help="offline backbone weights (default: $AVVP_WEIGHTS_DIR)")
    p.add_argument("--epochs", type=int, default=PlantedConfig.epochs, help="HAN epochs on the planted clips")
    p.add_argument("--clips", type=int, default=None, metavar="N",
                   help="number of planted clips (split 60/20/20 %% train/val/held out; default "
                        f"{PlantedConfig.num_train}/{PlantedConfig.num_val}/{PlantedConfig.num_test})")
    p.add_argument("--no-synthetic", action="store_true", help="skip part B (the synthetic store)")
    args = p.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("demo: the ffmpeg binary is required (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    planted = replace(PlantedConfig(), epochs=args.epochs)
    if args.clips is not None:
        n_val = n_test = max(2, args.clips // 5)
        planted = replace(planted, num_train=max(2, args.clips - n_val - n_test), num_val=n_val, num_test=n_test)
    run_demo(DemoConfig(out=args.out, weights_dir=args.weights_dir, planted=planted,
                        synthetic=None if args.no_synthetic else SyntheticPartConfig()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
