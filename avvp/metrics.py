"""The official LLP (AVVP) evaluation protocol: segment-level and event-level F-scores.

Reimplements, vectorised over videos with numpy, the metric of the official AVVP code (functions
`segment_level` / `event_level` and the `eval` driver); the step-by-step protocol is in docs/metrics.md.
All arrays are segment-major like predictions and the store: ground truth and predictions (N, 10, K),
video-level probabilities (N, K).

1. Binarise: `SO = (segment_prob >= 0.5) AND gate`, the gate being a video-level prediction broadcast over
   the 10 segments (`GATES`: 'global' = fused video prob for both modalities, the standard protocol).
2. Per video and class: segment level counts TP/FN/FP over the 10 segments; event level turns each
   10-vector into events (maximal runs of 1s) and a predicted event is a TP if ANY ground-truth event of
   the class has |P∩G| >= 0.5·|P∪G|, an unmatched GT event is an FN.
3. F_c = 2TP / (2TP + FN + FP); a class with no GT and no prediction is skipped; the video score is the
   mean over non-skipped classes in class order (1.0 when every class is skipped). Audio-visual uses
   GT_a·GT_v against SO_a·SO_v; Event@AV pools the audio and visual counts per class.
4. Over videos: plain mean of the per-video scores × 100; Type@AV = (AV + A + V)/3; avg = mean of the
   ten numbers (MM-CSE's "Avg").

Floating point follows the reference order of operations (sequential class sum / count, numpy mean over
videos, `(100·av + 100·a + 100·v)/3`), so results equal the reference bit for bit, not only to 1e-12.

On top of the core (`evaluate`, `evaluate_binary`, `score_videos`, `summarize`) sit the extras
(`per_class_table`, `overlapping_videos` / `overlap_split` for LEAP's Table 3) and the ground-truth
sources (`llp_ground_truth` from the bundled CSVs, `store_ground_truth` for synthetic stores) used by
`evaluate_predictions` / `evaluate_arrays` and the `avvp-eval` command.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from avvp.data import llp
from avvp.data.classes import LLP_CLASSES, NUM_SEGMENTS
from avvp.data.groundtruth import GroundTruth, annotated_ground_truth, split_video_ids, stored_ground_truth
from avvp.data.predictions import MissingVideosError, Predictions, read_predictions
from avvp.data.store import Store
from avvp.registry import Registry

THRESHOLD = 0.5  # official: `>= 0.5` for segment probabilities and for the video-level gate
EVENT_IOU = 0.5  # official: a predicted event matches a GT event when |P∩G| >= 0.5·|P∪G|
LEVELS = ("segment", "event")
# per-level scores, in the order of the reference tables; "event" is Event@AV (pooled a+v counts)
METRICS = ("audio", "visual", "audio_visual", "type", "event")
# the four per-video quantities the protocol averages (type is derived from the first three)
VIDEO_METRICS = ("audio", "visual", "audio_visual", "event")


# ------------------------------------------------------------------------------------------------ gates
@dataclass(frozen=True)
class Gate:
    """Which video-level probability (if any) gates the audio and the visual segment predictions.

    A head is one of 'video' (fused MMIL `global_prob`), 'audio_video' (`a_prob`), 'visual_video'
    (`v_prob`) or None (no gating).
    """

    name: str
    audio_head: str | None
    visual_head: str | None
    description: str


GATES: Registry[Gate] = Registry("gate")
for _gate in (
    Gate("global", "video", "video", "standard protocol (official AVVP, VALOR, LEAP, ...): both by the fused video prob"),
    Gate("modality", "audio_video", "visual_video", "MA (Wu & Yang CVPR'21): audio by a_prob, visual by v_prob"),
    Gate("mmcse", "video", "visual_video", "MM-CSE (AAAI'25): audio by the fused video prob, visual by v_prob"),
    Gate("none", None, None, "no video-level gating: segment probabilities alone"),
):
    GATES.register(_gate.name)(_gate)


def _as_bool_gate(head: str | None, probs: Mapping[str, np.ndarray | None], gate: Gate, threshold: float, shape):
    if head is None:
        return np.ones(shape, dtype=bool)
    arr = probs[head]
    if arr is None:
        raise ValueError(
            f"gate {gate.name!r} ({gate.description}) needs the {head!r} probabilities, which were not given"
        )
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise ValueError(f"{head}: expected shape {shape} (N, K), got {arr.shape}")
    return arr >= threshold


def binarize(
    pred_audio: np.ndarray,
    pred_visual: np.ndarray,
    pred_video: np.ndarray | None = None,
    *,
    audio_video: np.ndarray | None = None,
    visual_video: np.ndarray | None = None,
    gate: str = "global",
    threshold: float = THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Binary segment predictions (SO_a, SO_v), each (N, 10, K) bool: `(prob >= threshold) & gate`."""
    spec = GATES.get(gate)
    pred_audio, pred_visual = np.asarray(pred_audio), np.asarray(pred_visual)
    if pred_audio.ndim != 3 or pred_audio.shape[1] != NUM_SEGMENTS or pred_audio.shape != pred_visual.shape:
        raise ValueError(
            f"segment predictions must both be (N, {NUM_SEGMENTS}, K); got audio {pred_audio.shape}, "
            f"visual {pred_visual.shape}"
        )
    n, _, k = pred_audio.shape
    probs = {"video": pred_video, "audio_video": audio_video, "visual_video": visual_video}
    gate_a = _as_bool_gate(spec.audio_head, probs, spec, threshold, (n, k))
    gate_v = _as_bool_gate(spec.visual_head, probs, spec, threshold, (n, k))
    so_a = (pred_audio >= threshold) & gate_a[:, None, :]
    so_v = (pred_visual >= threshold) & gate_v[:, None, :]
    return so_a, so_v


# ---------------------------------------------------------------------------------------------- counts
@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Counts:
    """Per video and class true positives, false positives and false negatives, each (N, K) int64."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def segment_counts(pred: np.ndarray, gt: np.ndarray) -> Counts:
    """Segment-level counts over the 10 segments of each (video, class); inputs (N, 10, K) binary."""
    p, g = pred.astype(bool), gt.astype(bool)
    return Counts(
        tp=(p & g).sum(axis=1, dtype=np.int64),
        fp=(p & ~g).sum(axis=1, dtype=np.int64),
        fn=(~p & g).sum(axis=1, dtype=np.int64),
    )


def _runs(code: int) -> tuple[tuple[int, int], ...]:
    """Events of a 10-bit sequence (bit t = segment t): maximal runs of 1s as [start, end) pairs."""
    runs, t = [], 0
    while t < NUM_SEGMENTS:
        if code >> t & 1:
            start = t
            while t < NUM_SEGMENTS and code >> t & 1:
                t += 1
            runs.append((start, t))
        else:
            t += 1
    return tuple(runs)


def _matches(a: tuple[int, int], b: tuple[int, int]) -> bool:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    # |P∩G| >= 0.5·|P∪G| in integers (the reference compares exact small floats, same result)
    return 2 * inter >= union


@lru_cache(maxsize=1 << 16)
def _event_counts_of_pair(pred_code: int, gt_code: int) -> tuple[int, int, int]:
    pred_events, gt_events = _runs(pred_code), _runs(gt_code)
    # a predicted event is a TP if it matches ANY GT event (no one-to-one assignment, as the reference)
    tp = sum(1 for p in pred_events if any(_matches(p, g) for g in gt_events))
    fn = sum(1 for g in gt_events if not any(_matches(p, g) for p in pred_events))
    return tp, len(pred_events) - tp, fn


_BIT_WEIGHTS = (1 << np.arange(NUM_SEGMENTS, dtype=np.int64))


def event_counts(pred: np.ndarray, gt: np.ndarray) -> Counts:
    """Event-level counts per (video, class); inputs (N, 10, K) binary.

    Each 10-segment sequence is a 10-bit code, so the matching only has to run once per distinct
    (prediction, ground truth) pair of codes; the per-pair counts are exact integer computations.
    """
    pred_code = np.tensordot(pred.astype(bool), _BIT_WEIGHTS, axes=([1], [0]))  # (N, K)
    gt_code = np.tensordot(gt.astype(bool), _BIT_WEIGHTS, axes=([1], [0]))
    pair = pred_code * (1 << NUM_SEGMENTS) + gt_code
    unique, inverse = np.unique(pair, return_inverse=True)
    table = np.array(
        [_event_counts_of_pair(int(u) >> NUM_SEGMENTS, int(u) & ((1 << NUM_SEGMENTS) - 1)) for u in unique],
        dtype=np.int64,
    ).reshape(-1, 3)
    per = table[inverse.reshape(-1)].reshape(pair.shape + (3,))
    return Counts(tp=per[..., 0], fp=per[..., 1], fn=per[..., 2])


# -------------------------------------------------------------------------------------------- F-scores
def class_f(counts: Counts) -> np.ndarray:
    """Per (video, class) F = 2TP/(2TP+FN+FP), NaN where the class is skipped (no GT and no prediction)."""
    denom = 2 * counts.tp + counts.fn + counts.fp
    out = np.full(denom.shape, np.nan)
    valid = denom > 0  # denom == 0 <=> TP = FP = FN = 0 <=> the reference's skip rule
    out[valid] = 2 * counts.tp[valid] / denom[valid]
    return out


def video_f(f: np.ndarray) -> np.ndarray:
    """Per-video score: mean of the non-skipped class F in class order; 1.0 when all are skipped."""
    valid = ~np.isnan(f)
    total = np.zeros(f.shape[0])
    # sequential sum in class order, like the reference's `sum(F)/len(F)` (adding 0.0 is exact)
    for c in range(f.shape[1]):
        total = total + np.where(valid[:, c], f[:, c], 0.0)
    count = valid.sum(axis=1)
    out = np.ones(f.shape[0])
    has = count > 0
    out[has] = total[has] / count[has]
    return out


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class LevelVideoScores:
    """One level's per-video results: `video[m]` (N,) and `per_class[m]` (N, K), NaN = skipped."""

    video: Mapping[str, np.ndarray]
    per_class: Mapping[str, np.ndarray]

    def subset(self, rows: np.ndarray) -> "LevelVideoScores":
        return LevelVideoScores(
            video={m: v[rows] for m, v in self.video.items()},
            per_class={m: v[rows] for m, v in self.per_class.items()},
        )


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class VideoScores:
    """Per-video scores of both levels (keys of VIDEO_METRICS), before averaging over videos."""

    segment: LevelVideoScores
    event: LevelVideoScores
    ids: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.segment.video["audio"])

    def subset(self, rows: np.ndarray) -> "VideoScores":
        """Scores of a subset of videos (boolean mask or indices)."""
        rows = np.asarray(rows)
        ids = None if self.ids is None else tuple(np.asarray(self.ids, dtype=object)[rows])
        return VideoScores(self.segment.subset(rows), self.event.subset(rows), ids)


def _level_scores(a: Counts, v: Counts, av: Counts) -> LevelVideoScores:
    per_class = {"audio": class_f(a), "visual": class_f(v), "audio_visual": class_f(av), "event": class_f(a + v)}
    return LevelVideoScores(video={m: video_f(f) for m, f in per_class.items()}, per_class=per_class)


def _check_binary(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be binary (0/1)")
    return arr.astype(bool)


def score_videos(
    gt_audio: np.ndarray,
    gt_visual: np.ndarray,
    so_audio: np.ndarray,
    so_visual: np.ndarray,
    ids: Sequence[str] | None = None,
) -> VideoScores:
    """Per-video segment- and event-level scores of binary predictions; all inputs (N, 10, K) binary."""
    shapes = {a.shape for a in map(np.asarray, (gt_audio, gt_visual, so_audio, so_visual))}
    if len(shapes) != 1:
        raise ValueError(f"ground truth and predictions must have one shape (N, 10, K); got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3 or shape[1] != NUM_SEGMENTS:
        raise ValueError(f"expected arrays of shape (N, {NUM_SEGMENTS}, K), got {shape}")
    if shape[0] == 0:
        raise ValueError("no videos to evaluate")
    if ids is not None and len(ids) != shape[0]:
        raise ValueError(f"{len(ids)} ids for {shape[0]} videos")
    gt_a, gt_v = _check_binary("gt_audio", gt_audio), _check_binary("gt_visual", gt_visual)
    so_a, so_v = _check_binary("so_audio", so_audio), _check_binary("so_visual", so_visual)
    gt_av, so_av = gt_a & gt_v, so_a & so_v  # audio-visual event = class present in both, same segment
    segment = _level_scores(segment_counts(so_a, gt_a), segment_counts(so_v, gt_v), segment_counts(so_av, gt_av))
    event = _level_scores(event_counts(so_a, gt_a), event_counts(so_v, gt_v), event_counts(so_av, gt_av))
    return VideoScores(segment, event, None if ids is None else tuple(ids))


# ------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class LevelResult:
    """The five numbers of one level, in percent."""

    audio: float
    visual: float
    audio_visual: float
    type: float  # Type@AV = mean of audio, visual, audio_visual
    event: float  # Event@AV = mean over videos of the pooled a+v per-video score

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MetricResult:
    """Segment- and event-level results in percent and `avg`, the mean of the ten numbers."""

    segment: LevelResult
    event: LevelResult
    avg: float
    num_videos: int

    def as_dict(self) -> dict:
        return {"segment": self.segment.as_dict(), "event": self.event.as_dict(), "avg": self.avg}


# the five numbers of a level, as every results table shows them: (LevelResult field, column heading)
RESULT_COLUMNS = (("audio", "audio"), ("visual", "visual"), ("audio_visual", "audio-visual"), ("type", "Type@AV"),
                  ("event", "Event@AV"))


def format_results(results: MetricResult | Mapping[str, MetricResult], title: str = "", *,
                   levels: Sequence[str] = LEVELS) -> str:
    """The results table of avvp-eval, the trainer and the demo: columns A, V, AV, Type@AV, Event@AV; a row
    per result and level ("val segment"; just "segment" for a single unnamed result; just the name when
    one level is shown, which the heading then names), then, with both levels, each result's average of
    the ten numbers and its number of videos."""
    named = {"": results} if isinstance(results, MetricResult) else dict(results)
    one_level = len(levels) == 1

    def row_name(name: str, level: str) -> str:
        return name if one_level else f"{name} {level}".strip()

    corner = f"{levels[0]}-level F" if one_level else ""
    width = max(10, len(corner) + 1, *(len(row_name(n, lv)) + 1 for n in named for lv in levels))
    lines = [title] if title else []
    lines.append(f"{corner:{width}s}" + "".join(f"{heading:>14s}" for _, heading in RESULT_COLUMNS))
    for name, result in named.items():
        for level in levels:
            numbers = getattr(result, level)
            lines.append(f"{row_name(name, level):{width}s}"
                         + "".join(f"{getattr(numbers, key):14.2f}" for key, _ in RESULT_COLUMNS))
    if not one_level:
        for name, result in named.items():
            lines.append(f"{name + ': ' if name else ''}avg of the ten numbers: {result.avg:.2f}   "
                         f"({result.num_videos} videos)")
    return "\n".join(lines)


def _summarize_level(level: LevelVideoScores) -> LevelResult:
    a = 100 * np.mean(level.video["audio"])
    v = 100 * np.mean(level.video["visual"])
    av = 100 * np.mean(level.video["audio_visual"])
    # the reference driver's order of operations: (100·mean_av + 100·mean_a + 100·mean_v) / 3
    type_ = (av + a + v) / 3.0
    event = 100 * np.mean(level.video["event"])
    return LevelResult(float(a), float(v), float(av), float(type_), float(event))


def summarize(scores: VideoScores) -> MetricResult:
    """Average per-video scores over the videos (×100) into the ten numbers and their mean."""
    if len(scores) == 0:
        raise ValueError("no videos to summarize")
    seg, ev = _summarize_level(scores.segment), _summarize_level(scores.event)
    ten = [getattr(seg, m) for m in METRICS] + [getattr(ev, m) for m in METRICS]
    total = 0.0
    for x in ten:  # left to right, as MM-CSE's Avg
        total = total + x
    return MetricResult(seg, ev, float(total / 10.0), len(scores))


def evaluate_binary(gt_audio, gt_visual, so_audio, so_visual) -> MetricResult:
    """The ten numbers for binary segment predictions (e.g. pseudo-labels) against ground truth."""
    return summarize(score_videos(gt_audio, gt_visual, so_audio, so_visual))


def evaluate(
    gt_audio: np.ndarray,
    gt_visual: np.ndarray,
    pred_audio: np.ndarray,
    pred_visual: np.ndarray,
    pred_video: np.ndarray | None = None,
    *,
    audio_video: np.ndarray | None = None,
    visual_video: np.ndarray | None = None,
    gate: str = "global",
    threshold: float = THRESHOLD,
) -> MetricResult:
    """The official metric for probabilities: GT (N,10,K) binary, segment probs (N,10,K), video probs (N,K)."""
    so_a, so_v = binarize(
        pred_audio, pred_visual, pred_video, audio_video=audio_video, visual_video=visual_video,
        gate=gate, threshold=threshold,
    )
    return evaluate_binary(gt_audio, gt_visual, so_a, so_v)


# --------------------------------------------------------------------------------------------- extras
@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class PerClassResult:
    """Per-class F (percent) per level and metric: `scores[level][metric][c]`, NaN where no video counts.

    A class's value is the mean of its per-video F over the videos where that class is not skipped (it has
    GT or a prediction in that video); `videos[level][metric][c]` is that number of videos.
    """

    classes: tuple[str, ...]
    scores: Mapping[str, Mapping[str, np.ndarray]]
    videos: Mapping[str, Mapping[str, np.ndarray]]

    def as_dict(self) -> dict:
        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {
            name: {
                level: {m: num(self.scores[level][m][c]) for m in VIDEO_METRICS} | {
                    "videos": {m: int(self.videos[level][m][c]) for m in VIDEO_METRICS}
                }
                for level in LEVELS
            }
            for c, name in enumerate(self.classes)
        }


def per_class_table(scores: VideoScores, classes: Sequence[str] = LLP_CLASSES) -> PerClassResult:
    out_scores: dict[str, dict[str, np.ndarray]] = {}
    out_videos: dict[str, dict[str, np.ndarray]] = {}
    for level in LEVELS:
        lv: LevelVideoScores = getattr(scores, level)
        out_scores[level], out_videos[level] = {}, {}
        for m in VIDEO_METRICS:
            f = lv.per_class[m]
            if f.shape[1] != len(classes):
                raise ValueError(f"{f.shape[1]} classes in the scores, {len(classes)} class names")
            valid = ~np.isnan(f)
            means = np.full(f.shape[1], np.nan)
            for c in range(f.shape[1]):
                if valid[:, c].any():
                    means[c] = 100 * np.mean(f[valid[:, c], c])
            out_scores[level][m] = means
            out_videos[level][m] = valid.sum(axis=0)
    return PerClassResult(tuple(classes), out_scores, out_videos)


def overlapping_videos(gt_audio: np.ndarray, gt_visual: np.ndarray) -> np.ndarray:
    """LEAP Table 3 split: True for videos with >= 2 classes active in one segment of one modality.

    LEAP: "the overlapping set consists of those videos that contain multiple events in at least one
    segment". Events in AVVP are modality-specific, so we count classes per segment within the audio GT
    and within the visual GT (an audible and visible dog in the same segment is one audio-visual event,
    not an overlap). See docs/metrics.md for the counts this gives on val/test.
    """
    gt_audio, gt_visual = np.asarray(gt_audio).astype(bool), np.asarray(gt_visual).astype(bool)
    multi_a = (gt_audio.sum(axis=2) >= 2).any(axis=1)
    multi_v = (gt_visual.sum(axis=2) >= 2).any(axis=1)
    return multi_a | multi_v


def overlap_split(scores: VideoScores, overlapping: np.ndarray) -> dict[str, MetricResult | None]:
    """The ten numbers on LEAP's 'non_overlapping' and 'overlapping' subsets (None for an empty subset)."""
    overlapping = np.asarray(overlapping, dtype=bool)
    if overlapping.shape != (len(scores),):
        raise ValueError(f"overlap mask has shape {overlapping.shape}, expected ({len(scores)},)")
    out: dict[str, MetricResult | None] = {}
    for name, mask in (("non_overlapping", ~overlapping), ("overlapping", overlapping)):
        out[name] = summarize(scores.subset(mask)) if mask.any() else None
    return out


# ------------------------------------------------------------------------------ ground-truth sources
# read by avvp.data.groundtruth (one reader for the metric, the calibration and the trainer)


def llp_ground_truth(split: str = "test", annotations: str | tuple = "2024") -> GroundTruth:
    """GT of all videos of the LLP 'val' or 'test' split from the bundled (or given) eval CSVs."""
    if split not in llp.EVAL_SPLITS:
        raise ValueError(f"LLP split {split!r} has no segment annotations; use one of {llp.EVAL_SPLITS}")
    ann = llp.read_eval_annotations(annotations)
    return replace(annotated_ground_truth(llp.split_ids(split), ann), source=f"LLP {split} ({ann.version} annotations)")


def store_ground_truth(store_path: str | os.PathLike, split: str) -> GroundTruth:
    """GT of the videos of `split` from a store's /gt/{audio,visual} (synthetic data)."""
    with Store(store_path) as store:
        gt = stored_ground_truth(store, split_video_ids(store, split))
    return replace(gt, source=f"store {store_path} split {split}")


def load_ground_truth(
    split: str = "test", annotations: str | tuple = "2024", store: str | os.PathLike | None = None
) -> GroundTruth:
    """GT from a store (when given) or from the LLP eval CSVs."""
    return store_ground_truth(store, split) if store is not None else llp_ground_truth(split, annotations)


def score_predictions(pred: Predictions, gt: GroundTruth, gate: str = "global") -> VideoScores:
    """Per-video scores of `pred` on the videos of `gt` (extra predicted videos are ignored)."""
    try:
        sel = pred.select(gt.ids)
    except MissingVideosError as exc:
        raise MissingVideosError(exc.missing, len(gt.ids), f"the predictions for {gt.source}") from None
    if sel.audio.shape[2] != gt.audio.shape[2]:
        raise ValueError(f"predictions have {sel.audio.shape[2]} classes, ground truth {gt.audio.shape[2]}")
    so_a, so_v = binarize(
        sel.audio, sel.visual, sel.video, audio_video=sel.audio_video, visual_video=sel.visual_video, gate=gate
    )
    return score_videos(gt.audio, gt.visual, so_a, so_v, ids=gt.ids)


def evaluate_predictions(
    pred: Predictions | str | os.PathLike,
    split: str = "test",
    annotations: str | tuple = "2024",
    gate: str = "global",
    store: str | os.PathLike | None = None,
) -> MetricResult:
    """The ten numbers of a predictions file (or in-memory `Predictions`) on an LLP or store split."""
    if not isinstance(pred, Predictions):
        pred = read_predictions(pred)
    return summarize(score_predictions(pred, load_ground_truth(split, annotations, store), gate))


def evaluate_arrays(
    ids: Sequence[str],
    audio: np.ndarray,
    visual: np.ndarray,
    video: np.ndarray,
    *,
    split: str = "test",
    annotations: str | tuple = "2024",
    gate: str = "global",
    audio_video: np.ndarray | None = None,
    visual_video: np.ndarray | None = None,
    store: str | os.PathLike | None = None,
) -> MetricResult:
    """Like `evaluate_predictions` for in-memory model outputs (what a trainer calls; no file written)."""
    pred = Predictions(
        ids=tuple(ids), audio=np.asarray(audio), visual=np.asarray(visual), video=np.asarray(video),
        audio_video=audio_video, visual_video=visual_video,
    )
    return evaluate_predictions(pred, split, annotations, gate, store)
