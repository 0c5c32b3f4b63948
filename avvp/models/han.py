"""HAN (Tian et al. ECCV'20) and its VALOR generalisation (reference-methods §1d, §2).

`MMILParsingModel` = input projection → a two-stream encoder → HAN's attentive MMIL pooling head. `HAN`
uses `HANEncoder` (blocks.py). The loss is picked by name from `MMIL_LOSSES`:
    "han"   BCE(a_prob, y) + BCE(v_prob, 0.9y + 0.05) + BCE(global, y)          (official HAN)
    "valor" BCE(global, y) + BCEwithLogits(audio frame logits, CLAP pseudo) + BCEwithLogits(visual
            frame logits, CLIP pseudo), all 10x25 entries, weights 1/1/1          (VALOR)
VALOR is therefore `HAN` with options hidden/heads/ff/layers, sequential=True and loss="valor" (presets
valor, valor+, valor++ in avvp.train.presets); no separate class is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from avvp.models.base import MODELS, Batch, InputDims, ModelOutput, ParsingModel, options_from_mapping
from avvp.models.blocks import HANEncoder, HANEncoderOptions, InputProjection, MMILHead, MMILOutput, bce
from avvp.registry import Registry

LossFn = Callable[["MMILParsingModel", ModelOutput, Batch, int], tuple[torch.Tensor, dict[str, float]]]
MMIL_LOSSES: Registry[LossFn] = Registry("MMIL loss", providers=("avvp.models.ma",))


def visual_smoothing_target(weak: torch.Tensor, smoothing: float) -> torch.Tensor:
    """HAN's visual target Pv = s·y + (1−s)/2 (s = 0.9 → 0.9y + 0.05)."""
    return smoothing * weak + (1.0 - smoothing) / 2.0


def require(batch_value: torch.Tensor | None, what: str) -> torch.Tensor:
    if batch_value is None:
        raise ValueError(
            f"this loss needs {what} but the batch has none; train with --labels pseudo on a store that has them: "
            "`avvp-pseudolabel --data <store>` computes VALOR's (from `avvp-extract --backbone clip --backbone "
            "clap`), `avvp-import --valor` imports the released ones"
        )
    return batch_value


def check_loss(name: str) -> None:
    """Options hold the loss by name: an unknown one fails when the options are built, before any data."""
    if name not in MMIL_LOSSES:
        raise ValueError(f"unknown MMIL loss {name!r}; known: {', '.join(MMIL_LOSSES.names())}")


@MMIL_LOSSES.register("han")
def han_loss(model: "MMILParsingModel", out: ModelOutput, batch: Batch, epoch: int):
    y = batch.weak
    pv = visual_smoothing_target(y, model.visual_smoothing)
    la = bce(out.audio_video, y)
    lv = bce(out.visual_video, pv)
    lg = bce(out.video, y)
    return la + lv + lg, {"audio": la.item(), "visual": lv.item(), "global": lg.item()}


@MMIL_LOSSES.register("valor")
def valor_loss(model: "MMILParsingModel", out: ModelOutput, batch: Batch, epoch: int):
    pa = require(batch.pseudo_audio, "segment pseudo-labels /pseudo/audio").float()
    pv = require(batch.pseudo_visual, "segment pseudo-labels /pseudo/visual").float()
    logits = out.extras["frame_logits"]
    lg = bce(out.video, batch.weak)
    la = F.binary_cross_entropy_with_logits(logits[:, :, 0], pa)
    lv = F.binary_cross_entropy_with_logits(logits[:, :, 1], pv)
    return lg + la + lv, {"global": lg.item(), "audio_seg": la.item(), "visual_seg": lv.item()}


class MMILParsingModel(ParsingModel):
    """Shared skeleton: projection → `self.encoder(audio, visual)` → MMIL head; loss from MMIL_LOSSES."""

    Options: type
    encoder: nn.Module

    def __init__(self, options: Any, dims: InputDims):
        super().__init__()
        self.options = options_from_mapping(self.Options, options)
        self.dims = dims
        self.loss_fn = MMIL_LOSSES.get(self.options.loss)
        self.visual_smoothing = float(self.options.visual_smoothing)
        self.projection = InputProjection(dims, self.options.hidden)
        self.head = MMILHead(self.options.hidden, dims.num_classes)

    def encode(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(audio, visual)

    def forward(self, batch: Batch) -> ModelOutput:
        audio_in, visual_in = self.projection(batch.audio, batch.visual, batch.motion)
        audio_enc, visual_enc = self.encode(audio_in, visual_in)
        h: MMILOutput = self.head(audio_enc, visual_enc)
        return ModelOutput(
            video=h.global_prob, audio_seg=h.frame_prob[:, :, 0], visual_seg=h.frame_prob[:, :, 1],
            audio_video=h.a_prob, visual_video=h.v_prob,
            extras={"frame_logits": h.frame_logits, "audio_in": audio_in, "visual_in": visual_in,
                    "audio_enc": audio_enc, "visual_enc": visual_enc},
        )

    def loss(self, out: ModelOutput, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss_fn(self, out, batch, epoch)


@dataclass(frozen=True)
class HANOptions(HANEncoderOptions):
    """The encoder's options (defaults = official HAN: d 512, 1 head, ff 512, 1 layer, dropout 0.1,
    post-norm, parallel update; VALOR: sequential) plus the loss."""

    loss: str = "han"
    visual_smoothing: float = 0.9  # Pv = 0.9y + 0.05 (used by the "han" loss)

    def __post_init__(self) -> None:
        check_loss(self.loss)


@MODELS.register("han")
class HAN(MMILParsingModel):
    Options = HANOptions

    def __init__(self, options: Any, dims: InputDims):
        super().__init__(options, dims)
        self.encoder = HANEncoder(self.options)


__all__ = ["HAN", "HANOptions", "HANEncoder", "MMILParsingModel", "MMIL_LOSSES", "options_from_mapping"]
