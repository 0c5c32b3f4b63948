"""`--backbone-opt BACKBONE.OPTION=VALUE` for the commands that build backbones (avvp-extract, avvp-parse).

Argument wiring only: the option names, their types and checks are each backbone's `Options`
(avvp.extract.backbones); the old per-option flags stay for one release as deprecated aliases.
"""
from __future__ import annotations

import argparse
import sys

from avvp.extract.backbones import BACKBONES, backbone_options, parse_option_assignment

# deprecated flag -> (backbone, option) it sets; kept for one release
DEPRECATED_FLAGS = (("--clip-model", "clip", "model"), ("--clip-pretrained", "clip", "pretrained"),
                    ("--clap-ckpt", "clap", "ckpt"))


def options_help() -> str:
    """Every backbone with its option names, from the registry."""
    from dataclasses import fields

    return "; ".join(f"{name}: {', '.join(sorted(f.name for f in fields(BACKBONES.get(name).Options)))}"
                     for name in BACKBONES.names())


def option_assignment(text: str) -> tuple[str, str, str]:
    """argparse type of --backbone-opt: an unknown backbone or option is an argparse error listing the valid ones."""
    try:
        return parse_option_assignment(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_backbone_option_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone-opt", action="append", default=[], type=option_assignment,
                        metavar="BACKBONE.OPTION=VALUE",
                        help="a backbone option, repeatable, e.g. clip.model=ViT-B-32 (" + options_help() + ")")
    for flag, backbone, option in DEPRECATED_FLAGS:
        parser.add_argument(flag, default=None, help=f"deprecated: use --backbone-opt {backbone}.{option}=VALUE")


def backbone_options_from_args(args: argparse.Namespace, prog: str):
    """The typed `backbone_options` tuple of the parsed arguments (ValueError for a bad value). Each
    deprecated flag used prints a one-line notice naming the new form; --backbone-opt wins over it."""
    assignments = []
    for flag, backbone, option in DEPRECATED_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            print(f"{prog}: NOTICE: {flag} is deprecated and will be removed in the next release; "
                  f"use --backbone-opt {backbone}.{option}={value}", file=sys.stderr)
            assignments.append((backbone, option, value))
    return backbone_options(assignments + list(args.backbone_opt))
