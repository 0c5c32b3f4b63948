"""The backbone contract shared by every feature extractor.

A backbone turns decoded videos into named arrays whose names are store paths:

    {"features/clip": (10, 768) float32, "zeroshot/clip": (10, 25) float32}

plus, once per dataset, label-text arrays such as {"text/clip": (25, 768)}. Each backbone lives in its
own file under `avvp/extract/backbones/` and registers itself in `BACKBONES`; adding one is a file and a
`@BACKBONES.register(...)` line (plus its import in `backbones/__init__.py`).

Weights carry their own preprocessing and metadata (torchvision-style): a `WeightsSpec` says where the
pretrained weights come from, which file name is expected under `--weights-dir`, and the preprocessing
constants; the array attributes written to the store come from it.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np

from avvp.registry import Registry


class VideoInput(Protocol):
    """What a backbone reads from a decoded video (see avvp.extract.decode.DecodedVideo).

    Optional attributes: `profile` (the input profile the decoder used; a backbone refuses a video of
    another profile) and `segment_frames` ((10, H, W, 3), VALOR's CLIP frames over all N fps frames)."""

    frames: np.ndarray  # (80, H, W, 3) uint8 RGB, the reference 8 fps selection
    audio_16k: np.ndarray  # (n,) float32 mono: window*16000 (clean) | moviepy's int(16000*duration) (reference)
    audio_48k: np.ndarray  # (n,) float32 mono: window*48000 (clean) | librosa.load's whole stream (reference)
    has_audio: bool


@dataclass(frozen=True)
class OutputSpec:
    """One array a backbone produces per video: its store path, shape and storage attributes."""

    path: str  # e.g. "features/clip" or "zeroshot/clip"
    shape: tuple[int, ...]  # per-video shape, e.g. (10, 768)
    dtype: str = "float32"
    layout: str = ""  # human-readable axis description, e.g. "segment x dim"
    attrs: dict[str, Any] = field(default_factory=dict)  # fps / sample_rate and the like


@dataclass(frozen=True)
class BackboneConfig:
    """How to build a backbone. Never mutated; `dataclasses.replace` to derive variants."""

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


class WeightsUnavailable(RuntimeError):
    """Pretrained weights cannot be found offline; the message names the file and where to put it."""


class Backbone(abc.ABC):
    """Base class. Subclasses set `name`, implement `outputs()`, `extract_batch()`, `network_inputs()` and optionally
    `dataset_arrays()` (label-text embeddings) — and register with `@BACKBONES.register(name)`."""

    name: ClassVar[str] = ""
    # which decoded streams the backbone reads; the executors decode only what is needed
    needs_frames: ClassVar[bool] = False
    needs_audio_16k: ClassVar[bool] = False
    needs_audio_48k: ClassVar[bool] = False

    def __init__(self, config: BackboneConfig):
        self.config = config

    @property
    def random_weights(self) -> bool:
        return self.config.weights == "random"

    @property
    def inputs_only(self) -> bool:
        """weights == "none": built for `network_inputs` only; no weights are looked up, no network runs."""
        return self.config.weights == "none"

    @property
    def profile(self) -> str:
        return self.config.profile

    def check_profile(self, video: Any) -> None:
        """A decoded video must come from the profile this backbone prepares inputs for."""
        got = getattr(video, "profile", None)
        if got is not None and got != self.profile:
            raise ValueError(f"{self.name}: the video was decoded with profile {got!r}, the backbone is built for "
                             f"{self.profile!r}; decode and extract with the same profile")

    @abc.abstractmethod
    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """The exact arrays the network receives for one video (float32, before any device transfer),
        computed by the same functions `extract_batch` uses. Keys are documented in docs/backbones.md.
        Part of the contract: a backbone that cannot show its inputs cannot be checked against the reference."""

    def input_recipe(self) -> str:
        """One line naming what the active profile reproduces (stored as the `input_recipe` attribute)."""
        recipes = getattr(self, "recipes", None) or {}
        recipe = recipes.get(self.profile)
        return recipe.describe() if recipe is not None else ""

    @abc.abstractmethod
    def outputs(self) -> list[OutputSpec]:
        """The per-video arrays this backbone writes."""

    @abc.abstractmethod
    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        """One dict {store path: array} per input video, in input order."""

    def dataset_arrays(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """Arrays stored once per dataset (e.g. "text/clip"), with their attributes."""
        return {}

    def weights_id(self) -> str:
        """A short string naming the weights, stored as the `weights` attribute: the resolved weights
        file's id when the backbone keeps one in `self.resolved`."""
        resolved = getattr(self, "resolved", None)
        if resolved is not None:
            return resolved.weights_id
        return "random" if self.random_weights else self.name

    def store_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        """Attributes written with each output array in the store."""
        from avvp import __version__

        return {
            "backbone": self.name,
            "weights": self.weights_id(),
            "random_weights": bool(self.random_weights),
            "precision": self.config.precision,
            "layout": spec.layout,
            "profile": self.profile,
            "input_recipe": self.input_recipe(),
            "avvp_version": __version__,
            **spec.attrs,
        }


BACKBONES: Registry[type[Backbone]] = Registry("backbone", providers=("avvp.extract.backbones",))
