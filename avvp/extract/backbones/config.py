"""How a backbone is built: `BackboneConfig` (weights mode, device, precision, options, input profile).

Its own module so that both the backbone contract (base.py) and the weight helpers (weights.py) can name
it without importing each other; `avvp.extract.backbones.base` re-exports it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackboneConfig:
    """How to build a backbone. Never mutated; `dataclasses.replace` to derive variants.

    `options` stays a sorted tuple of (name, value) pairs (hashable, picklable for the Ray actors, and
    what the CLIs and the parse inheritance merge); the backbone turns it into its typed `Options` when
    it is built, which is where unknown names and bad values are rejected."""

    weights: str = "pretrained"  # "pretrained" | "random" (asked for explicitly) | "none" (inputs only, no network)
    weights_dir: str | None = None  # offline weight files; None = the library's standard cache
    device: str = "cpu"  # resolved device string ("cpu", "cuda", "cuda:1")
    precision: str = "fp32"  # "fp32" (exact, every device) | "bf16" | "fp16" (autocast, only when asked)
    options: tuple[tuple[str, Any], ...] = ()  # backbone-specific options, e.g. (("model", "ViT-B-32"),)
    profile: str = "reference"  # network-input profile ("reference" | "clean"), see the backbones' recipes

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def with_options(self, **kw: Any) -> "BackboneConfig":
        merged = dict(self.options)
        merged.update(kw)
        return dataclasses.replace(self, options=tuple(sorted(merged.items())))
