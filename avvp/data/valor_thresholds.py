"""VALOR's per-class zero-shot thresholds (Franklin905/VALOR), in LLP class order: data of the LLP setup.

They are the parameters of VALOR's pseudo-label rule (`avvp.pseudolabels.valor`, which holds the rule and
reads them from here) and the centre of the synthetic teachers' logits (`avvp.data.synthetic`). Both stages
read this one table, so the data stage never imports the pseudo-label stage.
"""
from __future__ import annotations

# on the raw scaled logits (logit_scale x cosine), reference-methods §2, verified
VALOR_CLIP_THRESHOLDS: tuple[int, ...] = (
    20, 15, 18, 14, 15, 18, 18, 15, 15, 15, 15, 18, 15, 15, 15, 15, 15, 15, 15, 16, 14, 15, 15, 15, 18,
)
VALOR_CLAP_THRESHOLDS: tuple[int, ...] = (
    0, 0, 1, 4, 6, -2, 4, 4, 2, 2, 2, 1, 2, 3, 0, 2, 2, 2, 0, 2, -1, 2, 3, 3, 0,
)
