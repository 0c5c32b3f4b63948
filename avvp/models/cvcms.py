"""CVCMS: cross-video and cross-modality signals (Lin et al., NeurIPS'21; paper 004, reference-methods §3).

HAN (1 layer, 1 head, d 512, ff 512, dropout 0.4) with two additions, each a switch (paper Tables 2-3):

- Cross-modality co-occurrence (CM-Co, `co_occurrence`): every segment feature becomes K class tokens
  per modality (Linear d→K·occ_dim + ReLU, occ_dim 128); a HAN layer over the K class tokens (d=occ_dim,
  1 head, ff occ_dim, dropout 0.25) lets class tokens attend to the same modality's tokens (self) and
  the other modality's tokens of the same segment (cross); a Linear occ_dim→1 per token (shared over
  classes, one per modality) gives the frame logits. Frame attention and modality attention of the MMIL
  pooling still come from the 512-d segment features, as in HAN. Modes (Table 3): `cm_co` (self +
  cross), `av` (self only, both modalities), `a_only` / `v_only` (self only on one modality; the other
  modality's class tokens go straight to its Linear), `none` (HAN's fc_prob: "HAN + CM-S" rows).
- Shared cross-modality semantics across videos (CM-S): cross-video augmentation (`augment`) and the
  cross-modal contrastive loss (`contrastive`). Augmentation is done INSIDE the model's training
  forward (the trainer needs no hook): the batch is doubled with (same audio, visual of a random other
  sample of the batch, uniform over j ≠ i); a batch of one sample is not augmented. The new samples'
  labels are audio labels of the audio source, visual labels of the visual source, video label = union.
  As in the reference, the augmented half only enters the contrastive loss; `bce_on_augmented=True`
  also trains the three BCE terms on it (our extension, off by default).
  Contrastive loss: per sample, audio (visual) HAN outputs are pooled over time with weights
  softmax_t(Σ_c frame_att_logit[t,c] · label[c]) using that modality's labels; cosine similarities
  between all pooled audio and visual vectors (temperature 1) give an N×N matrix S; the target row i is
  [audio labels of i ∩ visual labels of j ≠ ∅] normalised to sum 1 (all-zero rows stay zero); loss =
  mean_i Σ_j −T_ij log_softmax(S_i)_j. It is added with weight 0.85 after `init_epoch` (2) epochs.

Loss = BCE(global, a∪v) + BCE(a_prob, Pa) + BCE(v_prob, Pv) (+ 0.85·contrastive when epoch > 2), with
label smoothing P = s·y + (1−s)/2: epochs ≤ 2 audio s=1.0, visual s=0.9; later both 1.0. The global
target is the unsmoothed union. The labels are chosen by ONE setting, the trainer's `data.labels`
(`--labels`): "refined" (preset `cvcms`) trains on MA's modality-aware labels (/labels/refined_audio,
/labels/refined_visual, which the trainer then puts in every training batch); any other kind ("weak",
the "HAN + ..." rows) trains on the weak label for both modalities. The model keeps no label choice of
its own: it reads the refined labels exactly when the batch carries them. The contrastive pooling and targets use the unsmoothed labels (the reference
binarises its smoothed labels, which equals this whenever the contrastive term is on).

Model selection: the public code (GenjiB/CM-Co-Occurrence-AVVP) builds its "validation" loader from the
TEST csv and keeps the epoch with the best test event-level Type@AV; we do not — the preset selects on
the VALIDATION split (segment Type@AV) like every other preset.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avvp.models.base import MODELS, Batch, InputDims, ModelOutput, ParsingModel, options_from_mapping
from avvp.models.blocks import HANEncoder, HANEncoderOptions, HANLayer, InputProjection, MMILHead, bce
from avvp.registry import Registry


# ------------------------------------------------------------------------------------------ co-occurrence
@dataclass(frozen=True)
class CoOccurrenceMode:
    """Which class-token sets get attention, and whether tokens also attend across modalities."""

    audio: bool
    visual: bool
    cross: bool


CO_OCCURRENCE_MODES: Registry[CoOccurrenceMode | None] = Registry("co-occurrence mode")
CO_OCCURRENCE_MODES.register("cm_co")(CoOccurrenceMode(audio=True, visual=True, cross=True))
CO_OCCURRENCE_MODES.register("av")(CoOccurrenceMode(audio=True, visual=True, cross=False))
CO_OCCURRENCE_MODES.register("a_only")(CoOccurrenceMode(audio=True, visual=False, cross=False))
CO_OCCURRENCE_MODES.register("v_only")(CoOccurrenceMode(audio=False, visual=True, cross=False))
CO_OCCURRENCE_MODES.register("none")(None)


class SelfOnlyHANLayer(HANLayer):
    """HAN's post-norm layer without the cross-modal term: q = LN(q + drop(selfattn(q))); q = LN(q + FFN(q)).

    Used by the self-attention-only ablations of Table 3 (the block's HANLayer always adds cross attention).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__(d_model, nhead, dim_feedforward, dropout, pre_norm=False)
        del self.cm_attn, self.dropout11  # no cross term: drop its parameters so nothing sits unused

    def forward(self, q: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm1(q + self.dropout12(self.self_attn(q, q, q, need_weights=False)[0]))
        ff = self.linear2(self.dropout(F.relu(self.linear1(q))))
        return self.norm2(q + self.dropout2(ff))


class CoOccurrenceLogits(nn.Module):
    """Frame logits through class tokens. Takes the MMIL head's stacked input x (B,10,2,d) and returns
    (B,10,2,K), so it replaces `MMILHead.fc_prob` and the head's pooling is reused unchanged."""

    def __init__(self, hidden: int, num_classes: int, occ_dim: int, dropout: float, mode: CoOccurrenceMode):
        super().__init__()
        self.num_classes, self.occ_dim, self.mode = num_classes, occ_dim, mode
        self.fc_class_a = nn.Linear(hidden, num_classes * occ_dim)
        self.fc_class_v = nn.Linear(hidden, num_classes * occ_dim)
        layer_cls = HANLayer if mode.cross else SelfOnlyHANLayer
        # one layer shared by both modalities, both updated from the pre-update tokens (CVCMS's Encoder)
        self.layer = layer_cls(occ_dim, 1, occ_dim, dropout)
        self.fc_prob_a = nn.Linear(occ_dim, 1)
        self.fc_prob_v = nn.Linear(occ_dim, 1)

    def class_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B*10, K, occ_dim) audio and visual class tokens."""
        b, t = x.shape[:2]
        shape = (b * t, self.num_classes, self.occ_dim)
        return F.relu(self.fc_class_a(x[:, :, 0])).view(shape), F.relu(self.fc_class_v(x[:, :, 1])).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        a, v = self.class_tokens(x)
        if self.mode.cross:
            a_out, v_out = self.layer(a, v), self.layer(v, a)
        else:
            a_out = self.layer(a) if self.mode.audio else a
            v_out = self.layer(v) if self.mode.visual else v
        la = self.fc_prob_a(a_out).view(b, t, self.num_classes)
        lv = self.fc_prob_v(v_out).view(b, t, self.num_classes)
        return torch.stack([la, lv], dim=2)


# ------------------------------------------------------------------------------------------ cross-video
def random_partners(batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each i a uniformly drawn j ≠ i (the reference's rejection sampling, drawn without a loop)."""
    if batch_size < 2:
        raise ValueError("cross-video augmentation needs at least two samples in the batch")
    offset = torch.randint(1, batch_size, (batch_size,), generator=generator)
    return (torch.arange(batch_size) + offset) % batch_size


def label_weighted_pooling(features: torch.Tensor, att_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,T,d) features pooled over time with softmax_t(Σ_c att_logits[:,t,c]·labels[:,c]) → (N,d)."""
    weights = torch.softmax((att_logits * labels.unsqueeze(1)).sum(-1), dim=1)  # (N,T)
    return (weights.unsqueeze(-1) * features).sum(dim=1)


def cross_video_similarities(audio: torch.Tensor, visual: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N,N) cosine similarities between pooled audio i and pooled visual j, divided by the temperature."""
    return F.normalize(audio, dim=-1) @ F.normalize(visual, dim=-1).T / temperature


def cross_video_soft_targets(audio_labels: torch.Tensor, visual_labels: torch.Tensor) -> torch.Tensor:
    """T_ij ∝ [audio labels of i ∩ visual labels of j ≠ ∅], rows normalised (an all-zero row stays zero)."""
    share = ((audio_labels != 0).float() @ (visual_labels != 0).float().T).clamp(max=1.0)
    return share / (share.sum(dim=-1, keepdim=True) + 1e-10)


def cross_modal_contrastive_loss(sims: torch.Tensor, audio_labels: torch.Tensor, visual_labels: torch.Tensor) -> torch.Tensor:
    """mean_i Σ_j −T_ij · log_softmax_j(S_ij): soft-target cross entropy over the visual vectors."""
    targets = cross_video_soft_targets(audio_labels, visual_labels).to(sims.dtype)
    return (-targets * sims.log_softmax(dim=-1)).sum(dim=-1).mean()


def smoothed(labels: torch.Tensor, s: float) -> torch.Tensor:
    """P = s·y + (1−s)/2 (s = 1: no smoothing; s = 0.9: 0.9y + 0.05)."""
    return s * labels + (1.0 - s) * 0.5


# ------------------------------------------------------------------------------------------ labels
def modality_labels(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(audio, visual) video-level labels: MA's refined labels when the batch has them (data.labels =
    refined), else the weak label for both modalities."""
    if (batch.refined_audio is None) != (batch.refined_visual is None):
        raise ValueError("the batch has only one of refined_audio / refined_visual")
    if batch.refined_audio is not None:
        return batch.refined_audio.float(), batch.refined_visual.float()
    return batch.weak.float(), batch.weak.float()


# ------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class CVCMSOptions:
    """Switches of paper Tables 2-3 and the reference run.sh constants."""

    hidden: int = 512
    heads: int = 1
    ff: int = 512  # --forward_dim
    dropout: float = 0.4  # --prob_drop
    occ_dim: int = 128
    occ_dropout: float = 0.25  # --prob_drop_occ
    co_occurrence: str = "cm_co"  # cm_co | av | a_only | v_only | none (CO_OCCURRENCE_MODES)
    augment: bool = True  # cross-video augmentation (training forward only)
    contrastive: bool = True  # cross-modal contrastive loss (CM-S)
    contrastive_weight: float = 0.85  # --delta
    temperature: float = 1.0  # --tmp
    init_epoch: int = 2  # contrastive on and late smoothing from epoch init_epoch + 1
    early_audio_smoothing: float = 1.0  # --before_audio_smoothing
    early_visual_smoothing: float = 0.9  # --before_vis_smoothing
    audio_smoothing: float = 1.0
    visual_smoothing: float = 1.0
    bce_on_augmented: bool = False  # our extension: BCE terms also on the augmented half

    def __post_init__(self) -> None:
        CO_OCCURRENCE_MODES.get(self.co_occurrence)  # unknown names raise with the known list
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@MODELS.register("cvcms")
class CVCMS(ParsingModel):
    """Projection → HAN encoder → MMIL head whose frame logits come from the class-token co-occurrence
    branch; cross-video augmentation and contrastive pooling in the training path."""

    Options = CVCMSOptions

    def __init__(self, options: CVCMSOptions | Mapping[str, Any], dims: InputDims):
        super().__init__()
        self.options = o = options_from_mapping(self.Options, options)
        self.dims = dims
        self.projection = InputProjection(dims, o.hidden)
        self.encoder = HANEncoder(HANEncoderOptions(hidden=o.hidden, heads=o.heads, ff=o.ff, layers=1, dropout=o.dropout))
        self.head = MMILHead(o.hidden, dims.num_classes)
        mode = CO_OCCURRENCE_MODES.get(o.co_occurrence)
        if mode is not None:
            # the class-token branch takes fc_prob's place: same input (B,10,2,d), same output (B,10,2,K)
            self.head.fc_prob = CoOccurrenceLogits(o.hidden, dims.num_classes, o.occ_dim, o.occ_dropout, mode)


    def forward(self, batch: Batch) -> ModelOutput:
        audio, visual = self.projection(batch.audio, batch.visual, batch.motion)
        n = audio.shape[0]
        extras: dict[str, torch.Tensor] = {}
        if self.training and self.options.augment and n > 1:
            partner = random_partners(n).to(audio.device)
            audio, visual = torch.cat([audio, audio]), torch.cat([visual, visual[partner]])
            extras["partner"] = partner
        audio_enc, visual_enc = self.encoder(audio, visual)
        h = self.head(audio_enc, visual_enc)
        # pre-softmax frame attention for the contrastive pooling (the head only keeps the softmax)
        extras["frame_att_logits"] = self.head.fc_frame_att(torch.stack([audio_enc, visual_enc], dim=2))
        extras.update(audio_enc=audio_enc, visual_enc=visual_enc, frame_logits=h.frame_logits,
                      all_video=h.global_prob, all_audio_video=h.a_prob, all_visual_video=h.v_prob)
        return ModelOutput(
            video=h.global_prob[:n], audio_seg=h.frame_prob[:n, :, 0], visual_seg=h.frame_prob[:n, :, 1],
            audio_video=h.a_prob[:n], visual_video=h.v_prob[:n], extras=extras,
        )

    def labels_of_rows(self, out: ModelOutput, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio and visual labels of every row the forward pass ran (2B rows when augmented)."""
        la, lv = modality_labels(batch)
        if "partner" in out.extras:
            partner = out.extras["partner"]
            la, lv = torch.cat([la, la]), torch.cat([lv, lv[partner]])
        return la, lv

    def contrastive_loss(self, out: ModelOutput, la: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        att = out.extras["frame_att_logits"]
        pooled_a = label_weighted_pooling(out.extras["audio_enc"], att[:, :, 0], la)
        pooled_v = label_weighted_pooling(out.extras["visual_enc"], att[:, :, 1], lv)
        sims = cross_video_similarities(pooled_a, pooled_v, self.options.temperature)
        return cross_modal_contrastive_loss(sims, la, lv)

    def loss(self, out: ModelOutput, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        late = epoch > o.init_epoch
        sa, sv = (o.audio_smoothing, o.visual_smoothing) if late else (o.early_audio_smoothing, o.early_visual_smoothing)
        la, lv = self.labels_of_rows(out, batch)
        rows = la.shape[0] if o.bce_on_augmented else batch.size
        ya, yv = la[:rows], lv[:rows]
        union = torch.maximum(ya, yv)
        parts = {
            "bce_global": bce(out.extras["all_video"][:rows], union),
            "bce_audio": bce(out.extras["all_audio_video"][:rows], smoothed(ya, sa)),
            "bce_visual": bce(out.extras["all_visual_video"][:rows], smoothed(yv, sv)),
        }
        total = parts["bce_global"] + parts["bce_audio"] + parts["bce_visual"]
        if o.contrastive and la.shape[0] > 1:
            parts["contrastive"] = self.contrastive_loss(out, la, lv)
            if late:
                total = total + o.contrastive_weight * parts["contrastive"]
        return total, {name: float(value.detach()) for name, value in parts.items()}


# ------------------------------------------------------------------------------------------ preset
