"""MM-CSE (Zhao et al., AAAI'25): class-aware feature decoupling + fine-grained semantic enhancement.

Pipeline (reference-methods §3 MM-CSE, papers 000/001; constants verified in PengchengZhao1001/MM-CSE):

    inputs → `InputProjection` (VALOR: CLAP tokens / CLIP + R(2+1)D, d1 = 256; no HAN encoder, the FGSE
    stack replaces it) → CAFD (K+1 class-wise decouplers per modality, α blend of Eq. 1 → K tokens of
    d2 = 128 per segment) → L = 4 FGSE layers (SECM across the K tokens of a segment, LGSF per class over
    time; intra- and cross-modal paths) → per-class heads (K separate Linear(d2→1) for prob, frame-att,
    av-att) → HAN's attentive MMIL pooling.

Choices where paper and code differ (the preset follows the code, each one is a flag):
- reconstruction weight: paper Eq. 12 has weight 1, code 0.5 (`rec_weight`, preset 0.5). λ1 (ort) = λ2
  (ec) = 0.1 in both.
- orthogonality loss: paper Eq. 9 = mean cosine(background, each class token) for both modalities; code
  does that for audio but uses cosine(background, mean of the K class tokens) for visual
  (`ort_visual = "class_mean"` code, `"per_class"` paper). The cosine is signed (can go negative).
- LGSF: the paper computes the global vector from the block input F̂; the code takes it from the SECM
  output (intra) / the other modality's input (cross) and adds the gated global vector to the ORIGINAL
  input, so SECM acts only through the gate and the global mean. We follow the code.
- reconstruction decoder ends with a ReLU in the code (the target can be negative); kept.
- learning rate: paper 3e-4 (preset), code default 1e-4.
- decoupling "events" (Table 2 #2, no background): tokens = class features directly (no α, no h);
  decoupling "none" (Table 2 #1): one holistic token per segment = ReLU(Linear(d1→d2)) shared by all K
  per-class heads; SECM over one token is then a value projection. rec/ort/ec need class tokens:
  "none" disables rec, ort and ec; "events" disables ort (no background).
- "without LGSF": a path's output is the SECM residual Z = x + SECM(x); "without SECM": LGSF reads x.

Eval gating of the reference driver: audio segments gated by the fused video prediction, visual by
v_prob (`EVAL_GATE = "mmcse"`, recorded in the preset). Attention maps of the last layer are returned in
`ModelOutput.extras` ("map_aa", "map_av", "map_vv", "map_va", each (B,10,K,K)); `cooccurrence_map`
averages one of them over a split for the paper's Fig. 4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avvp.models.base import MODELS, Batch, InputDims, ModelOutput, ParsingModel, options_from_mapping
from avvp.models.blocks import InputProjection, bce
from avvp.registry import Registry

EVAL_GATE = "mmcse"  # audio by the global prediction, visual by v_prob (reference driver)
DECOUPLING_MODES = ("none", "events", "events+background")


@dataclass(frozen=True)
class MMCSEOptions:
    hidden: int = 256  # d1: projected audio/visual width
    token_dim: int = 128  # d2: class-token width
    layers: int = 4  # L stacked FGSE layers
    heads: int = 8  # SECM attention heads
    ff: int = 512  # FGSE feed-forward width
    dropout: float = 0.1
    decoupling: str = "events+background"  # Table 2: none | events | events+background
    secm: bool = True  # Table 3 switches
    lgsf: bool = True
    intra_fgse: bool = True
    cross_fgse: bool = True
    basic_loss: bool = True  # Table 4 switches (L_basic = VALOR loss)
    rec_loss: bool = True
    ort_loss: bool = True
    ec_loss: bool = True
    rec_weight: float = 0.5  # code 0.5; paper Eq. 12: 1.0
    ort_weight: float = 0.1  # λ1
    ec_weight: float = 0.1  # λ2
    ort_visual: str = "class_mean"  # "class_mean" (code) | "per_class" (paper Eq. 9)

    def __post_init__(self) -> None:
        if self.decoupling not in DECOUPLING_MODES:
            raise ValueError(f"decoupling must be one of {DECOUPLING_MODES}, got {self.decoupling!r}")
        if self.ort_visual not in ORT_VISUAL_MODES:
            raise ValueError(f"ort_visual must be one of {ORT_VISUAL_MODES.names()}, got {self.ort_visual!r}")
        if not (self.intra_fgse or self.cross_fgse):
            raise ValueError("at least one of intra_fgse / cross_fgse must be on")
        if self.token_dim % self.heads:
            raise ValueError(f"token_dim {self.token_dim} is not divisible by heads {self.heads}")


# ----------------------------------------------------------------------------------------------- blocks
class ClassWiseLinear(nn.Module):
    """`n` independent Linear(in→out) layers applied at once (the 26 decouplers, the 25 per-class heads).

    x (..., in) → (..., n, out) when the input is shared by all branches; x (..., n, in) → (..., n, out)
    when every branch has its own input. Initialised like `nn.Linear` (uniform ±1/sqrt(in)).
    """

    def __init__(self, in_dim: int, out_dim: int, n: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n, out_dim, in_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, out_dim).uniform_(-bound, bound))
        self.n = n

    def forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        n, out_dim, in_dim = self.weight.shape
        if shared:  # one (in → n·out) matmul: much faster on CPU than a batched einsum
            y = F.linear(x, self.weight.reshape(n * out_dim, in_dim), self.bias.reshape(-1))
            return y.reshape(*x.shape[:-1], n, out_dim)
        if out_dim == 1:  # per-class scalar heads: a weighted sum per branch
            return (x * self.weight[:, 0]).sum(dim=-1, keepdim=True) + self.bias
        return torch.einsum("...ni,noi->...no", x, self.weight) + self.bias


def mmil_pool(logits: torch.Tensor, att_logits: torch.Tensor, av_logits: torch.Tensor):
    """HAN's attentive MMIL pooling on (B,T,2,K) logits (same formula as `blocks.MMILHead`, which cannot
    be reused here because MM-CSE's heads are per-class on class tokens, not one Linear on a segment)."""
    frame_prob = torch.sigmoid(logits)
    temporal_prob = torch.softmax(att_logits, dim=1) * frame_prob
    global_prob = (temporal_prob * torch.softmax(av_logits, dim=2)).sum(dim=2).sum(dim=1)
    return frame_prob, global_prob, temporal_prob[:, :, 0].sum(dim=1), temporal_prob[:, :, 1].sum(dim=1)


class CAFD(nn.Module):
    """Class-aware feature decoupling of one modality: (B,T,d1) → class tokens, decoupled features, parts
    for the losses. Audio branches: ReLU→Linear→ReLU; visual: ReLU→Linear→ReLU→Dropout→Linear→ReLU."""

    def __init__(self, cfg: MMCSEOptions, num_classes: int, deep: bool):
        super().__init__()
        self.mode = cfg.decoupling
        self.k = num_classes
        d1, d2 = cfg.hidden, cfg.token_dim
        n = {"none": 1, "events": num_classes, "events+background": num_classes + 1}[cfg.decoupling]
        self.first = ClassWiseLinear(d1, d2, n)
        self.second = ClassWiseLinear(d2, d2, n) if deep else None
        self.drop = nn.Dropout(cfg.dropout)
        if self.mode == "events+background":
            self.alpha = nn.Sequential(nn.ReLU(), nn.Linear(d1, d1 // 2), nn.ReLU(), nn.Dropout(cfg.dropout),
                                       nn.Linear(d1 // 2, 1))
            self.blend = nn.Sequential(nn.Linear(2 * d2, d2), nn.ReLU())  # h of Eq. 1

    def decouple(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.first(F.relu(x), shared=True))  # (B,T,n,d2)
        if self.second is not None:
            y = F.relu(self.second(self.drop(y), shared=False))
        return y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (tokens (B,T,K or 1,d2), decoupled (B,T,n,d2))."""
        dec = self.decouple(x)
        if self.mode != "events+background":
            return dec, dec
        events, background = dec[:, :, : self.k], dec[:, :, self.k :]
        alpha = torch.sigmoid(self.alpha(x)).unsqueeze(-1)  # (B,T,1,1) per segment
        mixed = torch.cat([alpha * events, (1 - alpha) * background.expand_as(events)], dim=-1)
        return self.blend(mixed), dec


class SECM(nn.Module):
    """Segment-wise event co-occurrence: multi-head attention across the K tokens of each segment.
    Returns the attention output (B,T,K,d) and the head-averaged map β (B,T,K,K)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, k, d = q.shape
        out, beta = self.attn(q.reshape(b * t, k, d), kv.reshape(b * t, k, d), kv.reshape(b * t, k, d),
                              need_weights=True, average_attn_weights=True)
        return out.reshape(b, t, k, d), beta.reshape(b, t, k, k)


class LGSF(nn.Module):
    """Local-global semantic fusion per class over time: g = mean_t ReLU(W_g y_t),
    gate_t = σ(cos(ReLU(W_l x_t), g)), output gate_t · g. Intra: two weights, y = x; cross: one shared
    weight, y = the other modality (reference code)."""

    def __init__(self, d: int, cross: bool):
        super().__init__()
        self.local = nn.Linear(d, d)
        self.glob = self.local if cross else nn.Linear(d, d)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = F.relu(self.glob(y)).mean(dim=1, keepdim=True)  # (B,1,K,d)
        gate = torch.sigmoid(F.cosine_similarity(F.relu(self.local(x)), g, dim=-1)).unsqueeze(-1)
        return gate * g


class FGSELayer(nn.Module):
    """One FGSE layer: fc1(intra path) + fc2(cross path) → LayerNorm → FFN (no residual after the FFN)."""

    def __init__(self, cfg: MMCSEOptions):
        super().__init__()
        d = cfg.token_dim
        self.options = cfg
        self.secm_intra, self.secm_cross = SECM(d, cfg.heads, cfg.dropout), SECM(d, cfg.heads, cfg.dropout)
        self.lgsf_intra, self.lgsf_cross = LGSF(d, cross=False), LGSF(d, cross=True)
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, cfg.ff), nn.Linear(cfg.ff, d)
        self.drop = nn.Dropout(cfg.dropout)

    def _path(self, x: torch.Tensor, other: torch.Tensor, secm: SECM, lgsf: LGSF, cross: bool):
        beta = None
        z = x
        if self.options.secm:
            att, beta = secm(x, other if cross else x)
            z = x + att
        if self.options.lgsf:
            z = x + lgsf(z, other if cross else z)
        return z, beta

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        total = torch.zeros_like(x)
        beta_intra = beta_cross = None
        if self.options.intra_fgse:
            z, beta_intra = self._path(x, other, self.secm_intra, self.lgsf_intra, cross=False)
            total = total + self.fc1(z)
        if self.options.cross_fgse:
            z, beta_cross = self._path(x, other, self.secm_cross, self.lgsf_cross, cross=True)
            total = total + self.fc2(z)
        out = self.linear2(self.drop(F.relu(self.linear1(self.norm(total)))))
        return out, beta_intra, beta_cross


# ------------------------------------------------------------------------------------------------ losses
def _ort_per_class(events: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(events, background.expand_as(events), dim=-1).mean()


def _ort_class_mean(events: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(events.mean(dim=-2), background.squeeze(-2), dim=-1).mean()


ORT_VISUAL_MODES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("ort visual mode")
ORT_VISUAL_MODES.register("per_class")(_ort_per_class)
ORT_VISUAL_MODES.register("class_mean")(_ort_class_mean)


def orthogonality_loss(decoupled: torch.Tensor, num_classes: int, mode: str = "per_class") -> torch.Tensor:
    """Signed mean cosine between background token (last) and event tokens of (B,T,K+1,d) features."""
    return ORT_VISUAL_MODES.get(mode)(decoupled[:, :, :num_classes], decoupled[:, :, num_classes:])


def cooccurrence_targets(pa: torch.Tensor, pv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eq. 10 targets from (B,T,K) segment labels: M[t,i,j] = y^m[t,i]·y^m'[t,j] for aa, av, vv, va."""
    outer = lambda x, y: x.unsqueeze(-1) * y.unsqueeze(-2)  # noqa: E731
    return {"aa": outer(pa, pa), "av": outer(pa, pv), "vv": outer(pv, pv), "va": outer(pv, pa)}


# ------------------------------------------------------------------------------------------------- model
@MODELS.register("mmcse")
class MMCSE(ParsingModel):
    Options = MMCSEOptions
    eval_gate = EVAL_GATE

    def __init__(self, options: MMCSEOptions | Mapping[str, Any], dims: InputDims):
        super().__init__()
        self.options = config = options_from_mapping(self.Options, options)
        self.k = dims.num_classes
        self.proj = InputProjection(dims, config.hidden)
        self.cafd_a = CAFD(config, self.k, deep=False)
        self.cafd_v = CAFD(config, self.k, deep=True)
        self.layers = nn.ModuleList([FGSELayer(config) for _ in range(config.layers)])
        d2 = config.token_dim
        self.fc_prob, self.fc_frame_att, self.fc_av_att = (ClassWiseLinear(d2, 1, self.k) for _ in range(3))
        has_tokens = config.decoupling != "none"
        self.use_rec = config.rec_loss and has_tokens
        self.use_ort = config.ort_loss and config.decoupling == "events+background"
        self.use_ec = config.ec_loss and has_tokens and config.secm
        if self.use_rec:
            n = self.k + (1 if config.decoupling == "events+background" else 0)
            d1 = config.hidden
            self.rec_a = nn.Sequential(nn.Linear(n * d2, d1), nn.ReLU(), nn.Linear(d1, d1), nn.ReLU())
            self.rec_v = nn.Sequential(nn.ReLU(), nn.Linear(n * d2, d1), nn.ReLU(), nn.Linear(d1, d1), nn.ReLU())


    def forward(self, batch: Batch) -> ModelOutput:
        xa, xv = self.proj(batch.audio, batch.visual, batch.motion)
        ta, dec_a = self.cafd_a(xa)
        tv, dec_v = self.cafd_v(xv)
        maps: dict[str, torch.Tensor] = {}
        for layer in self.layers:  # parallel update, one layer shared by both modalities
            (na, b_aa, b_av), (nv, b_vv, b_va) = layer(ta, tv), layer(tv, ta)
            ta, tv = na, nv
        for name, beta in (("aa", b_aa), ("av", b_av), ("vv", b_vv), ("va", b_va)):
            if beta is not None:
                maps[name] = beta
        x = torch.stack([ta, tv], dim=2)  # (B,T,2,K|1,d2)
        if x.shape[3] == 1:
            x = x.expand(-1, -1, -1, self.k, -1)
        logits, att, av = (head(x, shared=False).squeeze(-1) for head in (self.fc_prob, self.fc_frame_att, self.fc_av_att))
        frame_prob, global_prob, a_prob, v_prob = mmil_pool(logits, att, av)
        extras = {"frame_logits": logits, **{f"map_{k}": v for k, v in maps.items()}}
        if self.training:
            extras.update(self._aux_losses(xa, xv, dec_a, dec_v))
        return ModelOutput(video=global_prob, audio_seg=frame_prob[:, :, 0], visual_seg=frame_prob[:, :, 1],
                           audio_video=a_prob, visual_video=v_prob, extras=extras)

    def _aux_losses(self, xa, xv, dec_a, dec_v) -> dict[str, torch.Tensor]:
        out = {}
        if self.use_rec:
            b, t = xa.shape[:2]
            out["loss_rec_a"] = F.mse_loss(self.rec_a(dec_a.reshape(b, t, -1)), xa)
            out["loss_rec_v"] = F.mse_loss(self.rec_v(dec_v.reshape(b, t, -1)), xv)
        if self.use_ort:
            out["loss_ort_a"] = orthogonality_loss(dec_a, self.k, "per_class")
            out["loss_ort_v"] = orthogonality_loss(dec_v, self.k, self.options.ort_visual)
        return out

    def loss(self, out: ModelOutput, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.pseudo_audio is None or batch.pseudo_visual is None:
            raise ValueError("mmcse trains on VALOR segment pseudo-labels: the store has no /pseudo/audio|visual")
        cfg, parts = self.options, {}
        pa, pv = batch.pseudo_audio.float(), batch.pseudo_visual.float()
        total = out.video.new_zeros(())
        if cfg.basic_loss:
            logits = out.extras["frame_logits"]
            parts["video"] = bce(out.video, batch.weak.float())
            parts["seg_audio"] = F.binary_cross_entropy_with_logits(logits[:, :, 0], pa)
            parts["seg_visual"] = F.binary_cross_entropy_with_logits(logits[:, :, 1], pv)
            total = parts["video"] + parts["seg_audio"] + parts["seg_visual"]
        if self.use_rec and "loss_rec_a" in out.extras:
            parts["rec"] = out.extras["loss_rec_a"] + out.extras["loss_rec_v"]
            total = total + cfg.rec_weight * parts["rec"]
        if self.use_ort and "loss_ort_a" in out.extras:
            parts["ort"] = out.extras["loss_ort_a"] + out.extras["loss_ort_v"]
            total = total + cfg.ort_weight * parts["ort"]
        if self.use_ec:
            targets = cooccurrence_targets(pa, pv)
            ec = [F.mse_loss(out.extras[f"map_{k}"], targets[k]) for k in targets if f"map_{k}" in out.extras]
            if ec:
                parts["ec"] = torch.stack(ec).sum()
                total = total + cfg.ec_weight * parts["ec"]
        return total, {k: float(v.detach()) for k, v in parts.items()} | {"total": float(total.detach())}


# ------------------------------------------------------------------------------------- Fig. 4 export
@torch.no_grad()
def cooccurrence_map(model: MMCSE, batches: Iterable[Batch], pair: str = "av") -> np.ndarray:
    """Mean last-layer SECM map β^{pair} (K,K) over all videos and segments of `batches` (paper Fig. 4:
    β^{av} averaged over the test videos along time). Rows: query modality classes; columns: key modality."""
    was_training = model.training
    model.eval()
    total, count = None, 0
    try:
        for batch in batches:
            beta = model(batch).extras.get(f"map_{pair}")
            if beta is None:
                raise ValueError(f"the model has no {pair!r} co-occurrence map (SECM or that FGSE path is off)")
            s = beta.sum(dim=(0, 1)).double().cpu()
            total = s if total is None else total + s
            count += beta.shape[0] * beta.shape[1]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no batches to average")
    return (total / count).numpy()


def save_cooccurrence_png(matrix: np.ndarray, path: str | Path, classes: Iterable[str] | None = None,
                          title: str = "MM-CSE event co-occurrence β (audio rows × visual columns)") -> Path:
    """Write the (K,K) map as a heat-map PNG (matplotlib, imported lazily: optional dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = list(classes) if classes is not None else None
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(matrix, cmap="viridis")
    if names:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ preset
