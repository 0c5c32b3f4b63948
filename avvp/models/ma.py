"""MA — modality-aware label refinement (Wu & Yang CVPR'21, reference-methods §3; Yu-Wu/Modaily-Aware-...).

Three stages, each a HAN (d 512, 1 head) trained with Adam 3e-4, StepLR(10, 0.1), 12 epochs, batch 16,
keeping the LAST model:

1. base model: HAN loss + a contrastive term. Audio segment t (HAN output, L2-normed) is classified among
   the 10 pre-HAN visual segments of its own video (L2-normed, cosine / 0.2) with target t, by a
   label-smoothed CE (0.9 on the target, 0.1/9 on each other segment).
2. swap-and-evaluate (`refine_labels`): every train video gets a random other train video with disjoint
   labels; the frozen stage-1 model (eval mode) runs on (own audio, other visual) and (other audio, own
   visual). With per-class error rates of the thresholded a_prob / v_prob vs the weak label on the train
   set, normalised by their max (a_class, v_class), a labelled class c is removed from the VISUAL label
   when both probabilities under (other audio, own visual) are < 0.5·v_class[c], and from the AUDIO label
   when both probabilities under (own audio, other visual) are < 0.5·a_class[c]. The refined (N,K) uint8
   labels are written to the store as /labels/refined_audio and /labels/refined_visual.
3. retrain from scratch on refined labels (official step3_retrain/main_avvp.py `train()`:
   `loss = loss1 + loss2 + loss3 + loss4`):
       loss1 = BCE(a_prob, Pa)   Pa = refined audio label
       loss2 = BCE(v_prob, Pv)   Pv = 0.9y + 0.05 with the removed visual classes set to 0
       loss3 = BCE(global, target)   target = Pa when `global_target_from_audio` (the reference's
               aliasing: its dataloader does `pa = label` and then zeroes pa[c] in place, so audio
               removals also leave the global target), else y
       loss4 = the stage-1 contrastive term (same LabelSmoothingLoss(10, 0.1) on the same sims / 0.2),
               on unless `stage3_contrastive=False`.

`avvp-train --model ma` runs the three stages (out/stage1, out/stage3, labels written in between);
`--set model.options.stage=1|2|3` runs one (stage 2 reads out/stage1/last.pt).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from avvp.models.base import MODELS, Batch, InputDims, ModelOutput
from avvp.models.blocks import HANEncoder, HANEncoderOptions, bce
from avvp.models.han import MMIL_LOSSES, MMILParsingModel, visual_smoothing_target


def label_smoothed_ce(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """MA's LabelSmoothingLoss: confidence 1−s on the target, s/(C−1) on every other class, mean over rows."""
    n_cls = logits.shape[-1]
    logp = logits.log_softmax(dim=-1)
    dist = torch.full_like(logp, smoothing / (n_cls - 1))
    dist.scatter_(1, target.unsqueeze(1), 1.0 - smoothing)
    return (-dist * logp).sum(dim=-1).mean()


def ma_contrastive_loss(model: "MA", out: ModelOutput) -> torch.Tensor:
    """MA's audio→visual-segment contrastive term (stages 1 and 3): audio segment t after HAN (L2-normed)
    classified among the 10 pre-HAN visual segments of its video (L2-normed, cosine / temperature) with
    target t, by `label_smoothed_ce`."""
    audio = F.normalize(out.extras["audio_enc"], p=2, dim=-1)  # after HAN
    visual = F.normalize(out.extras["visual_in"], p=2, dim=-1)  # before HAN
    sims = (audio @ visual.transpose(1, 2) / model.options.temperature).reshape(-1, audio.shape[1])
    target = torch.arange(audio.shape[1], device=sims.device).repeat(audio.shape[0])
    return label_smoothed_ce(sims, target, model.options.contrastive_smoothing)


@MMIL_LOSSES.register("ma_base")
def ma_base_loss(model: "MA", out: ModelOutput, batch: Batch, epoch: int):
    y = batch.weak
    la = bce(out.audio_video, y)
    lv = bce(out.visual_video, visual_smoothing_target(y, model.visual_smoothing))
    lg = bce(out.video, y)
    lc = ma_contrastive_loss(model, out)
    return la + lv + lg + lc, {"audio": la.item(), "visual": lv.item(), "global": lg.item(), "contrastive": lc.item()}


@MMIL_LOSSES.register("ma_refined")
def ma_refined_loss(model: "MA", out: ModelOutput, batch: Batch, epoch: int):
    if batch.refined_audio is None or batch.refined_visual is None:
        raise ValueError("MA stage 3 needs /labels/refined_audio and /labels/refined_visual (run stage 2) "
                         "and --labels refined")
    y = batch.weak
    pa = batch.refined_audio.float()
    removed_visual = (y > 0) & (batch.refined_visual < 1)
    pv = visual_smoothing_target(y, model.visual_smoothing).masked_fill(removed_visual, 0.0)
    target = pa if model.options.global_target_from_audio else y
    la = bce(out.audio_video, pa)
    lv = bce(out.visual_video, pv)
    lg = bce(out.video, target)
    parts = {"audio": la.item(), "visual": lv.item(), "global": lg.item()}
    total = la + lv + lg
    if model.options.stage3_contrastive:  # loss4 of the official step 3
        lc = ma_contrastive_loss(model, out)
        parts["contrastive"] = lc.item()
        total = total + lc
    return total, parts


STAGE_LOSSES = {1: "ma_base", 3: "ma_refined"}


@dataclass(frozen=True)
class MAOptions:
    stage: int = 0  # 0: the whole pipeline (runner); a model is built for stage 1 or 3
    hidden: int = 512
    heads: int = 1
    ff: int = 512
    layers: int = 1
    dropout: float = 0.1
    visual_smoothing: float = 0.9
    temperature: float = 0.2
    contrastive_smoothing: float = 0.1
    global_target_from_audio: bool = True
    stage3_contrastive: bool = True  # official step 3 keeps the stage-1 contrastive term (loss4)
    refine_ratio: float = 0.5  # the 0.5 of "< 0.5·class error ratio"
    partner_seed: int = 0

    @property
    def loss(self) -> str:
        if self.stage not in STAGE_LOSSES:
            raise ValueError(f"an MA model is trained in stage 1 or 3, not stage {self.stage}")
        return STAGE_LOSSES[self.stage]


@MODELS.register("ma")
class MA(MMILParsingModel):
    Options = MAOptions

    def __init__(self, options: Any, dims: InputDims):
        super().__init__(options, dims)
        o = self.options
        self.encoder = HANEncoder(HANEncoderOptions(hidden=o.hidden, heads=o.heads, ff=o.ff, layers=o.layers,
                                                    dropout=o.dropout, pre_norm=False, sequential=False))


# ------------------------------------------------------------------------------------------ stage 2
def pick_partners(weak: np.ndarray, seed: int) -> np.ndarray:
    """For every row a random other row whose label set is disjoint from it (itself if none exists)."""
    rng = np.random.default_rng(seed)
    overlap = (weak.astype(np.int32) @ weak.T.astype(np.int32)) > 0
    partners = np.empty(len(weak), dtype=np.int64)
    for i in range(len(weak)):
        candidates = np.flatnonzero(~overlap[i])
        partners[i] = rng.choice(candidates) if len(candidates) else i
    return partners


@torch.no_grad()
def refine_labels(model: MA, batches: Sequence[Batch], weak: np.ndarray, partners: np.ndarray,
                  ratio: float = 0.5) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Stage 2 on in-memory train tensors. `batches` cover the train rows in order (batch.index = row).

    Returns (refined_audio, refined_visual, stats), each label array (N,K) uint8.
    """
    model.eval()
    n, k = weak.shape
    a = np.zeros((n, k), np.float32)
    v = np.zeros((n, k), np.float32)
    a_v = np.zeros_like(a); v_v = np.zeros_like(a); a_a = np.zeros_like(a); v_a = np.zeros_like(a)  # noqa: E702
    all_audio = torch.cat([b.audio for b in batches]); all_visual = torch.cat([b.visual for b in batches])  # noqa: E702
    all_motion = torch.cat([b.motion for b in batches]) if batches[0].motion is not None else None
    for b in batches:
        rows = b.index.cpu().numpy()
        other = torch.as_tensor(partners[rows])
        ov = all_visual[other]
        om = all_motion[other] if all_motion is not None else None
        out = model(b)
        own_audio_other_visual = model(Batch(b.audio, ov, om, b.weak, b.index))
        other_audio_own_visual = model(Batch(all_audio[other], b.visual, b.motion, b.weak, b.index))
        a[rows], v[rows] = out.audio_video.cpu().numpy(), out.visual_video.cpu().numpy()
        a_v[rows], v_v[rows] = own_audio_other_visual.audio_video.cpu().numpy(), own_audio_other_visual.visual_video.cpu().numpy()
        a_a[rows], v_a[rows] = other_audio_own_visual.audio_video.cpu().numpy(), other_audio_own_visual.visual_video.cpu().numpy()
    y = weak.astype(np.float32)
    v_err = 1.0 - ((v > 0.5) == (y > 0)).mean(0)
    a_err = 1.0 - ((a > 0.5) == (y > 0)).mean(0)
    # the reference divides by the max error; a class with zero error then never triggers a removal
    v_class = v_err / max(v_err.max(), 1e-12)
    a_class = a_err / max(a_err.max(), 1e-12)
    labelled = y > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        drop_v = labelled & (v_a * y / v_class < ratio) & (a_a * y / v_class < ratio)
        drop_a = labelled & (a_v * y / a_class < ratio) & (v_v * y / a_class < ratio)
    refined_v = (labelled & ~drop_v).astype(np.uint8)
    refined_a = (labelled & ~drop_a).astype(np.uint8)
    stats = {"labels": int(labelled.sum()), "removed_visual": int(drop_v.sum()), "removed_audio": int(drop_a.sum())}
    return refined_a, refined_v, stats


__all__ = ["MA", "MAOptions", "pick_partners", "refine_labels", "label_smoothed_ce", "ma_contrastive_loss"]
