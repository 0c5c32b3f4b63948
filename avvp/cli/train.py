"""`avvp-train`: train a parsing model on a store with a paper preset.

    avvp-train --model han --preset valor++ --data data.h5 --out runs/NAME
               [--audio clap_tokens --visual clip,r2plus1d] [--labels weak|pseudo|refined]
               [--epochs N] [--seed S] [--device auto] [--resume] [--init-from CKPT] [--set key=value ...]
    avvp-train --preset cvcms --print-config          # the resolved settings as YAML, nothing trained
    avvp-train --config runs/NAME/config.yaml --out runs/NAME2   # start from a written config

The preset (default: the model's own, e.g. `han`) or `--config` gives every setting; named flags and then
`--set` overrides (`--set optim.lr=1e-4`, `--set model.options.layers=2`) change it. `--init-from`
initialises the model with the weights of an avvp checkpoint (a run's best.pt, or one written by
`avvp-convert-checkpoint`) to fine-tune it. `--visual clip,r2plus1d`
means visual=clip, motion=r2plus1d; `--visual clip,none` trains without a 3D stream.

Ctrl-C (SIGINT) or SIGTERM stops the run with one line: <out>/last.pt holds the last finished epoch
(written after every epoch, and before the first), and the same command with `--resume` continues
bit-exactly. Exit codes below.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from avvp import faults
from avvp._env import apply_defaults
from avvp.train.config import PRESETS, ExperimentConfig, apply_override, preset
from avvp.train.labels import LABEL_KINDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-train", description=__doc__.split("\n\n")[0], epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="registered model (han, mmpyr, ma, ...); default: the preset's")
    p.add_argument("--preset", help=f"named settings; default: the model name. Known: {', '.join(PRESETS.names())}")
    p.add_argument("--config", help="start from this config.yaml (as written into a run directory) instead of a preset")
    p.add_argument("--data", help="store (.h5); required unless --print-config or given by --config")
    p.add_argument("--out", help="run directory; required unless --print-config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--init-from", help="avvp checkpoint whose weights initialise the model (fine-tuning)")
    p.add_argument("--audio", help="audio feature name (/features/<name>)")
    p.add_argument("--visual", help="visual[,motion] feature names, e.g. clip,r2plus1d or resnet152,none")
    p.add_argument("--labels", choices=LABEL_KINDS.names())
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--logger", help="per-epoch logger besides metrics.jsonl and curves.png: none | tensorboard")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. optim.lr=1e-4 (repeatable)")
    return p


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    from avvp.train.data import parse_visual_arg

    if args.config:
        from avvp.train.config import load_config

        cfg = load_config(args.config)
        if args.preset:
            raise ValueError("--config and --preset both give the starting settings; pass one")
    else:
        cfg = preset(args.preset or args.model or "han")
    if args.visual:
        cfg.data.visual, cfg.data.motion = parse_visual_arg(args.visual)
    # each flag given replaces one config field (the flag's name -> (section, field))
    for flag, attr in (("model", ("model", "name")), ("data", ("data", "store")), ("out", ("train", "out")),
                       ("init_from", ("train", "init_from")), ("logger", ("train", "logger")),
                       ("audio", ("data", "audio")), ("labels", ("data", "labels")), ("epochs", ("optim", "epochs")),
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
    from avvp.train.loop import describe_last_checkpoint

    try:
        cfg = resolve_config(args)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return faults.EXIT_OK
        if not cfg.data.store or not cfg.train.out:
            raise ValueError("--data and --out are required (or given by --config) unless --print-config")
        with faults.guard("avvp-train", saved=lambda: describe_last_checkpoint(cfg.train.out),
                          resume="re-run the same command with --resume to continue") as fault:
            train(cfg, resume=args.resume)
        if fault.exit_code is not None:
            return fault.exit_code
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, MissingTargetsError, StoreError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"avvp-train: error: {msg}", file=sys.stderr)
        return faults.EXIT_USAGE
    return faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
