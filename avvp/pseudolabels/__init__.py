"""Segment-level pseudo-labels (VALOR), the EIoU matrices LEAP trains on, threshold calibration on val,
and a quality report of the pseudo-labels against ground truth.

    valor.py      the VALOR rule, VALOR's per-class thresholds (single source of truth), threshold parsing,
                  computing /pseudo/{audio,visual} from /zeroshot/{clap,clip} of a store
    eiou.py       audio-visual EIoU matrices (N,10,10): the paper's set IoU and LEAP's code variant
    calibrate.py  per-class threshold search on val labels only (test GT is read after thresholds are fixed)
    report.py     official segment/event F of the pseudo-labels used as predictions, per-class table, PNG
"""
from avvp.pseudolabels.eiou import EIOU_DEFINITIONS, compute_eiou, eiou_leap_code, eiou_paper
from avvp.pseudolabels.valor import (
    TEACHERS,
    VALOR_CLAP_THRESHOLDS,
    VALOR_CLIP_THRESHOLDS,
    Teacher,
    ThresholdSet,
    parse_thresholds,
    valor_rule,
)

__all__ = [
    "EIOU_DEFINITIONS", "compute_eiou", "eiou_leap_code", "eiou_paper",
    "TEACHERS", "Teacher", "ThresholdSet", "VALOR_CLAP_THRESHOLDS", "VALOR_CLIP_THRESHOLDS",
    "parse_thresholds", "valor_rule",
]
