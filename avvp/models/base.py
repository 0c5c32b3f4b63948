"""The contract between parsing models and the trainer.

A parsing model is an `nn.Module` registered in `MODELS`. The trainer builds it with
`build_model(name, config, input_dims)`, feeds it `Batch`es and gets `ModelOutput`s; the model also owns
its loss (`model.loss(output, batch, epoch)`), because every paper's loss is part of the method.

Inputs are named by role, not by backbone, so any backbone combination works:
    batch.audio    (B, La, Da)  e.g. vggish (10,128), clap (10,512), clap_tokens (64,768)
    batch.visual   (B, Lv, Dv)  e.g. resnet152 (80,2048), clip (10,768)
    batch.motion   (B, 10, 512) r2plus1d, or None when the preset uses no 3D stream
The model maps each to 10 segments itself (e.g. HAN pools 80 ResNet frames by 8, VALOR++ pools the CLAP
token map), so the reference preprocessing lives with the method.

Targets available to a loss (None when the store lacks them):
    batch.weak (B,K) video labels; batch.pseudo_audio / pseudo_visual (B,10,K) segment pseudo-labels;
    batch.refined_audio / refined_visual (B,K) modality-aware video labels (MA); batch.eiou (B,10,10);
    batch.text (dict name -> (K,D) label-text embeddings, the same for every batch).

Model inputs loaded only for models that ask for them, in every split (train, val, test), because the
model reads them at inference too: a model declares them in `batch_inputs` (class attribute) or, when
they depend on its options, overrides `required_inputs(options)`; the trainer loads those before
building the batches (names of `avvp.train.labels.BATCH_INPUTS`):
    "teacher"  batch.teacher_audio / teacher_visual (B,10,K): teacher zero-shot logit > class threshold,
               WITHOUT the weak-label mask (/zeroshot/clap, /zeroshot/clip; LINK's PLSIM).
    "stored_pseudo"  batch.stored_pseudo_audio / stored_pseudo_visual (B,10,K): the store's segment
               pseudo-labels /pseudo/audio, /pseudo/visual as a model input in EVERY split (LINK's PLSIM
               on a store of the released features, which has no zero-shot logits; those labels are
               masked with each video's weak labels, so a val/test prediction then reads them).
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from avvp.data.layouts import resolve_layout
from avvp.registry import Registry


@dataclass
class Batch:
    audio: torch.Tensor
    visual: torch.Tensor
    motion: torch.Tensor | None
    weak: torch.Tensor
    index: torch.Tensor  # row numbers in the split, for models that need cross-sample bookkeeping
    pseudo_audio: torch.Tensor | None = None
    pseudo_visual: torch.Tensor | None = None
    refined_audio: torch.Tensor | None = None
    refined_visual: torch.Tensor | None = None
    eiou: torch.Tensor | None = None
    teacher_audio: torch.Tensor | None = None
    teacher_visual: torch.Tensor | None = None
    stored_pseudo_audio: torch.Tensor | None = None
    stored_pseudo_visual: torch.Tensor | None = None
    text: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "Batch":
        def move(x: Any) -> Any:
            return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x

        return Batch(
            **{k: move(v) for k, v in self.__dict__.items() if k != "text"},
            text={k: v.to(device) for k, v in self.text.items()},
        )

    @property
    def size(self) -> int:
        return int(self.weak.shape[0])


@dataclass
class ModelOutput:
    """What every model returns. Probabilities, not logits, in the fields the metric reads."""

    video: torch.Tensor  # (B,K) fused video-level probability (the gate of the standard protocol)
    audio_seg: torch.Tensor  # (B,10,K) audio segment probabilities
    visual_seg: torch.Tensor  # (B,10,K) visual segment probabilities
    audio_video: torch.Tensor | None = None  # (B,K) audio video-level probability (a_prob)
    visual_video: torch.Tensor | None = None  # (B,K) visual video-level probability (v_prob)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # logits, attention maps, embeddings


@dataclass(frozen=True)
class InputDims:
    """Shapes of the inputs in the store, resolved by the trainer from the chosen feature names.

    `layouts` says what the first axis of each stream is ("frames" | "segments" | "tokens",
    avvp.data.layouts), as the store records it (the arrays' `layout` attribute, which the backbones
    declare). A stream without a recorded layout (imported or hand-written stores, old checkpoints) falls
    back to the length rule: 80 -> frames, 10 -> segments, 64 -> tokens."""

    audio: tuple[int, int]  # (La, Da)
    visual: tuple[int, int]  # (Lv, Dv)
    motion: tuple[int, int] | None  # (10, 512) or None
    num_classes: int = 25
    text_dims: tuple[tuple[str, int], ...] = ()  # (("clip", 768), ("clap", 512)) when the store has them
    layouts: tuple[tuple[str, str], ...] = ()  # (("audio", "tokens"), ("visual", "segments"), ...) as recorded

    def layout(self, role: str) -> str | None:
        """The layout of stream `role`: the recorded one, else the length rule (None when neither applies)."""
        shape = getattr(self, role)
        return resolve_layout(dict(self.layouts).get(role), shape[0])


def options_from_mapping(cls: type, options: Mapping[str, Any] | Any) -> Any:
    """Build an options dataclass from a mapping, rejecting unknown keys with the list of known ones."""
    if isinstance(options, cls):
        return options
    options = dict(options or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(known)}")
    return cls(**options)


class ParsingModel(nn.Module, abc.ABC):
    """Base class of every registered parsing model. Subclasses set `Options` (their options dataclass)
    and build `self.options = options_from_mapping(self.Options, options)`; checkpoints store
    `options_dict()`."""

    Options: ClassVar[type]
    options: Any

    # optional inputs the trainer must load into every Batch of every split (see the module docstring)
    batch_inputs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def required_inputs(cls, options: Mapping[str, Any] | Any) -> tuple[str, ...]:
        """The `batch_inputs` a model built with `options` needs; override when they depend on options."""
        return cls.batch_inputs

    def options_dict(self) -> dict[str, Any]:
        return asdict(self.options)

    def input_linear(self, role: str) -> nn.Linear | None:
        """The linear layer that first reads the raw `role` features (audio | visual | motion), found in the
        model's input block (a submodule with its own `input_linear`, e.g. `blocks.InputProjection`); None
        when the model has none for that role."""
        for module in self.modules():
            if module is not self and not isinstance(module, ParsingModel) and hasattr(module, "input_linear"):
                return module.input_linear(role)
        return None

    @torch.no_grad()
    def fold_input_standardization(self, stats: Mapping[str, tuple[Any, Any]]) -> None:
        """Make a model trained on per-dimension z-scores (x - mean) / std read the raw features: for each
        role, W <- W / std and b <- b - (W / std) . mean in its input layer (float64 arithmetic)."""
        for role, (mean, std) in stats.items():
            layer = self.input_linear(role)
            if layer is None:
                raise ValueError(f"{type(self).__name__} has no linear input layer for the {role} features to fold into")
            mean64 = torch.as_tensor(mean, dtype=torch.float64)
            std64 = torch.as_tensor(std, dtype=torch.float64)
            if layer.weight.shape[1] != mean64.shape[0]:
                raise ValueError(f"the {role} input layer reads {layer.weight.shape[1]} dims but the statistics "
                                 f"have {mean64.shape[0]}")
            w = layer.weight.to(torch.float64) / std64[None, :]
            bias = layer.bias.to(torch.float64) - w @ mean64
            layer.weight.copy_(w.to(layer.weight.dtype))
            layer.bias.copy_(bias.to(layer.bias.dtype))

    @abc.abstractmethod
    def forward(self, batch: Batch) -> ModelOutput:
        """Predict segment- and video-level probabilities."""

    @abc.abstractmethod
    def loss(self, out: ModelOutput, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The method's training loss and its named parts (for metrics.jsonl). `epoch` counts from 1."""


MODELS: Registry[type[ParsingModel]] = Registry("model", providers=("avvp.models",))
