"""Building blocks shared by the parsing models, written once (reference-methods §1d, §2, §3).

- `bce`: the BCE every AVVP codebase uses, with probabilities clamped to [1e-7, 1-1e-7] first.
- `InputProjection`: HAN's fc_a / fc_v (+ 8-frame average pooling of 80 ResNet frames) / fc_st /
  fc_fusion, generalised to VALOR's CLAP token map (`ClapTokenPooling`) and to "no motion stream".
- `HANLayer` + `HANEncoder`: the hybrid attention layer (cross + self attention, post- or pre-norm),
  one layer per depth shared by both modalities, updated in parallel (HAN) or sequentially (VALOR).
- `MMILHead`: attentive multimodal MIL pooling (fc_prob, fc_frame_att softmax over time, fc_av_att
  softmax over modality) returning segment probabilities and a/v/global video probabilities.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avvp.data.classes import NUM_SEGMENTS
from avvp.data.layouts import FRAMES, SEGMENTS, TOKENS
from avvp.models.base import InputDims

PROB_EPS = 1e-7
CLAP_FREQ_GROUPS = 2  # VALOR++ CLAP token map (64, 768) = 2 freq x 32 time groups, frequency-major


def bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE on probabilities clamped to [1e-7, 1-1e-7], as the reference `output.clamp_` + BCELoss."""
    return F.binary_cross_entropy(prob.clamp(PROB_EPS, 1 - PROB_EPS), target)


class ClapTokenPooling(nn.Module):
    """VALOR++ audio input: (B,64,768) token map → (B,10,hidden).

    reshape to (768, 2 freq, 32 time) → bicubic interpolation to (2, 1024) → fc_a at every position →
    mean over the 2 frequency rows → adaptive average pooling of the 1024 time steps to 10 segments.
    (A token map of another even length L is read the same way, as 2 frequency rows of L/2 time steps.)
    """

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.fc_a = nn.Linear(in_dim, hidden)
        self.in_dim = in_dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        x = tokens.permute(0, 2, 1).reshape(b, self.in_dim, CLAP_FREQ_GROUPS, tokens.shape[1] // CLAP_FREQ_GROUPS)
        x = F.interpolate(x, size=(2, 1024), mode="bicubic", align_corners=False)
        x = self.fc_a(x.permute(0, 2, 3, 1)).mean(dim=1)  # (B,1024,hidden)
        x = F.adaptive_avg_pool1d(x.permute(0, 2, 1), NUM_SEGMENTS)  # (B,hidden,10)
        return x.permute(0, 2, 1)


class InputProjection(nn.Module):
    """Maps the raw inputs of any backbone combination to two (B,10,hidden) streams.

    What to do with a stream follows its layout (`InputDims.layout`: recorded by the store, the length
    rule only as the fallback for stores that record none):
    audio: "segments" (B,10,Da) → fc_a; "tokens" (B,L,D) CLAP token map → `ClapTokenPooling`.
    visual: "frames" (B,L,Dv) → fc_v per frame then average pooling over L/10 consecutive frames (8 for
    the 80 ResNet frames); "segments" (B,10,Dv) → fc_v.
    motion: "segments" (B,10,Dm) → fc_st; concatenated with the visual stream → fc_fusion. Without a motion
    stream the visual stream is fc_v's output (no fusion layer exists then).
    No activation anywhere, as in the reference.
    """

    def __init__(self, dims: InputDims, hidden: int):
        super().__init__()
        la, da = dims.audio
        lv, dv = dims.visual
        audio_layout, visual_layout = dims.layout("audio"), dims.layout("visual")
        if audio_layout == TOKENS and la % CLAP_FREQ_GROUPS == 0:
            self.audio_tokens = True
            self.fc_a: nn.Module = ClapTokenPooling(da, hidden)
        elif audio_layout == SEGMENTS and la == NUM_SEGMENTS:
            self.audio_tokens = False
            self.fc_a = nn.Linear(da, hidden)
        else:
            raise ValueError(f"audio input must be {NUM_SEGMENTS} segments or a CLAP token map of even length, "
                             f"got length {la} with layout {audio_layout!r}")
        if visual_layout == FRAMES and lv % NUM_SEGMENTS == 0:
            self.frames_per_segment = lv // NUM_SEGMENTS
        elif visual_layout == SEGMENTS and lv == NUM_SEGMENTS:
            self.frames_per_segment = 0
        else:
            raise ValueError(f"visual input must be {NUM_SEGMENTS} segments or frames in blocks of equal length per "
                             f"segment, got length {lv} with layout {visual_layout!r}")
        self.visual_frames = lv
        self.fc_v = nn.Linear(dv, hidden)
        self.has_motion = dims.motion is not None
        if dims.motion is not None:
            lm, dm = dims.motion
            if dims.layout("motion") != SEGMENTS or lm != NUM_SEGMENTS:
                raise ValueError(f"motion input must have {NUM_SEGMENTS} segments, got length {lm} "
                                 f"with layout {dims.layout('motion')!r}")
            self.fc_st = nn.Linear(dm, hidden)
            self.fc_fusion = nn.Linear(2 * hidden, hidden)

    def input_linear(self, role: str) -> nn.Linear | None:
        """The first linear map applied to each raw feature vector of `role`. Whatever runs before it (the
        token map's bicubic interpolation) or between it and the next layer (frame averaging) mixes vectors
        with weights summing to one, so an affine change of the raw inputs moves into this layer exactly."""
        if role == "audio":
            return self.fc_a.fc_a if self.audio_tokens else self.fc_a
        if role == "visual":
            return self.fc_v
        if role == "motion" and self.has_motion:
            return self.fc_st
        return None

    def project_visual(self, visual: torch.Tensor, motion: torch.Tensor | None) -> torch.Tensor:
        v = self.fc_v(visual)
        if self.frames_per_segment:
            # avg_pool2d with kernel (k,1) over time = mean of each block of k consecutive frames (k = 8 for ResNet)
            v = F.avg_pool2d(v.permute(0, 2, 1).unsqueeze(-1), (self.frames_per_segment, 1))
            v = v.squeeze(-1).permute(0, 2, 1)
        if self.has_motion:
            if motion is None:
                raise ValueError("the model was built with a motion stream but the batch has none")
            v = self.fc_fusion(torch.cat([v, self.fc_st(motion)], dim=-1))
        return v

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, motion: torch.Tensor | None):
        return self.fc_a(audio), self.project_visual(visual, motion)


class HANLayer(nn.Module):
    """Hybrid attention: q + drop(crossattn(q, other)) + drop(selfattn(q)), then FFN; post- or pre-norm.

    Post-norm (HAN, VALOR): LayerNorm after the attention sum and after the FFN residual.
    Pre-norm (VALOR option): norm1 on the query only (keys/values of the cross attention are the other
    stream un-normalised), norm2 before the FFN; the encoder then adds final LayerNorms.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1, pre_norm: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.cm_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout11 = nn.Dropout(dropout)
        self.dropout12 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, q: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            qn = self.norm1(q)
            cross = self.cm_attn(qn, other, other, need_weights=False)[0]
            self_ = self.self_attn(qn, qn, qn, need_weights=False)[0]
            q = q + self.dropout11(cross) + self.dropout12(self_)
            ff = self.linear2(self.dropout(F.relu(self.linear1(self.norm2(q)))))
            return q + self.dropout2(ff)
        cross = self.cm_attn(q, other, other, need_weights=False)[0]
        self_ = self.self_attn(q, q, q, need_weights=False)[0]
        q = self.norm1(q + self.dropout11(cross) + self.dropout12(self_))
        ff = self.linear2(self.dropout(F.relu(self.linear1(q))))
        return self.norm2(q + self.dropout2(ff))


@dataclass(frozen=True)
class HANEncoderOptions:
    hidden: int = 512
    heads: int = 1
    ff: int = 512
    layers: int = 1
    dropout: float = 0.1
    pre_norm: bool = False
    # HAN: both streams are updated from the pre-update inputs; VALOR: visual sees the updated audio
    sequential: bool = False


class HANEncoder(nn.Module):
    """`layers` HAN layers (independent weights per depth), each shared by the audio and visual streams.

    forward(audio (B,10,d), visual (B,10,d)) → (audio_out, visual_out), each (B,10,d).
    """

    def __init__(self, opts: HANEncoderOptions):
        super().__init__()
        layer = HANLayer(opts.hidden, opts.heads, opts.ff, opts.dropout, opts.pre_norm)
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(opts.layers)])
        self.sequential = opts.sequential
        self.pre_norm = opts.pre_norm
        if opts.pre_norm:
            self.final_norm_a = nn.LayerNorm(opts.hidden)
            self.final_norm_v = nn.LayerNorm(opts.hidden)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            if self.sequential:
                audio = layer(audio, visual)
                visual = layer(visual, audio)
            else:
                audio, visual = layer(audio, visual), layer(visual, audio)
        if self.pre_norm:
            audio, visual = self.final_norm_a(audio), self.final_norm_v(visual)
        return audio, visual


@dataclass
class MMILOutput:
    frame_logits: torch.Tensor  # (B,10,2,K) [:, :, 0] audio, [:, :, 1] visual
    frame_prob: torch.Tensor  # (B,10,2,K)
    global_prob: torch.Tensor  # (B,K)
    a_prob: torch.Tensor  # (B,K)
    v_prob: torch.Tensor  # (B,K)
    frame_att: torch.Tensor  # (B,10,2,K) softmax over time
    av_att: torch.Tensor  # (B,10,2,K) softmax over modality


class MMILHead(nn.Module):
    """Attentive MMIL pooling of HAN: temporal_prob = softmax_t(fc_frame_att(x)) · sigmoid(fc_prob(x));
    global = Σ_t Σ_m temporal_prob · softmax_m(fc_av_att(x)); a_prob / v_prob = Σ_t temporal_prob[:, :, m]."""

    def __init__(self, hidden: int, num_classes: int):
        super().__init__()
        self.fc_prob = nn.Linear(hidden, num_classes)
        self.fc_frame_att = nn.Linear(hidden, num_classes)
        self.fc_av_att = nn.Linear(hidden, num_classes)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> MMILOutput:
        x = torch.stack([audio, visual], dim=2)  # (B,10,2,d)
        logits = self.fc_prob(x)
        frame_prob = torch.sigmoid(logits)
        frame_att = torch.softmax(self.fc_frame_att(x), dim=1)
        av_att = torch.softmax(self.fc_av_att(x), dim=2)
        temporal_prob = frame_att * frame_prob
        global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
        return MMILOutput(
            frame_logits=logits, frame_prob=frame_prob, global_prob=global_prob,
            a_prob=temporal_prob[:, :, 0].sum(dim=1), v_prob=temporal_prob[:, :, 1].sum(dim=1),
            frame_att=frame_att, av_att=av_att,
        )
