"""LEAP: label semantic-based projection decoder (Zhou et al., ECCV'24; paper 003, reference-methods §3).

An audio-visual encoder (`mmpyr` = MM-Pyramid, the paper's default, or `han`) produces (B,10,d) audio
and visual segment features. LEAP then decodes with label embeddings instead of an MMIL head:

    label tokens  F_l = fc_l(text embedding of the K class names)                       (K,d)
    N LEAP blocks per modality (two separate stacks, label→audio and label→visual):
        x = x + drop(MHA(LN(x), F_m, F_m))        queries = label tokens, keys/values = 10 segments
        x = x + drop(FFN(LN(x)))                  pre-LN, LN on the query only (keys/values raw)
    segment probs  sigmoid(mean_heads(raw scores of the last block)ᵀ)                     (10,K)
    video probs    sigmoid(fc(F_l after the last block))                                 (K,)
    global         OR of (a_prob >= 0.5) and (v_prob >= 0.5)                              binary

Choices, each read in the reference code (jasongief/LEAP) unless marked otherwise:
- The raw scores are those of an attention RECOMPUTED inside the last block with the label tokens as
  updated by that block's attention sublayer (before its FFN) and WITHOUT the LayerNorm, using the same
  q/k projections; scaled dot products q·kᵀ/sqrt(d/heads) before softmax, averaged over the heads.
- The video-level head is ONE Linear(d→1) per modality applied to every class token (paper Eq. 7:
  W ∈ R^{1×d}); "per class" means per token, the weights are shared across classes.
- `video` (the fused prediction the metric gates with) is the binary OR as float: it is not
  differentiable, so BCE(global, y) adds to the loss value but gives no gradient. Kept as the
  reference does (it is part of the logged loss there too).
- L_avss = MSE(ReLU(cos(a_o_i, v_o_j)), EIoU_ij) on the ENCODER outputs (10×10), against `Batch.eiou`
  (/pseudo/eiou in the store: either the paper's set IoU or the code's sigmoid(log(M/n))+0.01 variant,
  whichever avvp.pseudolabels wrote; the model takes it as given).
- Video-level targets Pa/Pv = "class on in any segment" of the segment pseudo-labels, no smoothing.
- Label embeddings (`label_source`; the table is fixed, fc_l learns): `glove` (default) = the GloVe
  6B 300-d rows LEAP ships (`glove/6B/300d/llp_label_glove_embeddings.pt`, 25 phrases in LLP order),
  carried by this package as avvp/models/data/llp_label_glove_6B_300d.npy (provenance in the README
  there), so `fc_l = Linear(300, d)` as in the reference AVVPNet; `glove:PATH` another table (a torch
  .pt tensor / class → vector mapping, a .npy (K,D) array, or a GloVe .txt of word vectors whose words
  are averaged per class phrase — averaging is our choice); `clip` / `clap` = the store's /text/<name>
  rows (`Batch.text`; options, not the reference).
- `label_scale` (default 1 = as given; in neither the paper nor the code) multiplies the fixed table
  before fc_l. Kept only as a non-default option for the unit-norm CLIP/CLAP rows: at scale 1 their fc_l
  tokens are ~50x smaller than the attention output they are added to, so the 25 tokens collapse to one
  vector (cos 0.999) and both heads stay at the label prior for many epochs (docs/models/leap.md).
  The GloVe rows (mean norm 6.15) do not need it.
- L_avss target (`eiou`): "leap-code" (default, as the reference dataloader: computed per batch from the
  segment pseudo-labels, sigmoid(log(M/n)) + 0.01, avvp.pseudolabels.eiou), "paper" (set IoU) or
  "store" (the store's /pseudo/eiou as written by `avvp-pseudolabel`). Computing it from the batch
  makes LEAP trainable on an `avvp-import` store, which has pseudo-labels but no EIoU.
- Paper text says 20 epochs; the reference training script runs 30, which the preset follows.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from avvp.data.classes import LLP_CLASSES
from avvp.models.base import MODELS, Batch, InputDims, ModelOutput, ParsingModel, options_from_mapping
from avvp.models.blocks import HANEncoder, HANEncoderOptions, InputProjection, bce
from avvp.models.mmpyr import MMPyramidEncoder, MMPyramidEncoderOptions
from avvp.registry import Registry

# The reference's GloVe phrase per LLP class, in class order (keys of llp_label_glove_embeddings.pt)
LEAP_GLOVE_PHRASES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Fry food", "Basketball bounce", "Fire alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken rooster", "Violin fiddle", "Vacuum cleaner", "Baby laughter",
    "Accordion", "Lawn mower", "Motorcycle", "Helicopter", "Acoustic guitar", "Telephone bell ringing",
    "Baby cry infancy cry", "Blender", "Clapping",
)
TEXT_SOURCES = ("clip", "clap")  # label_source values read from Batch.text
GLOVE_PREFIX = "glove:"
PACKAGE_GLOVE = "glove"  # the GloVe rows LEAP released, shipped in avvp/models/data
PACKAGE_GLOVE_FILE = Path(__file__).resolve().parent / "data" / "llp_label_glove_6B_300d.npy"
EIOU_TARGETS = ("leap-code", "paper", "store")


# ------------------------------------------------------------------------------------------ labels
def _normalise_name(name: str) -> str:
    return name.lower().replace("_", " ").replace("(", "").replace(")", "").strip()


def _load_glove_pt(path: Path, num_classes: int) -> torch.Tensor:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, torch.Tensor):
        table = obj.float()
    elif isinstance(obj, Mapping):
        keys = list(obj.keys())
        if len(keys) != num_classes:
            raise ValueError(f"{path}: expected {num_classes} label vectors, found {len(keys)}")
        # positional match against the LEAP phrase or the LLP class name guards against a shuffled file
        if num_classes == len(LLP_CLASSES):
            for i, key in enumerate(keys):
                allowed = {_normalise_name(LEAP_GLOVE_PHRASES[i]), _normalise_name(LLP_CLASSES[i])}
                if _normalise_name(str(key)) not in allowed:
                    raise ValueError(
                        f"{path}: entry {i} is {key!r}, expected {LEAP_GLOVE_PHRASES[i]!r} or {LLP_CLASSES[i]!r}"
                        " (the file must list the classes in LLP order)"
                    )
        table = torch.stack([torch.as_tensor(obj[k]).float().reshape(-1) for k in keys])
    else:
        raise ValueError(f"{path}: expected a tensor (K,D) or a mapping class → vector, got {type(obj).__name__}")
    if table.ndim != 2 or table.shape[0] != num_classes:
        raise ValueError(f"{path}: expected a ({num_classes}, D) table, got {tuple(table.shape)}")
    return table


def _load_glove_txt(path: Path, num_classes: int) -> torch.Tensor:
    if num_classes != len(LEAP_GLOVE_PHRASES):
        raise ValueError(f"{path}: GloVe phrases are defined for the {len(LEAP_GLOVE_PHRASES)} LLP classes only")
    phrases = [p.lower().split() for p in LEAP_GLOVE_PHRASES]
    wanted = {w for words in phrases for w in words}
    vectors: dict[str, torch.Tensor] = {}
    # stream the file: a GloVe table has ~400k words, we keep the few dozen the phrases use
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            if word in wanted and word not in vectors:
                try:
                    vectors[word] = torch.tensor([float(x) for x in rest.split()])
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: not a word-vector line") from None
    missing = sorted(wanted - vectors.keys())
    if missing:
        raise ValueError(f"{path}: no vector for {', '.join(missing)}")
    sizes = {v.numel() for v in vectors.values()}
    if len(sizes) != 1:
        raise ValueError(f"{path}: word vectors of different sizes {sorted(sizes)}")
    # duplicates count as often as they appear ("Baby cry infancy cry" weighs "cry" twice)
    return torch.stack([torch.stack([vectors[w] for w in words]).mean(0) for words in phrases])


def _load_glove_npy(path: Path, num_classes: int) -> torch.Tensor:
    import numpy as np

    table = torch.from_numpy(np.load(path, allow_pickle=False).astype("float32"))
    if table.ndim != 2 or table.shape[0] != num_classes:
        raise ValueError(f"{path}: expected a ({num_classes}, D) table, got {tuple(table.shape)}")
    names = path.with_suffix(".classes.txt")
    if names.is_file() and num_classes == len(LEAP_GLOVE_PHRASES):
        listed = [line.strip() for line in names.read_text().splitlines() if line.strip()]
        if [_normalise_name(n) for n in listed] != [_normalise_name(p) for p in LEAP_GLOVE_PHRASES]:
            raise ValueError(f"{names}: the rows are not the LEAP phrases in LLP class order")
    return table


def load_glove_label_embeddings(path: str | Path, num_classes: int = len(LLP_CLASSES)) -> torch.Tensor:
    """(K, D) label embeddings from a torch .pt file (tensor or class → vector mapping), a .npy (K, D)
    array (with an optional <name>.classes.txt checked against the LEAP phrases) or a GloVe .txt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe label embeddings not found: {path}")
    loaders = {".pt": _load_glove_pt, ".pth": _load_glove_pt, ".npy": _load_glove_npy, ".txt": _load_glove_txt}
    if path.suffix not in loaders:
        raise ValueError(f"{path}: label embeddings must be .pt/.pth (torch), .npy (K,D) or .txt (word vectors)")
    return loaders[path.suffix](path, num_classes)


def package_glove_embeddings(num_classes: int = len(LLP_CLASSES)) -> torch.Tensor:
    """The (25, 300) GloVe rows LEAP released (avvp/models/data, see the README there)."""
    if not PACKAGE_GLOVE_FILE.is_file():
        raise FileNotFoundError(f"the package's GloVe label rows are missing ({PACKAGE_GLOVE_FILE}); "
                                "reinstall avvp (they ship as package data)")
    if num_classes != len(LLP_CLASSES):
        raise ValueError(f"label_source 'glove' holds the {len(LLP_CLASSES)} LLP classes, the store has "
                         f"{num_classes}; use label_source='glove:PATH' with a ({num_classes}, D) table")
    return _load_glove_npy(PACKAGE_GLOVE_FILE, num_classes)


class LabelEmbeddings(nn.Module):
    """Fixed label-text embeddings (from Batch.text or a GloVe file) projected to d by a trainable fc_l."""

    def __init__(self, source: str, dims: InputDims, hidden: int, scale: float = 1.0):
        super().__init__()
        self.source = source
        self.scale = float(scale)
        if source == PACKAGE_GLOVE or source.startswith(GLOVE_PREFIX):
            table = (package_glove_embeddings(dims.num_classes) if source == PACKAGE_GLOVE
                     else load_glove_label_embeddings(source[len(GLOVE_PREFIX):], dims.num_classes))
            self.register_buffer("table", table, persistent=True)
            in_dim = table.shape[1]
        elif source in TEXT_SOURCES:
            text_dims = dict(dims.text_dims)
            if source not in text_dims:
                raise ValueError(
                    f"label_source {source!r} needs /text/{source} in the store; it has: "
                    f"{', '.join(text_dims) or 'no text embeddings'} (a store made by avvp-import from the "
                    f"released features has none). Fix: use label_source=glove (LEAP's GloVe rows, shipped with "
                    f"avvp: --set model.options.label_source=glove), or write /text/{source} with avvp-extract"
                )
            self.table = None
            in_dim = text_dims[source]
        else:
            raise ValueError(f"label_source must be 'glove', 'glove:PATH' or one of {TEXT_SOURCES}, got {source!r}")
        self.fc_l = nn.Linear(in_dim, hidden)

    def forward(self, batch: Batch) -> torch.Tensor:
        """(K, d) projected label tokens (the same for every sample)."""
        if self.table is not None:
            table = self.table
        else:
            if self.source not in batch.text:
                raise ValueError(f"Batch.text has no {self.source!r} embeddings (has: {', '.join(batch.text) or 'none'})")
            table = batch.text[self.source].to(self.fc_l.weight.dtype)
        return self.fc_l(table * self.scale)


# ------------------------------------------------------------------------------------------ decoder
class LabelSegmentAttention(nn.Module):
    """Multi-head attention of K label queries over T segment keys/values that can also return the raw
    (pre-softmax) scaled scores — LEAP reads its segment predictions from those scores."""

    def __init__(self, hidden: int, heads: int, attn_dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
        self.heads = heads
        self.d_k = hidden // heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(attn_dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B,L,d) → (B,h,L,d_k)
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_k).transpose(1, 2)

    def raw_scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """(B,h,K,T) scaled dot products q·kᵀ/sqrt(d_k), before softmax."""
        q, k = self._split(self.q_proj(query)), self._split(self.k_proj(key))
        return q @ k.transpose(-2, -1) / math.sqrt(self.d_k)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        probs = self.attn_dropout(torch.softmax(self.raw_scores(query, key), dim=-1))
        out = probs @ self._split(self.v_proj(value))  # (B,h,K,d_k)
        return self.out_proj(out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1))


class LeapBlock(nn.Module):
    """One LEAP block: pre-LN residual cross-attention (label queries, segment keys/values, LN on the
    query only) then pre-LN residual FFN. Optionally returns the recomputed raw attention scores."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.norm_attn = nn.LayerNorm(hidden)
        self.attn = LabelSegmentAttention(hidden, heads, attn_dropout)
        self.drop_attn = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))
        self.drop_ffn = nn.Dropout(dropout)

    def forward(
        self, labels: torch.Tensor, segments: torch.Tensor, with_scores: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        labels = labels + self.drop_attn(self.attn(self.norm_attn(labels), segments, segments))
        # the reference recomputes the attention with the updated, un-normalised tokens (before the FFN)
        scores = self.attn.raw_scores(labels, segments) if with_scores else None
        labels = labels + self.drop_ffn(self.ffn(self.norm_ffn(labels)))
        return labels, scores


class LeapStack(nn.Module):
    """N LEAP blocks for one modality → (final label tokens (B,K,d), head-averaged raw scores (B,K,T))."""

    def __init__(self, blocks: int, hidden: int, heads: int, ffn: int, dropout: float, attn_dropout: float):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"LEAP needs at least one block, got {blocks}")
        self.blocks = nn.ModuleList(LeapBlock(hidden, heads, ffn, dropout, attn_dropout) for _ in range(blocks))

    def forward(self, labels: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = None
        for i, block in enumerate(self.blocks):
            labels, scores = block(labels, segments, with_scores=i == len(self.blocks) - 1)
        assert scores is not None
        return labels, scores.mean(dim=1)


# ------------------------------------------------------------------------------------------ losses
def avss_loss(audio_feat: torch.Tensor, visual_feat: torch.Tensor, eiou: torch.Tensor) -> torch.Tensor:
    """L_avss = MSE(ReLU(cos(a_i, v_j)), EIoU_ij) over all (B,10,10) audio/visual segment pairs."""
    sim = F.normalize(audio_feat, dim=-1) @ F.normalize(visual_feat, dim=-1).transpose(1, 2)
    return F.mse_loss(F.relu(sim), eiou.to(sim.dtype))


# ------------------------------------------------------------------------------------------ encoders
@dataclass(frozen=True)
class LeapOptions:
    """LEAP's switches (paper Tables 1-2) and sizes. Defaults = the reference run script."""

    encoder: str = "mmpyr"  # "mmpyr" (paper default) | "han"; see LEAP_ENCODERS
    label_source: str = "glove"  # "glove" (LEAP's released rows, packaged) | "glove:PATH" | "clip" | "clap"
    label_scale: float = 1.0  # non-default option: factor on the fixed table before fc_l (1 = as given)
    eiou: str = "leap-code"  # L_avss target: "leap-code" | "paper" (from the batch's pseudo-labels) | "store"
    blocks: int = 2  # N LEAP blocks per modality, Table 1: {1, 2, 4}
    avss: bool = True  # L_avss on/off (Table 2)
    avss_weight: float = 1.0  # λ
    segment_weight: float = 1.0  # weight of the two segment-level BCE terms (loss_temporal_wei)
    hidden: int = 512
    heads: int = 8
    ffn: int = 512
    dropout: float = 0.2
    attn_dropout: float = 0.1
    threshold: float = 0.5  # a/v video-level threshold of the OR fusion
    # encoder sizes (the decoder's hidden is the encoder's): HAN as the official repo, MM-Pyr as LEAP's
    han_heads: int = 1
    han_ff: int = 512
    han_dropout: float = 0.1
    mmpyr_levels: int = 4

    def __post_init__(self) -> None:
        if self.encoder not in LEAP_ENCODERS:
            raise ValueError(f"unknown LEAP encoder {self.encoder!r}; known: {', '.join(LEAP_ENCODERS.names())}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        if not self.label_scale > 0:
            raise ValueError(f"label_scale must be > 0, got {self.label_scale}")
        if self.eiou not in EIOU_TARGETS:
            raise ValueError(f"eiou must be one of {EIOU_TARGETS}, got {self.eiou!r}")


EncoderFactory = Callable[[LeapOptions], nn.Module]
LEAP_ENCODERS: Registry[EncoderFactory] = Registry("LEAP encoder")


@LEAP_ENCODERS.register("han")
def _han_encoder(opts: LeapOptions) -> nn.Module:
    return HANEncoder(HANEncoderOptions(hidden=opts.hidden, heads=opts.han_heads, ff=opts.han_ff, layers=1,
                                        dropout=opts.han_dropout))


@LEAP_ENCODERS.register("mmpyr")
def _mmpyr_encoder(opts: LeapOptions) -> nn.Module:
    return MMPyramidEncoder(MMPyramidEncoderOptions(hidden=opts.hidden, ffn=opts.ffn, levels=opts.mmpyr_levels,
                                             heads=opts.heads, dropout=opts.dropout, attn_dropout=opts.attn_dropout))


# ------------------------------------------------------------------------------------------ model
@MODELS.register("leap")
class LeapModel(ParsingModel):
    """Input projection → encoder (MM-Pyr / HAN) → two LEAP stacks → segment/video/global predictions."""

    Options = LeapOptions

    def __init__(self, options: LeapOptions | Mapping[str, Any], dims: InputDims):
        super().__init__()
        self.options = options = options_from_mapping(self.Options, options)
        self.dims = dims
        self.projection = InputProjection(dims, options.hidden)
        self.encoder = LEAP_ENCODERS.get(options.encoder)(options)
        self.labels = LabelEmbeddings(options.label_source, dims, options.hidden, options.label_scale)
        stack = dict(blocks=options.blocks, hidden=options.hidden, heads=options.heads, ffn=options.ffn,
                     dropout=options.dropout, attn_dropout=options.attn_dropout)
        self.audio_decoder = LeapStack(**stack)
        self.visual_decoder = LeapStack(**stack)
        self.fc_la = nn.Linear(options.hidden, 1)
        self.fc_lv = nn.Linear(options.hidden, 1)

    def forward(self, batch: Batch) -> ModelOutput:
        audio, visual = self.projection(batch.audio, batch.visual, batch.motion)
        audio, visual = self.encoder(audio, visual)
        tokens = self.labels(batch).unsqueeze(0).expand(audio.shape[0], -1, -1)  # (B,K,d)
        la, la_scores = self.audio_decoder(tokens, audio)
        lv, lv_scores = self.visual_decoder(tokens, visual)
        a_prob = torch.sigmoid(self.fc_la(la).squeeze(-1))
        v_prob = torch.sigmoid(self.fc_lv(lv).squeeze(-1))
        a_on = (a_prob >= self.options.threshold).float()
        v_on = (v_prob >= self.options.threshold).float()
        video = a_on + v_on - a_on * v_on  # logical OR; no gradient flows through it (as the reference)
        return ModelOutput(
            video=video,
            audio_seg=torch.sigmoid(la_scores.transpose(1, 2)),
            visual_seg=torch.sigmoid(lv_scores.transpose(1, 2)),
            audio_video=a_prob,
            visual_video=v_prob,
            extras={
                "audio_scores": la_scores.transpose(1, 2), "visual_scores": lv_scores.transpose(1, 2),
                "audio_encoded": audio, "visual_encoded": visual,
                "audio_label_tokens": la, "visual_label_tokens": lv,
            },
        )


    def eiou_target(self, batch: Batch) -> torch.Tensor:
        """(B,10,10) L_avss target per `options.eiou` (module docstring)."""
        if self.options.eiou == "store":
            if batch.eiou is None:
                raise ValueError("LEAP with eiou='store' needs /pseudo/eiou in the store (run avvp-pseudolabel), "
                                 "or use eiou='leap-code' (computed from the pseudo-labels, as the reference)")
            return batch.eiou
        from avvp.pseudolabels.eiou import compute_eiou

        pa = batch.pseudo_audio.detach().cpu().numpy()
        pv = batch.pseudo_visual.detach().cpu().numpy()
        return torch.from_numpy(compute_eiou(pa, pv, self.options.eiou)).to(batch.pseudo_audio.device)

    def loss(self, out: ModelOutput, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.pseudo_audio is None or batch.pseudo_visual is None:
            raise ValueError("LEAP trains on segment pseudo-labels: the store needs /pseudo/audio and /pseudo/visual")
        seg_a, seg_v = batch.pseudo_audio.float(), batch.pseudo_visual.float()
        # video-level uni-modal targets: the class is on in at least one segment
        pa, pv = seg_a.amax(dim=1), seg_v.amax(dim=1)
        assert out.audio_video is not None and out.visual_video is not None
        parts = {
            "bce_audio": bce(out.audio_video, pa),
            "bce_visual": bce(out.visual_video, pv),
            "bce_global": bce(out.video, batch.weak.float()),
            "bce_seg_audio": bce(out.audio_seg, seg_a),
            "bce_seg_visual": bce(out.visual_seg, seg_v),
        }
        total = parts["bce_audio"] + parts["bce_visual"] + parts["bce_global"]
        total = total + self.options.segment_weight * (parts["bce_seg_audio"] + parts["bce_seg_visual"])
        if self.options.avss:
            parts["avss"] = avss_loss(out.extras["audio_encoded"], out.extras["visual_encoded"], self.eiou_target(batch))
            total = total + self.options.avss_weight * parts["avss"]
        return total, {name: float(value.detach()) for name, value in parts.items()}


# ------------------------------------------------------------------------------------------ preset
