"""Feature layouts: what the first (time) axis of a per-video feature array means.

A backbone declares the layout of each array it writes and records it as the array's `layout` store
attribute; the trainer reads it back into `InputDims`, so a model knows how to bring each input to the
10 segments without guessing from the length:

    "frames"    one row per 8 fps frame, 80 per 10 s (ResNet-152); the model pools blocks of 8
    "segments"  one row per 1 s segment, 10 (VGGish, R(2+1)D, CLIP, CLAP, zero-shot scores)
    "tokens"    a token map, CLAP's 64 = 2 frequency x 32 time groups (VALOR++); the model pools it

`FeatureSpec` is what a consumer of the store needs to know about one feature without any backbone
code (the synthetic data generator takes a mapping of them; `avvp.extract.backbones.feature_specs`
builds it from the backbones' declarations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avvp.data.classes import NUM_SEGMENTS

FRAMES = "frames"
SEGMENTS = "segments"
TOKENS = "tokens"
LAYOUTS = (FRAMES, SEGMENTS, TOKENS)

RESNET_FRAMES = 80  # 8 fps x 10 s
CLAP_TOKENS = 64  # 2 frequency x 32 time groups

# The fallback for stores that do not record a layout (hand-written stores, stores imported or
# extracted before layouts were declared, whose `layout` is a free-text axis description): the length decides,
# the rule models used before layouts were declared.
FALLBACK_BY_LENGTH = {RESNET_FRAMES: FRAMES, NUM_SEGMENTS: SEGMENTS, CLAP_TOKENS: TOKENS}


def check_layout(layout: str, where: str) -> None:
    """ValueError unless `layout` is one of LAYOUTS (`where` names the array in the message)."""
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout must be one of {LAYOUTS}, got {layout!r}")


@dataclass(frozen=True)
class FeatureSpec:
    """One per-video feature array: which modality it describes, its shape and its layout."""

    modality: str  # "audio" | "visual"
    shape: tuple[int, int]  # per video, (length, dim)
    layout: str  # one of LAYOUTS

    def __post_init__(self) -> None:
        check_layout(self.layout, f"{self.modality} feature {self.shape}")


def layout_by_length(length: int) -> str | None:
    """The fallback rule: 80 -> frames, 10 -> segments, 64 -> tokens; None for any other length."""
    return FALLBACK_BY_LENGTH.get(int(length))


def resolve_layout(recorded: Any, length: int) -> str | None:
    """The layout of a stored feature: its recorded `layout` attribute when that names a layout,
    else the fallback rule on its length (None when neither applies)."""
    if isinstance(recorded, bytes):
        recorded = recorded.decode()
    if isinstance(recorded, str) and recorded in LAYOUTS:
        return recorded
    return layout_by_length(length)
