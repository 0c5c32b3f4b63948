"""`avvp-train`: train a parsing model on a store with a paper preset.

    avvp-train --model han --preset valor++ --data data.h5 --out runs/NAME
               [--audio clap_tokens --visual clip,r2plus1d] [--labels weak|pseudo|refined]
               [--epochs N] [--seed S] [--device auto] [--resume] [--set key=value ...]

The preset (default: the model's own, e.g. `han`) gives every setting; named flags and then `--set`
overrides (`--set optim.lr=1e-4`, `--set model.options.layers=2`) change it. `--visual clip,r2plus1d`
means visual=clip, motion=r2plus1d; `--visual clip,none` trains without a 3D stream.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from avvp._env import apply_defaults
import avvp.models  # noqa: F401  (registers every model and the presets their modules define)
from avvp.train.config import PRESETS, ExperimentConfig, apply_override, preset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="registered model (han, mmpyr, ma, ...); default: the preset's")
    p.add_argument("--preset", help=f"named settings; default: the model name. Known: {', '.join(PRESETS.names())}")
    p.add_argument("--data", required=True, help="store (.h5)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--audio", help="audio feature name (/features/<name>)")
    p.add_argument("--visual", help="visual[,motion] feature names, e.g. clip,r2plus1d or resnet152,none")
    p.add_argument("--labels", choices=("weak", "pseudo", "refined"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. optim.lr=1e-4 (repeatable)")
    return p


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    import avvp.models  # noqa: F401  (models register their runners; other modules their presets)
    from avvp.train.data import parse_visual_arg

    name = args.preset or args.model or "han"
    cfg = preset(name)
    if args.model:
        cfg.model.name = args.model
    cfg.data.store = args.data
    cfg.train.out = args.out
    if args.audio:
        cfg.data.audio = args.audio
    if args.visual:
        cfg.data.visual, cfg.data.motion = parse_visual_arg(args.visual)
    for flag, attr in (("labels", ("data", "labels")), ("epochs", ("optim", "epochs")),
                       ("batch_size", ("optim", "batch_size")), ("seed", ("train", "seed")),
                       ("device", ("train", "device"))):
        value = getattr(args, flag)
        if value is not None:
            setattr(getattr(cfg, attr[0]), attr[1], value)
    if args.no_progress:
        cfg.train.progress = False
    for assignment in args.overrides:
        cfg = apply_override(cfg, assignment)
    cfg.validate()
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from avvp.data.store import StoreError
    from avvp.train import train
    from avvp.train.labels import MissingTargetsError

    try:
        cfg = resolve_config(args)
        train(cfg, resume=args.resume)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, MissingTargetsError, StoreError) as exc:
        print(f"avvp-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
