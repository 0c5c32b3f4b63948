"""MM-Pyramid (Yu et al. ACM MM'22): multimodal pyramid attentional encoder + HAN's MMIL head and loss.

Encoder (reference-methods §3, read in JustinYuu/MM_Pyramid nets/MPAM.py, nets/Transformer.py):
- Capture module, `levels` (4) levels, level i with dilation 2^i, fed sequentially (level i+1 takes
  level i's output):
  IntegrateAttentionBlock: visual self-attention, audio self-attention and ONE cross-modal layer used
  for v←a and a←v, each a pre-LN transformer layer (LayerNorm on the query only; keys/values raw) whose
  8-head attention is restricted to the band |i−j| <= 2^i; outputs fused by sigmoid gates
  out = σ(W1[sa;cma])·sa + σ(W2[sa;cma])·cma (separate Linear 2d→d per gate and modality), then
  TemporalBlock: Conv1d k3 dilation 2^i padding 2^i → ReLU → 1x1 conv, + residual, ReLU.
- Fusion module: per segment the `levels` level outputs form a sequence → full self-attention
  transformer layer (per modality) → weight σ(Linear d→1) per level → weighted sum (not normalised).
- Dropout 0.2 (sublayers, FFN), attention-probability dropout 0.1, ffn 512, 8 heads.

`MMPyramidEncoder` is usable on its own (LEAP uses it): forward(audio, visual) → (audio_out,
visual_out), each (B,10,d).

Output order (official JustinYuu/MM_Pyramid main_network.py `AVVPNet.forward`):
    v_o, a_o = self.MMP(f_v, f_a)
    x = torch.cat([v_o.unsqueeze(-2), a_o.unsqueeze(-2)], dim=-2)
so index 0 of the MMIL head ("audio": a_prob, frame_prob[:, :, 0], the unsmoothed target of HAN's loss)
is fed by the stream that entered as VISUAL, and index 1 (v_prob, the 0.9y + 0.05 target) by the audio
stream. `reference_output_order = True` (the preset's default) reproduces that, so official weights give
the official outputs; False puts the audio predictions on the audio stream, as the paper describes (a
documented option, not the reference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avvp.models.base import MODELS, InputDims
from avvp.models.han import MMILParsingModel, check_loss


class BandedMultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention; with `band` > 0 a query at i sees keys j with |i−j| <= band."""

    def __init__(self, d_model: int, heads: int, band: int = 0, attn_dropout: float = 0.1):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads, self.d_k, self.band = heads, d_model // heads, band
        self.q, self.k, self.v, self.out = (nn.Linear(d_model, d_model) for _ in range(4))
        self.dropout = nn.Dropout(attn_dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, lq, _ = query.shape
        lk = key.shape[1]

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, self.heads, self.d_k).transpose(1, 2)

        q, k, v = split(self.q(query)), split(self.k(key)), split(self.v(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        if self.band > 0:
            i = torch.arange(lq, device=query.device)[:, None]
            j = torch.arange(lk, device=query.device)[None, :]
            scores = scores.masked_fill((i - j).abs() > self.band, -1e9)
        p = self.dropout(torch.softmax(scores, dim=-1))
        x = (p @ v).transpose(1, 2).reshape(b, lq, self.heads * self.d_k)
        return self.out(x)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.w_1, self.w_2, self.dropout = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(F.relu(self.w_1(x))))


class PreLNTransformerLayer(nn.Module):
    """q + drop(attn(LN(q), k, v)); then x + drop(FFN(LN(x))). Keys/values are NOT normalised."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float, band: int, attn_dropout: float):
        super().__init__()
        self.attn = BandedMultiHeadAttention(d_model, heads, band, attn_dropout)
        self.ff = FeedForward(d_model, ffn, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = q + self.drop1(self.attn(self.norm1(q), k, v))
        return q + self.drop2(self.ff(self.norm2(q)))


class IntegrateAttentionBlock(nn.Module):
    def __init__(self, make_layer, d_model: int):
        super().__init__()
        self.v_self, self.a_self, self.cross = make_layer(), make_layer(), make_layer()
        self.lv1, self.lv2 = nn.Linear(2 * d_model, d_model), nn.Linear(2 * d_model, d_model)
        self.la1, self.la2 = nn.Linear(2 * d_model, d_model), nn.Linear(2 * d_model, d_model)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_sa = self.v_self(visual, visual, visual)
        a_sa = self.a_self(audio, audio, audio)
        # one shared cross-modal layer, both directions from the block inputs
        v_cma = self.cross(visual, audio, audio)
        a_cma = self.cross(audio, visual, visual)
        v_sq, a_sq = torch.cat([v_sa, v_cma], -1), torch.cat([a_sa, a_cma], -1)
        v_out = torch.sigmoid(self.lv1(v_sq)) * v_sa + torch.sigmoid(self.lv2(v_sq)) * v_cma
        a_out = torch.sigmoid(self.la1(a_sq)) * a_sa + torch.sigmoid(self.la2(a_sq)) * a_cma
        return v_out, a_out


class TemporalBlock(nn.Module):
    def __init__(self, channels: int, dilation: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B,C,T)
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


@dataclass(frozen=True)
class MMPyramidEncoderOptions:
    hidden: int = 512
    ffn: int = 512
    heads: int = 8
    levels: int = 4
    dropout: float = 0.2
    attn_dropout: float = 0.1


class MMPyramidEncoder(nn.Module):
    """forward(audio (B,10,d), visual (B,10,d)) → (audio_out, visual_out), each (B,10,d)."""

    def __init__(self, opts: MMPyramidEncoderOptions = MMPyramidEncoderOptions()):
        super().__init__()
        d = opts.hidden
        self.levels = opts.levels

        def layer_factory(band: int):
            return lambda: PreLNTransformerLayer(d, opts.heads, opts.ffn, opts.dropout, band, opts.attn_dropout)

        self.msa = nn.ModuleList([IntegrateAttentionBlock(layer_factory(2 ** i), d) for i in range(opts.levels)])
        self.v_tcn = nn.ModuleList([TemporalBlock(d, 2 ** i) for i in range(opts.levels)])
        self.a_tcn = nn.ModuleList([TemporalBlock(d, 2 ** i) for i in range(opts.levels)])
        self.v_fuse_attn = PreLNTransformerLayer(d, opts.heads, opts.ffn, opts.dropout, 0, opts.attn_dropout)
        self.a_fuse_attn = PreLNTransformerLayer(d, opts.heads, opts.ffn, opts.dropout, 0, opts.attn_dropout)
        self.v_select = nn.Linear(d, 1)
        self.a_select = nn.Linear(d, 1)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = audio.shape
        v_levels, a_levels = [], []
        v, a = visual, audio
        for i in range(self.levels):
            v_msa, a_msa = self.msa[i](v, a)
            v = self.v_tcn[i](v_msa.transpose(1, 2)).transpose(1, 2)
            a = self.a_tcn[i](a_msa.transpose(1, 2)).transpose(1, 2)
            v_levels.append(v)
            a_levels.append(a)
        v_stage = torch.stack(v_levels, dim=2).reshape(b * t, self.levels, d)
        a_stage = torch.stack(a_levels, dim=2).reshape(b * t, self.levels, d)
        v_int = self.v_fuse_attn(v_stage, v_stage, v_stage)
        a_int = self.a_fuse_attn(a_stage, a_stage, a_stage)
        # weighted sum over levels with unnormalised sigmoid weights
        v_out = (v_int * torch.sigmoid(self.v_select(v_int))).sum(dim=1).view(b, t, d)
        a_out = (a_int * torch.sigmoid(self.a_select(a_int))).sum(dim=1).view(b, t, d)
        return a_out, v_out


@dataclass(frozen=True)
class MMPyramidOptions(MMPyramidEncoderOptions):
    loss: str = "han"  # same loss and visual smoothing as HAN
    visual_smoothing: float = 0.9
    # True (reference): the visual stream feeds index 0 (a_prob, audio segments), as the official AVVPNet
    # stacks [v_o, a_o]; False: audio predictions from the audio stream (the paper's description)
    reference_output_order: bool = True

    def __post_init__(self) -> None:
        check_loss(self.loss)


@MODELS.register("mmpyr")
class MMPyramid(MMILParsingModel):
    Options = MMPyramidOptions

    def __init__(self, options: Any, dims: InputDims):
        super().__init__(options, dims)
        self.encoder = MMPyramidEncoder(self.options)

    def encode(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio_out, visual_out = self.encoder(audio, visual)
        if self.options.reference_output_order:
            return visual_out, audio_out
        return audio_out, visual_out


__all__ = ["MMPyramid", "MMPyramidEncoder", "MMPyramidEncoderOptions", "MMPyramidOptions"]
