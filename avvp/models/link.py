"""LINK (Wang, Zhu, Chen, Wang; arXiv 2412.20872): VALOR++ + TSAM/CMIM + S-LOSS + PLSIM.

No public code exists; the paper (002) is the specification. LINK = the VALOR++ parser (CLAP tokens /
CLIP + R(2+1)D, `InputProjection` d = 256, sequential post-norm HAN encoder 4 layers × 8 heads, ff 1024,
attentive MMIL head, VALOR loss) with three additions, each a Table II switch:

T  TSAM (Eqs. 1-3): per modality, a CBAM-style block on the (T=10, d) segment features.
   Temporal attention W (B,T,1) = σ(MLP(avg_d f) + MLP(max_d f)), the MLP shared by both pooled vectors
   (T → T/r → T, r = `tsam_reduction`); spatial attention S (B,1,d) from the avg and max over time of
   W⊗f; f̂ = S(W⊗f) · (W⊗f).
   + CMIM (Eqs. 4-6): f^ac = f̂^a + α2·Softmax(f̂^a f̂^vᵀ)(β2·f̂^v), f^vc likewise with α1, β1;
   f^out = f̂ + f^c (four learnable scalars).
S  S-LOSS (Eqs. 9-12): adds L_label and λ·L_avss to the VALOR loss. s = cosine similarity of every
   audio/visual segment pair of the encoder outputs (B,T,T), r = IoU of their pseudo-label event sets;
   L_avss = mean over pairs of λ(s)·(s − r)², λ piecewise in s with a learnable μ (Eq. 11):
   1 for s ≤ −0.2, e^{|1−μ|} for −0.2 < s < 0, e^{|1−μ|} + (1 − e^{|1−μ|})·s for s ≥ 0.
P  PLSIM (Eqs. 13-17): per segment, the text embeddings (store /text/clap for audio, /text/clip for
   visual) of the classes the teacher pseudo-labels mark → F_p; four MLPs give scale/bias
   γ1, γ2 (audio), ρ1, ρ2 (visual); F = f ⊙ γ1 + γ2 + f.

Ambiguities resolved (docstring + flag each):
- Eq. 3 multiplies by (W·f^a) for both modalities; read as a typo for f^m (CBAM's F'' = Ms(F')⊗F').
- Eq. 2 has no learnable layer and concatenates two d-vectors; as in CBAM a conv over the 2 pooled maps
  makes one map: Conv1d(2→1, kernel `tsam_spatial_kernel` = 7, same padding) along the feature axis.
- TSAM's temporal MLP width: T/r with r = 2 (T = 10 is small; CBAM's r = 16 would give 0 units).
- CMIM softmax over the other modality's T segments of the dot products; scaled by 1/sqrt(d)
  (`cmim_scaled`, True) because raw 256-d dot products saturate the softmax; α, β initialised to
  `cmim_init` (1.0).
- Where the modules sit (Fig. 2 is not in the text): after the input projection, before the HAN encoder
  (`position = "pre_encoder"`); "post_encoder" applies them between the encoder and the head.
- L_label = BCE(Y, y) would have no gradient (both are labels); implemented as LEAP's video-level terms
  BCE(a_prob, Y^a) + BCE(v_prob, Y^v), Y^m = max over t of the segment pseudo-labels (`label_loss`).
- s is the raw cosine (no ReLU: Eq. 11 weights negative similarities), λ is computed from s detached
  (`sloss_detach_weight`) so the weight cannot be gamed by moving s; μ gets gradient through λ. μ is
  initialised to `mu_init` = 0 (λ in the middle piece e ≈ 2.72). Pairs whose two label sets are both
  empty get r = 0 (same as `avvp.pseudolabels.eiou.eiou_paper`). `avss_target = "store"` uses batch.eiou.
- PLSIM pseudo-labels: the paper uses labels WITHOUT the weak-label mask ("removed the logical operations
  with the video-level labels ... for testing"), i.e. teacher logit > threshold. `plsim_labels =
  "unmasked"` reads `batch.teacher_audio` / `batch.teacher_visual` (B,10,K); "masked" uses
  batch.pseudo_* (VALOR labels, which on val/test are masked with the evaluated videos' weak labels:
  only for ablations, never for reported test numbers).
- `plsim_labels = "stored"` reads the store's /pseudo/audio|visual in every split (trainer input
  "stored_pseudo"; the released, weak-label-masked labels of an `avvp-import` store) and `plsim_text =
  "glove"` uses the packaged GloVe rows of the LLP classes (avvp/models/data) instead of /text/clap|clip:
  together the preset `link-release`, which trains on the released features (docs/models/link.md says
  what it changes). `freeze_mu` keeps μ at `mu_init`: a trained μ always moves to 1 (λ ≥ 1 is smallest,
  ≡ 1, at μ = 1), where S-LOSS is plain MSE.
- Several labels in one segment: F_p = mean of their text embeddings (`plsim_pool = "mean"`, or
  "sum"); a segment without labels gets F_p = 0. Δ MLPs: Linear(D_text→d)→ReLU→Linear(d→d).
- L_video^m = Σ_t BCE in Eq. 8: mean over segments and classes, as VALOR's code.
Hyper-parameters the paper does not give (lr, epochs, batch, dims) follow VALOR++ (its baseline row in
Table II reproduces VALOR++'s published numbers exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from avvp.data.classes import NUM_SEGMENTS
from avvp.models.base import MODELS, Batch, InputDims, ModelOutput, ParsingModel, options_from_mapping
from avvp.models.blocks import HANEncoder, HANEncoderOptions, InputProjection, MMILHead, bce
from avvp.registry import Registry

POSITIONS = ("pre_encoder", "post_encoder")
PLSIM_POOLS = ("mean", "sum")
AVSS_WEIGHTINGS = ("piecewise", "uniform")
AVSS_TARGETS = ("iou", "store")
PLSIM_TEXT_SOURCES = ("store", "glove")
SIM_LOW = -0.2  # Eq. 11 piece boundary


@dataclass(frozen=True)
class LINKOptions:
    hidden: int = 256
    heads: int = 8
    ff: int = 1024
    layers: int = 4
    dropout: float = 0.1
    tsam: bool = True  # Table II "T" (TSAM incl. CMIM)
    sloss: bool = True  # Table II "S"
    plsim: bool = True  # Table II "P"
    cmim: bool = True  # CMIM inside TSAM
    tsam_reduction: int = 2
    tsam_spatial_kernel: int = 7
    cmim_scaled: bool = True
    cmim_init: float = 1.0
    position: str = "pre_encoder"
    label_loss: bool = True
    avss_weighting: str = "piecewise"
    avss_target: str = "iou"
    sloss_detach_weight: bool = True
    mu_init: float = 0.0
    freeze_mu: bool = False  # μ fixed at mu_init (a buffer, not trained): keeps λ away from the μ → 1 collapse
    plsim_labels: str = "unmasked"  # "unmasked" (paper) | "masked" (train-only ablation) | "stored" (releases)
    plsim_pool: str = "mean"
    plsim_text: str = "store"  # "store": /text/clap (audio), /text/clip (visual) | "glove": packaged GloVe rows

    def __post_init__(self) -> None:
        for name, allowed in (("position", POSITIONS), ("plsim_pool", PLSIM_POOLS),
                              ("avss_weighting", AVSS_WEIGHTINGS), ("avss_target", AVSS_TARGETS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.plsim_text not in PLSIM_TEXT_SOURCES:
            raise ValueError(f"plsim_text must be one of {PLSIM_TEXT_SOURCES}, got {self.plsim_text!r}")
        if self.plsim_labels not in PLSIM_LABEL_SOURCES:
            raise ValueError(f"plsim_labels must be one of {PLSIM_LABEL_SOURCES.names()}, got {self.plsim_labels!r}")
        if self.tsam_spatial_kernel % 2 == 0:
            raise ValueError("tsam_spatial_kernel must be odd (same padding)")


# ------------------------------------------------------------------------------------------------ TSAM
class TSAM(nn.Module):
    """Temporal (per segment) then spatial (per feature) attention of one modality, CBAM-style."""

    def __init__(self, segments: int, reduction: int, kernel: int):
        super().__init__()
        mid = max(1, segments // reduction)
        self.mlp = nn.Sequential(nn.Linear(segments, mid), nn.ReLU(), nn.Linear(mid, segments))
        self.conv = nn.Conv1d(2, 1, kernel, padding=kernel // 2)

    def temporal(self, f: torch.Tensor) -> torch.Tensor:
        """W (B,T,1), Eq. 1: pooled over the feature axis, one weight per segment."""
        return torch.sigmoid(self.mlp(f.mean(dim=-1)) + self.mlp(f.amax(dim=-1))).unsqueeze(-1)

    def spatial(self, f: torch.Tensor) -> torch.Tensor:
        """S (B,1,d), Eq. 2: pooled over time, fused by the conv."""
        pooled = torch.stack([f.mean(dim=1), f.amax(dim=1)], dim=1)  # (B,2,d)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        weighted = self.temporal(f) * f
        return self.spatial(weighted) * weighted  # Eq. 3


class CMIM(nn.Module):
    """Eqs. 4-6 with the four learnable scalars α1, α2, β1, β2."""

    def __init__(self, dim: int, scaled: bool, init: float):
        super().__init__()
        self.alpha1, self.alpha2, self.beta1, self.beta2 = (nn.Parameter(torch.tensor(float(init))) for _ in range(4))
        self.scale = 1.0 / math.sqrt(dim) if scaled else 1.0

    def forward(self, fa: torch.Tensor, fv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att_av = torch.softmax(fa @ fv.transpose(1, 2) * self.scale, dim=-1)  # audio queries over visual segments
        att_va = torch.softmax(fv @ fa.transpose(1, 2) * self.scale, dim=-1)
        fac = fa + self.alpha2 * att_av @ (self.beta2 * fv)
        fvc = fv + self.alpha1 * att_va @ (self.beta1 * fa)
        return fa + fac, fv + fvc


# ----------------------------------------------------------------------------------------------- PLSIM
def _unmasked_labels(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    pa, pv = getattr(batch, "teacher_audio", None), getattr(batch, "teacher_visual", None)
    if pa is None or pv is None:
        raise ValueError("LINK PLSIM with plsim_labels='unmasked' needs batch.teacher_audio / teacher_visual "
                         "(teacher logit > threshold, no weak-label mask; the trainer loads them from the store's "
                         "/zeroshot/clap and /zeroshot/clip); set model.options.plsim_labels=masked only for "
                         "train-split ablations")
    return pa, pv


def _masked_labels(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.pseudo_audio is None or batch.pseudo_visual is None:
        raise ValueError("LINK PLSIM with plsim_labels='masked' needs batch.pseudo_audio|visual: the trainer gives "
                         "them to training batches only (they use the weak labels, which a val/test video must not "
                         "need at prediction time); evaluate with plsim_labels=unmasked")
    return batch.pseudo_audio, batch.pseudo_visual


def _stored_labels(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    pa, pv = batch.stored_pseudo_audio, batch.stored_pseudo_visual
    if pa is None or pv is None:
        raise ValueError("LINK PLSIM with plsim_labels='stored' needs batch.stored_pseudo_audio / stored_pseudo_visual "
                         "(the trainer loads the store's /pseudo/audio|visual for every split as the input "
                         "'stored_pseudo')")
    return pa, pv


PLSIM_LABEL_SOURCES: Registry = Registry("PLSIM label source")
PLSIM_LABEL_SOURCES.register("unmasked")(_unmasked_labels)
PLSIM_LABEL_SOURCES.register("masked")(_masked_labels)
PLSIM_LABEL_SOURCES.register("stored")(_stored_labels)
PLSIM_INPUTS = {"unmasked": ("teacher",), "masked": (), "stored": ("stored_pseudo",)}


def label_text_features(labels: torch.Tensor, text: torch.Tensor, pool: str) -> torch.Tensor:
    """(B,T,K) multi-hot × (K,D) class-text embeddings → (B,T,D): sum or mean of the marked classes' texts
    (zero for a segment without labels)."""
    summed = labels.float() @ text.float()
    if pool == "sum":
        return summed
    return summed / labels.float().sum(dim=-1, keepdim=True).clamp(min=1.0)


class PLSIM(nn.Module):
    """Δ1..Δ4 of Eqs. 14-15 and the FiLM-like fusion of Eqs. 16-17."""

    def __init__(self, clap_dim: int, clip_dim: int, hidden: int, pool: str):
        super().__init__()
        mlp = lambda d: nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden))  # noqa: E731
        self.delta1, self.delta2 = mlp(clap_dim), mlp(clap_dim)
        self.delta3, self.delta4 = mlp(clip_dim), mlp(clip_dim)
        self.pool = pool

    def forward(self, fa, fv, labels_a, labels_v, text_clap, text_clip):
        pa = label_text_features(labels_a, text_clap, self.pool)  # F_p^a, Eq. 13
        pv = label_text_features(labels_v, text_clip, self.pool)
        fa = fa * self.delta1(pa) + self.delta2(pa) + fa
        fv = fv * self.delta3(pv) + self.delta4(pv) + fv
        return fa, fv


# ---------------------------------------------------------------------------------------------- S-LOSS
def piecewise_lambda(s: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Eq. 11: 1 (s ≤ −0.2); e^{|1−μ|} (−0.2 < s < 0); e^{|1−μ|} + (1 − e^{|1−μ|})·s (s ≥ 0)."""
    peak = torch.exp((1 - mu).abs())
    return torch.where(s <= SIM_LOW, torch.ones_like(s), torch.where(s < 0, peak.expand_as(s), peak + (1 - peak) * s))


def segment_iou(pa: torch.Tensor, pv: torch.Tensor) -> torch.Tensor:
    """(B,T,K) binary labels → (B,T,T) IoU of the class sets of audio segment i and visual segment j (0 when
    both are empty)."""
    pa, pv = pa.float(), pv.float()
    inter = pa @ pv.transpose(1, 2)
    union = pa.sum(-1).unsqueeze(-1) + pv.sum(-1).unsqueeze(-2) - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def segment_similarity(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B,T,d),(B,T,d) → (B,T,T) cosine similarity of audio segment i and visual segment j."""
    return F.normalize(a, dim=-1) @ F.normalize(v, dim=-1).transpose(1, 2)


def sloss_avss(s: torch.Tensor, r: torch.Tensor, mu: torch.Tensor | None, detach_weight: bool = True) -> torch.Tensor:
    """Segment-weighted MSE mean(λ(s)·(s − r)²); uniform weights (plain MSE) when `mu` is None."""
    sq = (s - r) ** 2
    if mu is None:
        return sq.mean()
    return (piecewise_lambda(s.detach() if detach_weight else s, mu) * sq).mean()


# ----------------------------------------------------------------------------------------------- model
@MODELS.register("link")
class LINK(ParsingModel):
    Options = LINKOptions

    def __init__(self, options: LINKOptions | Mapping[str, Any], dims: InputDims):
        super().__init__()
        self.options = config = options_from_mapping(self.Options, options)
        d = config.hidden
        self.proj = InputProjection(dims, d)
        self.encoder = HANEncoder(HANEncoderOptions(hidden=d, heads=config.heads, ff=config.ff, layers=config.layers,
                                                    dropout=config.dropout, pre_norm=False, sequential=True))
        self.head = MMILHead(d, dims.num_classes)
        if config.tsam:
            self.tsam_a = TSAM(NUM_SEGMENTS, config.tsam_reduction, config.tsam_spatial_kernel)
            self.tsam_v = TSAM(NUM_SEGMENTS, config.tsam_reduction, config.tsam_spatial_kernel)
            if config.cmim:
                self.cmim = CMIM(d, config.cmim_scaled, config.cmim_init)
        if config.plsim:
            if config.plsim_text == "glove":
                from avvp.models.leap import package_glove_embeddings

                self.register_buffer("plsim_glove", package_glove_embeddings(dims.num_classes), persistent=True)
                text = {"clap": self.plsim_glove.shape[1], "clip": self.plsim_glove.shape[1]}
            else:
                text = dict(dims.text_dims)
                if "clap" not in text or "clip" not in text:
                    raise ValueError(
                        f"LINK PLSIM needs /text/clap and /text/clip in the store; it has {sorted(text) or 'none'} "
                        "(a store made by avvp-import from the released features has none). Fix: write them with "
                        "avvp-extract, or use the packaged GloVe label rows (--set model.options.plsim_text=glove; "
                        "preset link-release), or train without PLSIM (model.options.plsim=false)")
            self.plsim_module = PLSIM(text["clap"], text["clip"], d, config.plsim_pool)
        if config.sloss and config.avss_weighting == "piecewise":
            if config.freeze_mu:
                self.register_buffer("mu", torch.tensor(float(config.mu_init)), persistent=True)
            else:
                self.mu = nn.Parameter(torch.tensor(float(config.mu_init)))

    @classmethod
    def required_inputs(cls, options: LINKOptions | Mapping[str, Any]) -> tuple[str, ...]:
        """PLSIM with unmasked labels reads batch.teacher_audio / teacher_visual (trainer input "teacher"),
        with stored labels batch.stored_pseudo_* (input "stored_pseudo")."""
        o = options_from_mapping(LINKOptions, options)
        return PLSIM_INPUTS[o.plsim_labels] if o.plsim else ()


    def _link_modules(self, a: torch.Tensor, v: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.options.tsam:
            a, v = self.tsam_a(a), self.tsam_v(v)
            if self.options.cmim:
                a, v = self.cmim(a, v)
        if self.options.plsim:
            la, lv = PLSIM_LABEL_SOURCES.get(self.options.plsim_labels)(batch)
            if self.options.plsim_text == "glove":
                text_a = text_v = self.plsim_glove
            else:
                if "clap" not in batch.text or "clip" not in batch.text:
                    raise ValueError("LINK PLSIM needs batch.text['clap'] and batch.text['clip']")
                text_a, text_v = batch.text["clap"], batch.text["clip"]
            a, v = self.plsim_module(a, v, la, lv, text_a, text_v)
        return a, v

    def forward(self, batch: Batch) -> ModelOutput:
        a, v = self.proj(batch.audio, batch.visual, batch.motion)
        if self.options.position == "pre_encoder":
            a, v = self._link_modules(a, v, batch)
        a, v = self.encoder(a, v)
        if self.options.position == "post_encoder":
            a, v = self._link_modules(a, v, batch)
        out = self.head(a, v)
        return ModelOutput(
            video=out.global_prob, audio_seg=out.frame_prob[:, :, 0], visual_seg=out.frame_prob[:, :, 1],
            audio_video=out.a_prob, visual_video=out.v_prob,
            extras={"frame_logits": out.frame_logits, "similarity": segment_similarity(a, v)},
        )

    def loss(self, out: ModelOutput, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.pseudo_audio is None or batch.pseudo_visual is None:
            raise ValueError("LINK trains on VALOR segment pseudo-labels: the store has no /pseudo/audio|visual")
        pa, pv = batch.pseudo_audio.float(), batch.pseudo_visual.float()
        logits = out.extras["frame_logits"]
        parts = {
            "video": bce(out.video, batch.weak.float()),
            "seg_audio": F.binary_cross_entropy_with_logits(logits[:, :, 0], pa),
            "seg_visual": F.binary_cross_entropy_with_logits(logits[:, :, 1], pv),
        }
        if self.options.sloss:
            if self.options.label_loss:
                parts["label"] = bce(out.audio_video, pa.amax(dim=1)) + bce(out.visual_video, pv.amax(dim=1))
            if self.options.avss_target == "store":
                if batch.eiou is None:
                    raise ValueError("avss_target='store' needs /pseudo/eiou in the store")
                r = batch.eiou.float()
            else:
                r = segment_iou(pa, pv)
            mu = self.mu if self.options.avss_weighting == "piecewise" else None
            parts["avss"] = sloss_avss(out.extras["similarity"], r, mu, self.options.sloss_detach_weight)
        total = torch.stack(list(parts.values())).sum()
        logged = {k: float(v.detach()) for k, v in parts.items()}
        if self.options.sloss and self.options.avss_weighting == "piecewise":
            logged["mu"] = float(self.mu.detach())
        return total, logged | {"total": float(total.detach())}


# ------------------------------------------------------------------------------------------------ preset
