"""Per-class threshold calibration of the VALOR rule on the validation labels only.

The objective of class c is the segment-level F of the pseudo-labels pooled over the val videos:
TP, FP, FN summed over every (video, segment) of class c, F_c = 2TP / (2TP + FP + FN) (1 when class c has
neither ground truth nor prediction). It is the per-class F of the official segment metric with the counts
pooled over videos, which makes the 25 searches independent; the official, video-averaged metric is
reported before and after calibration (see `report.py`), and can move differently.

Search (exact, vectorised per class). Only entries whose video carries c in its weak label can be switched
on by the rule, so the candidates are the distinct val logits u_1 > u_2 > ... > u_m of those entries: a
threshold at the midpoint (u_k + u_{k+1}) / 2 turns on exactly the entries >= u_k, plus max + 1 (nothing)
and min - 1 (everything). One sort and a cumulative sum give TP/FP/FN of every candidate at once. Ties in F
go to the candidate closest to the starting threshold (the smallest change from VALOR), then the higher one.
The midpoint of two float32 values is exact in float64, so the rule reproduces the searched F exactly; this
is checked after the search.

Leakage. Ground truth comes from a `GroundTruthSource` that is asked for one split at a time. `calibrate`
asks it for "val" only; thresholds are returned frozen, and only then may a caller load "test" to report
the gain (the CLI does so, and a test makes the source raise on "test" during the search).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from avvp.data.groundtruth import (
    GroundTruthError,
    annotated_ground_truth,
    has_stored_ground_truth,
    split_video_ids,
    stored_ground_truth,
)
from avvp.data.store import Store
from avvp.pseudolabels.valor import (
    MODALITIES,
    TEACHERS,
    PseudoLabelError,
    ThresholdSet,
    read_teacher_inputs,
    valor_rule,
)


# calibrating on any other split than val would tune the thresholds on the labels they are reported on
CALIBRATION_SPLITS = ("val",)


# ------------------------------------------------------------------------------------------ ground truth
@dataclass(frozen=True)
class SplitGroundTruth:
    """Segment ground truth (n, 10, K) of the videos of one split, in the store's class order."""

    split: str
    ids: np.ndarray
    audio: np.ndarray
    visual: np.ndarray
    source: str

    def modality(self, name: str) -> np.ndarray:
        return {"audio": self.audio, "visual": self.visual}[name]


class GroundTruthSource(Protocol):
    description: str

    def load(self, split: str) -> SplitGroundTruth: ...


def _split_ids(store: Store, split: str) -> np.ndarray:
    try:
        return split_video_ids(store, split)
    except GroundTruthError as err:
        raise PseudoLabelError(str(err)) from None


@dataclass(frozen=True)
class StoreGroundTruth:
    """Ground truth from the store's /gt/{audio,visual} (synthetic data, or a store the user filled)."""

    store_path: Path

    @property
    def description(self) -> str:
        return f"{self.store_path}:/gt"

    def load(self, split: str) -> SplitGroundTruth:
        with Store(self.store_path) as store:
            ids = _split_ids(store, split)
            try:
                gt = stored_ground_truth(store, ids)
            except GroundTruthError as err:
                raise PseudoLabelError(f"{split}: {err}") from None
        return SplitGroundTruth(split, ids, gt.audio, gt.visual, self.description)


@dataclass(frozen=True)
class LLPGroundTruth:
    """Ground truth from the official LLP eval CSVs (avvp.data.llp), matched to the store's video ids.

    Store ids are LLP filenames (`<ytid>_<start>_<end>`); an 11-char YouTube id is mapped to its filename."""

    store_path: Path
    version: str = "2024"

    @property
    def description(self) -> str:
        return f"LLP eval annotations {self.version}"

    def load(self, split: str) -> SplitGroundTruth:
        with Store(self.store_path) as store:
            ids = _split_ids(store, split)
            classes = store.classes
        try:
            gt = annotated_ground_truth(ids, self.version, classes)
        except GroundTruthError as err:
            raise PseudoLabelError(f"{split} videos of {self.store_path}: {err}") from None
        return SplitGroundTruth(split, ids, gt.audio, gt.visual, self.description)


def ground_truth_source(store_path: str | Path, annotations: str = "2024") -> GroundTruthSource:
    """The store's /gt arrays when it has them, else the LLP eval CSVs of version `annotations`."""
    with Store(store_path) as store:
        has_gt = has_stored_ground_truth(store)
    return StoreGroundTruth(Path(store_path)) if has_gt else LLPGroundTruth(Path(store_path), annotations)


# ------------------------------------------------------------------------------------------------ search
def pooled_class_f(pred: np.ndarray, gt: np.ndarray, empty: float = 1.0) -> np.ndarray:
    """Per-class F over all (video, segment) entries of (n, 10, K) binary arrays → (K,).

    A class with neither GT nor prediction gets `empty`: 1.0 as an objective (nothing to find, nothing
    found), NaN for tables (no evidence either way)."""
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    tp = (pred & gt).sum(axis=(0, 1)).astype(np.float64)
    fp = (pred & ~gt).sum(axis=(0, 1))
    fn = (~pred & gt).sum(axis=(0, 1))
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.full_like(tp, empty), where=den > 0)


@dataclass(frozen=True)
class CalibrationConfig:
    # classes carried by fewer val videos (in their weak label) keep their starting threshold: too little
    # evidence to move it
    min_weak_videos: int = 1


@dataclass(frozen=True)
class ClassSearch:
    threshold: float
    f_before: float
    f_after: float
    candidates: int
    weak_videos: int  # calibration videos carrying the class in their weak label (0: nothing to learn from)


def search_class_threshold(
    logits: np.ndarray, weak: np.ndarray, gt: np.ndarray, start: float, min_weak_videos: int = 1
) -> ClassSearch:
    """Best threshold of one class: logits (n,10), weak (n,), gt (n,10) → the pooled-F-maximising threshold."""
    on = weak.astype(bool)
    x = logits[on].astype(np.float64).ravel()
    y = gt[on].astype(np.int64).ravel()
    positives = int(gt.astype(bool).sum())  # GT outside the weak label can never be found: constant FN
    tp0 = int(y[x > start].sum())
    pred0 = int((x > start).sum())
    den0 = pred0 + positives  # 2TP + FP + FN = (TP+FP) + (TP+FN)
    f_before = 2 * tp0 / den0 if den0 else 1.0
    if int(on.sum()) < max(min_weak_videos, 1) or not len(x):
        return ClassSearch(float(start), f_before, f_before, 0, int(on.sum()))
    order = np.argsort(-x, kind="stable")
    xs, ys = x[order], y[order]
    # end index of each group of equal values (descending): predicting ">= u_k" switches on xs[:end_k]
    last_of_group = np.flatnonzero(np.r_[xs[1:] != xs[:-1], True])
    values = xs[last_of_group]
    count = last_of_group + 1
    tp = np.cumsum(ys)[last_of_group]
    # candidates: nothing on (max + 1), then after each group the midpoint to the next value, last = min - 1
    tp = np.r_[0, tp]
    count = np.r_[0, count]
    thresholds = np.r_[values[0] + 1.0, (values[:-1] + values[1:]) / 2.0, values[-1] - 1.0]
    den = count + positives  # 2TP + FP + FN = (TP+FP) + (TP+FN)
    f = np.divide(2.0 * tp, den, out=np.ones(len(tp)), where=den > 0)
    best = f.max()
    tied = np.flatnonzero(f == best)
    distance = np.abs(thresholds[tied] - start)
    choice = tied[np.lexsort((-thresholds[tied], distance))[0]]
    return ClassSearch(float(thresholds[choice]), float(f_before), float(best), int(len(thresholds)), int(on.sum()))


def search_thresholds(
    logits: np.ndarray, weak: np.ndarray, gt: np.ndarray, start: np.ndarray, config: CalibrationConfig = CalibrationConfig()
) -> list[ClassSearch]:
    """Per-class search over (n,10,K) logits, (n,K) weak labels and (n,10,K) GT of the val videos."""
    searches = [
        search_class_threshold(logits[..., c], weak[:, c], gt[..., c], float(start[c]), config.min_weak_videos)
        for c in range(logits.shape[-1])
    ]
    # the rule with the found thresholds must reproduce the searched F exactly (guards the midpoint logic)
    found = np.array([s.threshold for s in searches])
    check = pooled_class_f(valor_rule(logits, weak, found), gt)
    expected = np.array([s.f_after for s in searches])
    if not np.allclose(check, expected, rtol=0, atol=1e-12):
        bad = np.flatnonzero(~np.isclose(check, expected, rtol=0, atol=1e-12)).tolist()
        raise AssertionError(f"threshold search inconsistent with the rule for classes {bad}")
    return searches


@dataclass(frozen=True)
class Calibration:
    """Calibrated thresholds of one teacher plus the val objective before/after, per class."""

    modality: str
    start: ThresholdSet
    thresholds: ThresholdSet  # calibrated=True
    searches: tuple[ClassSearch, ...]
    val_videos: int

    @property
    def val_f_before(self) -> np.ndarray:
        return np.array([s.f_before for s in self.searches])

    @property
    def val_f_after(self) -> np.ndarray:
        return np.array([s.f_after for s in self.searches])

    @property
    def evidence(self) -> np.ndarray:
        """(K,) bool: classes some calibration video carries in its weak label (the others cannot move)."""
        return np.array([s.weak_videos > 0 for s in self.searches])


def calibrate(
    store_path: str | Path,
    gt_source: GroundTruthSource,
    start: dict[str, ThresholdSet],
    config: CalibrationConfig = CalibrationConfig(),
    modalities: Sequence[str] = MODALITIES,
    split: str = "val",
) -> dict[str, Calibration]:
    """Calibrate the thresholds of each modality's teacher on `split` (val). Reads only that split's GT."""
    if split == "test":
        raise PseudoLabelError("thresholds are never calibrated on the test split")
    val = gt_source.load(split)
    out: dict[str, Calibration] = {}
    with Store(store_path) as store:
        rows = store.index(val.ids)
        classes = tuple(store.classes)
        for modality in modalities:
            teacher = TEACHERS.get(modality)
            logits, weak, usable, _ = read_teacher_inputs(store, teacher)
            keep = rows[usable[rows]]  # videos the rule labels as zeros are not evidence about thresholds
            gt = val.modality(modality)[usable[rows]]
            initial = start[modality].for_classes(classes)
            searches = search_thresholds(logits[keep], weak[keep], gt, initial.array(), config)
            calibrated = ThresholdSet(
                tuple(s.threshold for s in searches), classes, f"calibrated on {split} ({gt_source.description})", True
            )
            out[modality] = Calibration(modality, initial, calibrated, tuple(searches), len(keep))
    return out
