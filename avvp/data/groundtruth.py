"""Segment ground truth: per-video (10, K) uint8 audio and visual arrays, read in one place.

Two sources, the same arrays:
- a store's /gt/{audio,visual} (synthetic data, or a store the user filled): every asked video must have
  its /gt row (a video without one would be scored against an empty truth);
- the LLP eval annotation CSVs (`avvp.data.llp`, a bundled version or a pair of files), for LLP filenames;
  a store id that is an 11-char YouTube id is mapped to its LLP filename, and the classes follow the order
  asked for (a store may hold another order than LLP's).

`ground_truth_for` picks the store's arrays when the store has them, else the CSVs. Its callers: the
evaluation (`avvp.metrics`, avvp-eval), the pseudo-label calibration and report (`avvp.pseudolabels`),
and the trainer's validation (`avvp.train.data`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from avvp.data import llp
from avvp.data.classes import LLP_CLASSES
from avvp.data.store import Store

GT_PATHS = ("gt/audio", "gt/visual")


class GroundTruthError(ValueError):
    """Asked-for videos have no ground truth in the source (no /gt row, no annotation, no such split)."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class GroundTruth:
    """Segment ground truth of some videos: `audio`, `visual` (N, 10, K) uint8, rows in `ids` order."""

    ids: tuple[str, ...]
    audio: np.ndarray
    visual: np.ndarray
    source: str

    def modality(self, name: str) -> np.ndarray:
        return {"audio": self.audio, "visual": self.visual}[name]


def has_stored_ground_truth(store: Store) -> bool:
    return all(store.has(path) for path in GT_PATHS)


def split_video_ids(store: Store, split: str) -> np.ndarray:
    """The store ids of `split`; GroundTruthError when there is none."""
    ids = store.split_ids(split) if len(store) else np.array([], dtype=object)
    if not len(ids):
        known = sorted(set(map(str, store.video_field("split")))) if len(store) else []
        raise GroundTruthError(f"store {store.path} has no video of split {split!r} (splits: {known})")
    return ids


def stored_ground_truth(store: Store, ids: Sequence[str]) -> GroundTruth:
    """The store's /gt rows of `ids`."""
    ids = [str(v) for v in ids]
    missing_arrays = [p for p in GT_PATHS if not store.has(p)]
    if missing_arrays:
        raise GroundTruthError(f"store {store.path} has no /{missing_arrays[0]}; ground truth needs /gt/{{audio,visual}}")
    rows = store.index(ids)
    present = store.mask(GT_PATHS[0])[rows] & store.mask(GT_PATHS[1])[rows]
    if not present.all():
        missing = [v for v, ok in zip(ids, present) if not ok]
        raise GroundTruthError(f"{len(missing)} videos of {store.path} have no /gt row: {missing[:10]}")
    return GroundTruth(tuple(ids), store.read(GT_PATHS[0], ids), store.read(GT_PATHS[1], ids), f"{store.path}:/gt")


def annotated_ground_truth(
    ids: Sequence[str], annotations: str | tuple | llp.EvalAnnotations = "2024", classes: Sequence[str] = LLP_CLASSES
) -> GroundTruth:
    """The LLP eval annotations of `ids` (LLP filenames, or 11-char YouTube ids), classes in `classes` order.
    `annotations`: a bundled version, a pair (audio_csv, visual_csv), or annotations already read."""
    ann = annotations if isinstance(annotations, llp.EvalAnnotations) else llp.read_eval_annotations(annotations)
    known = set(ann.ids)
    by_ytid = None
    names = []
    for vid in map(str, ids):
        if vid not in known and len(vid) == 11:
            by_ytid = by_ytid or llp.ytid_to_filename("full")
            vid = by_ytid.get(vid, vid)
        names.append(vid)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GroundTruthError(f"{len(unknown)} videos have no LLP eval annotations ({ann.version}; ids must be "
                               f"LLP filenames): {unknown[:10]}")
    audio, visual = ann.ground_truth(names)
    if tuple(classes) != tuple(LLP_CLASSES):  # the CSVs give LLP order; follow the caller's
        order = [LLP_CLASSES.index(c) for c in classes]
        audio, visual = audio[..., order], visual[..., order]
    return GroundTruth(tuple(map(str, ids)), audio, visual, f"LLP eval annotations {ann.version}")


def ground_truth_for(store: Store, ids: Sequence[str], annotations: str | tuple = "2024") -> GroundTruth:
    """Ground truth of the store's videos `ids`: its /gt arrays when it has them, else the LLP annotations
    (in the store's class order)."""
    if has_stored_ground_truth(store):
        return stored_ground_truth(store, ids)
    return annotated_ground_truth(ids, annotations, store.classes)
