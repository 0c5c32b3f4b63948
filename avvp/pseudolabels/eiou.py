"""Audio-visual EIoU matrices: LEAP's target for its audio-visual semantic similarity loss (L_avss).

For each video, entry (i, j) compares the class set of audio segment i with the class set of visual
segment j, from the segment pseudo-labels Pa, Pv (10, K) in {0,1}. Two definitions exist:

"paper" (LEAP paper, §3.3): r_ij = |A_i ∩ V_j| / |A_i ∪ V_j|, the IoU of the two event sets. The paper's
    worked example: A_1 = {c1,c2,c3}, V_1 = {c1} → 1/3; V_2 = {c1,c2} → 2/3. When both sets are empty
    the IoU is 0/0; we define it as 0 (nothing shared, so no pull between the two features), which is
    also what the code variant gives (up to its eps) for that case.

"leap-code" (jasongief/LEAP, what the released model was trained with): M = Pa·Pvᵀ counts the shared
    classes; n = max(max_t Σ_c Pa[t,c], max_t Σ_c Pv[t,c]) is the per-video maximum number of classes in
    any one segment of either modality (1e-8 when 0); r = sigmoid(log(M/n)) + eps = (M/n)/(1 + M/n) + eps
    with eps = 0.01 (so 0.01 where M = 0 and at most 0.51). We use the closed form, which equals the
    sigmoid-of-log expression (sigmoid(-inf) = 0) without the log of 0.

Both are vectorised over videos with einsum (no per-pair loop), computed in float64 and stored float32.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from avvp.registry import Registry

LEAP_EPS = 0.01  # `--eps` default of jasongief/LEAP
LEAP_EMPTY_NORM = 1e-8  # n when a video has no pseudo-label at all

EiouFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
EIOU_DEFINITIONS: Registry[EiouFn] = Registry("EIoU definition")


def _check(pa: np.ndarray, pv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pa = np.asarray(pa, dtype=np.float64)
    pv = np.asarray(pv, dtype=np.float64)
    if pa.shape != pv.shape or pa.ndim < 2:
        raise ValueError(f"audio and visual labels must have the same shape (..., T, K); got {pa.shape}, {pv.shape}")
    return pa, pv


@EIOU_DEFINITIONS.register("paper")
def eiou_paper(pa: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """|A_i ∩ V_j| / |A_i ∪ V_j| for (..., T, K) binary labels → (..., T, T) float32; 0 where the union is empty."""
    pa, pv = _check(pa, pv)
    inter = np.einsum("...ik,...jk->...ij", pa, pv)
    union = pa.sum(-1)[..., :, None] + pv.sum(-1)[..., None, :] - inter
    out = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out.astype(np.float32)


@EIOU_DEFINITIONS.register("leap-code")
def eiou_leap_code(pa: np.ndarray, pv: np.ndarray, eps: float = LEAP_EPS) -> np.ndarray:
    """LEAP's code target (M/n)/(1+M/n) + eps for (..., T, K) binary labels → (..., T, T) float32."""
    pa, pv = _check(pa, pv)
    shared = np.einsum("...ik,...jk->...ij", pa, pv)
    n = np.maximum(pa.sum(-1).max(-1), pv.sum(-1).max(-1))
    n = np.where(n == 0, LEAP_EMPTY_NORM, n)[..., None, None]
    ratio = shared / n
    return (ratio / (1.0 + ratio) + eps).astype(np.float32)


def compute_eiou(pa: np.ndarray, pv: np.ndarray, definition: str = "paper") -> np.ndarray:
    """EIoU matrices under a registered definition ("paper" | "leap-code")."""
    return EIOU_DEFINITIONS.get(definition)(pa, pv)


EIOU_DESCRIPTIONS = {
    "paper": "|A_i & V_j| / |A_i | V_j| over the class sets of audio segment i and visual segment j; 0 if the union is empty",
    "leap-code": "M=Pa.Pv^T, n=max over both modalities of the max per-segment class count (1e-8 if 0), "
                 "r=(M/n)/(1+M/n)+0.01",
}
