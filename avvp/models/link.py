"""LINK (Wang, Zhu, Chen, Wang; arXiv 2412.20872) built as its paper's ablation: VALOR++ plus switches.

No public code exists; the paper (002) is the specification and its Table II is an ablation over a VALOR++
baseline, so the model is VALOR++ (the `han` model with the valor++ preset's options: `InputProjection`,
sequential post-norm HAN encoder, attentive MMIL head, VALOR loss; the same modules, built in the same
order, so the same seed gives the same weights) plus one switch per addition, in the paper's order:

  tsam   Eqs. 1-3  temporal attention W (B,T,1) = σ(MLP(avg_d f) + MLP(max_d f)), MLP T → T/r → T shared;
                   spatial attention S (B,1,d) of x = W⊗f (Eq. 2, see `tsam_spatial`); f̂ = S(x)·x,
                   plus the input when `tsam_residual` (default).
  cmim   Eqs. 4-6  f^ac = f̂^a + α2·Softmax(f̂^a f̂^vᵀ/√d)(β2·f̂^v), f^vc likewise (α1, β1);
                   f^out = f̂ + f^c (`cmim_output="sum"`, Eq. 6) or f^c (`"adapter"`).
  sloss  Eqs. 9-12 + L_label + λ·L_avss on the VALOR loss; s = cosine of every audio/visual encoder-output
                   segment pair (B,T,T), r = IoU of their pseudo-label class sets, λ(s) Eq. 11 with μ.
  plsim  Eqs. 13-17 the label-semantic injection: per segment, F_p = text embeddings of the classes the
                   teacher marks (/text/clap audio, /text/clip visual); Δ1..Δ4 MLPs give γ1, γ2, ρ1, ρ2;
                   F = f ⊙ γ1 + γ2 + f (and ρ for visual).
With every switch off `link` computes VALOR++ exactly (forward, loss, parameters; tested to 1e-6).

Readings where the paper is silent or inconsistent (docs/models/link.md gives the measurements; every
choice is an option, the other reading kept):
- TSAM residual (`tsam_residual`, default True): Eq. 3 replaces f by f̂ = S·W·f, two sigmoids ≈ 0.5 and
  ≈ 0.3 at initialisation, i.e. 0.16 of f's norm, and every later layer sees shrunken, re-weighted
  features. CBAM (the paper's model for TSAM) refines the residual branch and adds the shortcut; so does
  this default: f + f̂. False = the literal Eq. 3.
- Eq. 2 (`tsam_spatial`): "concatenate the temporal avg and max pooled vectors, then δ" gives (2, d),
  which cannot weight (T, d) without a reduction: "conv" = CBAM's spatial-attention form, Conv1d(2→1,
  kernel `tsam_spatial_kernel`) along the feature axis (default); "mlp" = CBAM's channel-attention form,
  σ(MLP(avg) + MLP(max)) with a shared d → d/`tsam_reduction` → d MLP.
- Eq. 3 multiplies by (W·f^a) for both modalities: read as f^m (typo; CBAM's F'' = Ms(F')⊗F').
- CMIM softmax over the other modality's T segments, scaled by 1/√d (`cmim_scaled`); α, β initialised to
  `cmim_init` (1).
- Where the modules sit (Fig. 2 only): between the input projection and the encoder (`position`).
- L_label = BCE(Y, y) has no prediction: BCE(a_prob, Y^a) + BCE(v_prob, Y^v), Y^m = max_t of the segment
  pseudo-labels (LEAP's video-level terms; `label_loss`).
- λ from s detached (`sloss_detach_weight`). μ: trained (paper) drives λ to ≡ 1 (λ ≥ 1 is smallest at
  μ = 1), i.e. plain MSE; `freeze_mu` keeps μ = `mu_init` (0: λ's peak e). Pairs with two empty label
  sets get r = 0 (as `avvp.pseudolabels.eiou.eiou_paper`); `avss_target="store"` reads batch.eiou.
- PLSIM labels (`plsim_labels`): "unmasked" (paper: teacher logit > threshold, no weak-label mask, read
  from /zeroshot/* in every split), "masked" (batch.pseudo_*, train-only ablations), "stored" (the store's
  /pseudo/* in every split: a store of the released features; preset `link-release`). Text rows:
  `plsim_text` "store" (/text/clap, /text/clip) or "glove" (packaged GloVe rows of the LLP classes).
- PLSIM initialisation (`plsim_zero_init`, default True): the last layer of every Δ MLP starts at zero,
  so F = f at initialisation and the injection grows from VALOR++'s features (FiLM/adapter practice; the
  paper gives no initialisation). False = PyTorch's default init, where γ1, γ2 start as random functions
  of the text rows of the size of f itself.
- Several labels in one segment: mean of their text rows (`plsim_pool`); none → F_p = 0.
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
from avvp.models.han import valor_loss
from avvp.registry import Registry

SWITCHES = ("tsam", "cmim", "sloss", "plsim")  # the paper's order (Table II: T = tsam + cmim, S, P)
POSITIONS = ("pre_encoder", "post_encoder")
PLSIM_POOLS = ("mean", "sum")
AVSS_WEIGHTINGS = ("piecewise", "uniform")
AVSS_TARGETS = ("iou", "store")
PLSIM_TEXT_SOURCES = ("store", "glove")
TSAM_SPATIAL = ("conv", "mlp")
CMIM_OUTPUTS = ("sum", "adapter")
SIM_LOW = -0.2  # Eq. 11 piece boundary


@dataclass(frozen=True)
class LINKOptions:
    # VALOR++ (the valor++ preset's han options)
    hidden: int = 256
    heads: int = 8
    ff: int = 1024
    layers: int = 4
    dropout: float = 0.1
    # the switches, in the paper's order
    tsam: bool = True
    cmim: bool = True
    sloss: bool = True
    plsim: bool = True
    # TSAM / CMIM
    tsam_residual: bool = True  # f + f̂ (CBAM's shortcut); False = the literal Eq. 3 (f̂ replaces f)
    tsam_spatial: str = "conv"  # Eq. 2's reduction of the (2, d) pooled map: conv | mlp
    tsam_reduction: int = 2
    tsam_spatial_kernel: int = 7
    cmim_scaled: bool = True
    cmim_init: float = 1.0
    cmim_output: str = "sum"  # "sum": f̂ + f^c (Eq. 6) | "adapter": f^c
    position: str = "pre_encoder"
    # S-LOSS
    label_loss: bool = True
    avss_weighting: str = "piecewise"
    avss_target: str = "iou"
    sloss_detach_weight: bool = True
    mu_init: float = 0.0
    freeze_mu: bool = False  # μ fixed at mu_init (a buffer, not trained): keeps λ away from the μ → 1 collapse
    # PLSIM
    plsim_labels: str = "unmasked"  # "unmasked" (paper) | "masked" (train-only ablation) | "stored" (releases)
    plsim_pool: str = "mean"
    plsim_text: str = "store"  # "store": /text/clap (audio), /text/clip (visual) | "glove": packaged GloVe rows
    plsim_zero_init: bool = True  # Δ MLPs' last layer at zero: F = f at initialisation
    # training only: each positive (segment, class) label PLSIM reads is dropped with this probability, so a
    # model whose PLSIM input is its own training target (plsim_labels=stored) cannot just copy it
    plsim_label_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name, allowed in (("position", POSITIONS), ("plsim_pool", PLSIM_POOLS),
                              ("avss_weighting", AVSS_WEIGHTINGS), ("avss_target", AVSS_TARGETS),
                              ("plsim_text", PLSIM_TEXT_SOURCES), ("tsam_spatial", TSAM_SPATIAL),
                              ("cmim_output", CMIM_OUTPUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.plsim_labels not in PLSIM_LABEL_SOURCES:
            raise ValueError(f"plsim_labels must be one of {PLSIM_LABEL_SOURCES.names()}, got {self.plsim_labels!r}")
        if self.tsam_spatial_kernel % 2 == 0:
            raise ValueError("tsam_spatial_kernel must be odd (same padding)")
        if not 0.0 <= self.plsim_label_dropout < 1.0:
            raise ValueError(f"plsim_label_dropout must be in [0, 1), got {self.plsim_label_dropout}")

    @property
    def is_valor_pp(self) -> bool:
        """Every addition off: the model is VALOR++."""
        return not any(getattr(self, s) for s in SWITCHES)


# ------------------------------------------------------------------------------------------------ TSAM
class TSAM(nn.Module):
    """Temporal (per segment) then spatial (per feature) attention of one modality, CBAM-style (Eqs. 1-3)."""

    def __init__(self, segments: int, dim: int, reduction: int, kernel: int, spatial: str = "conv",
                 residual: bool = True):
        super().__init__()
        mid = max(1, segments // reduction)
        self.mlp = nn.Sequential(nn.Linear(segments, mid), nn.ReLU(), nn.Linear(mid, segments))
        self.spatial_form = spatial
        if spatial == "conv":
            self.conv = nn.Conv1d(2, 1, kernel, padding=kernel // 2)
        else:
            self.spatial_mlp = nn.Sequential(nn.Linear(dim, max(1, dim // reduction)), nn.ReLU(),
                                             nn.Linear(max(1, dim // reduction), dim))
        self.residual = residual

    def temporal(self, f: torch.Tensor) -> torch.Tensor:
        """W (B,T,1), Eq. 1: pooled over the feature axis, one weight per segment."""
        return torch.sigmoid(self.mlp(f.mean(dim=-1)) + self.mlp(f.amax(dim=-1))).unsqueeze(-1)

    def spatial(self, f: torch.Tensor) -> torch.Tensor:
        """S (B,1,d), Eq. 2: pooled over time, reduced by the conv (or the shared MLP)."""
        if self.spatial_form == "conv":
            return torch.sigmoid(self.conv(torch.stack([f.mean(dim=1), f.amax(dim=1)], dim=1)))  # (B,1,d)
        return torch.sigmoid(self.spatial_mlp(f.mean(dim=1)) + self.spatial_mlp(f.amax(dim=1))).unsqueeze(1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        weighted = self.temporal(f) * f
        refined = self.spatial(weighted) * weighted  # Eq. 3
        return f + refined if self.residual else refined


class CMIM(nn.Module):
    """Eqs. 4-6 with the four learnable scalars α1, α2, β1, β2."""

    def __init__(self, dim: int, scaled: bool, init: float, output: str = "sum"):
        super().__init__()
        self.alpha1, self.alpha2, self.beta1, self.beta2 = (nn.Parameter(torch.tensor(float(init))) for _ in range(4))
        self.scale = 1.0 / math.sqrt(dim) if scaled else 1.0
        self.output = output

    def forward(self, fa: torch.Tensor, fv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att_av = torch.softmax(fa @ fv.transpose(1, 2) * self.scale, dim=-1)  # audio queries over visual segments
        att_va = torch.softmax(fv @ fa.transpose(1, 2) * self.scale, dim=-1)
        fac = fa + self.alpha2 * att_av @ (self.beta2 * fv)  # Eq. 4
        fvc = fv + self.alpha1 * att_va @ (self.beta1 * fa)  # Eq. 5
        if self.output == "adapter":
            return fac, fvc
        return fa + fac, fv + fvc  # Eq. 6


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

    def __init__(self, clap_dim: int, clip_dim: int, hidden: int, pool: str, zero_init: bool = True):
        super().__init__()
        mlp = lambda d: nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden))  # noqa: E731
        self.delta1, self.delta2 = mlp(clap_dim), mlp(clap_dim)
        self.delta3, self.delta4 = mlp(clip_dim), mlp(clip_dim)
        if zero_init:  # γ = ρ = 0 at initialisation: F = f, the injection grows from the base features
            for delta in (self.delta1, self.delta2, self.delta3, self.delta4):
                nn.init.zeros_(delta[-1].weight)
                nn.init.zeros_(delta[-1].bias)
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
        # VALOR++ first, named and built in the order of `han` (projection, head, encoder): the same seed
        # gives the same base weights whatever the switches, and a VALOR++ state dict loads into them
        self.projection = InputProjection(dims, d)
        self.head = MMILHead(d, dims.num_classes)
        self.encoder = HANEncoder(HANEncoderOptions(hidden=d, heads=config.heads, ff=config.ff, layers=config.layers,
                                                    dropout=config.dropout, pre_norm=False, sequential=True))
        if config.tsam:
            self.tsam_a, self.tsam_v = (TSAM(NUM_SEGMENTS, d, config.tsam_reduction, config.tsam_spatial_kernel,
                                             config.tsam_spatial, config.tsam_residual) for _ in range(2))
        if config.cmim:
            self.cmim = CMIM(d, config.cmim_scaled, config.cmim_init, config.cmim_output)
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
            self.plsim_module = PLSIM(text["clap"], text["clip"], d, config.plsim_pool, config.plsim_zero_init)
        if config.sloss and config.avss_weighting == "piecewise":
            if config.freeze_mu:
                self.register_buffer("mu", torch.tensor(float(config.mu_init)), persistent=True)
            else:
                self.mu = nn.Parameter(torch.tensor(float(config.mu_init)))
        self._register_load_state_dict_pre_hook(self._load_pre_change_checkpoint)

    def _load_pre_change_checkpoint(self, state_dict, prefix, *args) -> None:
        """Checkpoints written before LINK was rebuilt on VALOR++ hold `proj.*` and computed the literal
        Eq. 3 (no TSAM residual): rename the keys and run TSAM as they did (recorded in the options)."""
        old = [k for k in state_dict if k.startswith(prefix + "proj.")]
        for key in old:
            state_dict[prefix + "projection." + key[len(prefix + "proj."):]] = state_dict.pop(key)
        if old and self.options.tsam and self.options.tsam_residual:
            from dataclasses import replace

            self.options = replace(self.options, tsam_residual=False)
            self.tsam_a.residual = self.tsam_v.residual = False

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
            p = self.options.plsim_label_dropout
            if self.training and p > 0:
                la = la * (torch.rand(la.shape, device=la.device) >= p)
                lv = lv * (torch.rand(lv.shape, device=lv.device) >= p)
            if self.options.plsim_text == "glove":
                text_a = text_v = self.plsim_glove
            else:
                if "clap" not in batch.text or "clip" not in batch.text:
                    raise ValueError("LINK PLSIM needs batch.text['clap'] and batch.text['clip']")
                text_a, text_v = batch.text["clap"], batch.text["clip"]
            a, v = self.plsim_module(a, v, la, lv, text_a, text_v)
        return a, v

    def forward(self, batch: Batch) -> ModelOutput:
        a, v = self.projection(batch.audio, batch.visual, batch.motion)
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
        """VALOR's loss (the same function `han` with loss="valor" calls), plus S-LOSS's terms when on."""
        total, logged = valor_loss(self, out, batch, epoch)
        if not self.options.sloss:
            return total, logged
        pa, pv = batch.pseudo_audio.float(), batch.pseudo_visual.float()
        if self.options.label_loss:
            label = bce(out.audio_video, pa.amax(dim=1)) + bce(out.visual_video, pv.amax(dim=1))
            total = total + label
            logged["label"] = float(label.detach())
        if self.options.avss_target == "store":
            if batch.eiou is None:
                raise ValueError("avss_target='store' needs /pseudo/eiou in the store")
            r = batch.eiou.float()
        else:
            r = segment_iou(pa, pv)
        mu = self.mu if self.options.avss_weighting == "piecewise" else None
        avss = sloss_avss(out.extras["similarity"], r, mu, self.options.sloss_detach_weight)
        total = total + avss
        logged["avss"] = float(avss.detach())
        if mu is not None:
            logged["mu"] = float(mu.detach())
        return total, logged
