"""The command lines the demo prints, generated from the very configs it runs.

Each function maps a library config back to the arguments of its console script, so what the demo shows
is what a user would type to get the same run (tests/demo checks that each CLI turns the printed
arguments back into an equal config). A setting is printed only where it differs from the command's
default.
"""
from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Sequence


def shown(prog: str, argv: Sequence[Any]) -> str:
    """`$ prog arg ...`, shell-quoted."""
    return f"$ {prog} {shlex.join([str(a) for a in argv])}"


def _option_argv(backbone_options: Sequence[tuple[str, Sequence[tuple[str, Any]]]]) -> list[str]:
    out: list[str] = []
    for name, options in backbone_options:
        for key, value in options:
            out += ["--backbone-opt", f"{name}.{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def extract_argv(cfg: Any, videos: Any, out: Any, executor: str = "local") -> list[str]:
    """`avvp-extract` arguments of an `ExtractionConfig` (avvp.pipeline.core)."""
    from avvp.pipeline.core import ExtractionConfig

    default = ExtractionConfig()
    argv: list[Any] = ["--videos", videos, *[a for b in cfg.backbones for a in ("--backbone", b)]]
    flags = (("profile", "--profile"), ("weights", "--weights"), ("weights_dir", "--weights-dir"),
             ("device", "--device"), ("precision", "--precision"), ("decoder", "--decoder"), ("start", "--start"),
             ("window", "--window"), ("batch_videos", "--batch-size"), ("prefetch_batches", "--prefetch"),
             ("decode_workers", "--decode-workers"), ("flush_every", "--flush-every"),
             ("flush_seconds", "--flush-seconds"))
    for name, flag in flags:
        value = getattr(cfg, name)
        if value != getattr(default, name) and value is not None:
            argv += [flag, value]
    argv += _option_argv(cfg.backbone_options)
    argv += ["--executor", executor, "--out", out]
    return [str(a) for a in argv]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "model.options":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


# config keys with a named avvp-train flag (the rest is printed as --set KEY=VALUE)
TRAIN_FLAGS = {"data.store": "--data", "train.out": "--out", "data.audio": "--audio", "data.labels": "--labels",
               "optim.epochs": "--epochs", "optim.batch_size": "--batch-size", "train.seed": "--seed",
               "train.device": "--device", "train.init_from": "--init-from", "train.logger": "--logger"}


def train_argv(cfg: Any) -> list[str]:
    """`avvp-train` arguments of an `ExperimentConfig`: the preset, then each setting that differs from it."""
    import yaml

    from avvp.train.config import preset

    base, ours = _flat(preset(cfg.preset).to_dict()), _flat(cfg.to_dict())
    argv: list[str] = ["--preset", cfg.preset]
    if ours["model.name"] != base["model.name"]:
        argv += ["--model", ours["model.name"]]
    for key, flag in TRAIN_FLAGS.items():
        if ours[key] != base[key]:
            argv += [flag, str(ours[key])]
    if (ours["data.visual"], ours["data.motion"]) != (base["data.visual"], base["data.motion"]):
        argv += ["--visual", f"{ours['data.visual']},{ours['data.motion'] or 'none'}"]
    if ours["train.progress"] != base["train.progress"] and not ours["train.progress"]:
        argv += ["--no-progress"]
    handled = set(TRAIN_FLAGS) | {"model.name", "data.visual", "data.motion", "train.progress", "preset"}
    for key in (k for k in ours if k not in handled and k != "model.options"):
        if ours[key] != base[key]:
            argv += ["--set", f"{key}={yaml.safe_dump(ours[key], default_flow_style=True).strip().removesuffix('...').strip()}"]
    theirs = base["model.options"]
    for key, value in ours["model.options"].items():
        if key not in theirs or theirs[key] != value:
            argv += ["--set", f"model.options.{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    return argv


def parse_argv(cfg: Any, videos: Sequence[Any]) -> list[str]:
    """`avvp-parse` arguments of a `ParseConfig` (avvp.parse.run)."""
    from avvp.parse.run import ParseConfig

    default = ParseConfig(checkpoint=cfg.checkpoint)
    argv: list[Any] = [*videos, "--checkpoint", cfg.checkpoint]
    flags = (("out", "--out"), ("weights", "--weights"), ("weights_dir", "--weights-dir"), ("device", "--device"),
             ("precision", "--precision"), ("decoder", "--decoder"), ("profile", "--profile"), ("gate", "--gate"),
             ("threshold", "--threshold"))
    for name, flag in flags:
        value = getattr(cfg, name)
        if value != getattr(default, name) and value is not None:
            argv += [flag, value]
    for name, flag in (("html", "--html"), ("embed_video", "--embed-video"),
                       ("accept_feature_mismatch", "--accept-feature-mismatch")):
        if getattr(cfg, name):
            argv.append(flag)
    if not cfg.thumbnails:
        argv.append("--no-thumbnails")
    if cfg.max_embed_bytes != default.max_embed_bytes:
        argv += ["--max-embed-mb", cfg.max_embed_bytes / (1024 * 1024)]
    argv += _option_argv(cfg.backbone_options)
    return [str(a) for a in argv]


def differing_fields(a: Any, b: Any) -> list[str]:
    """Names of the dataclass fields where `a` and `b` differ (for the tests' messages)."""
    return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
