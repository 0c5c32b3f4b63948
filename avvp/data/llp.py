"""Readers for the LLP (Look, Listen and Parse) metadata CSVs bundled in `avvp/data/llp/`.

The CSVs are the official files of YapengTian/AVVP-ECCV20 (tab-separated, header row):

    AVVP_train.csv / AVVP_val_pd.csv / AVVP_test_pd.csv / AVVP_dataset_full.csv   filename, event_labels
    AVVP_eval_audio.csv / AVVP_eval_visual.csv                                   filename, onset, offset, event_labels
    2020/AVVP_eval_audio.csv   the original 2020 audio eval file (all numbers published before 2024 used it)

Two kinds of readers:

* weak (video-level) labels of a split -> `WeakLabels` (ids + (N, 25) uint8 multi-hot matrix);
* segment ground truth of the eval files -> `EvalAnnotations`, built exactly like the official
  evaluation driver: `GT[class, onset:offset] = 1` with offset exclusive (zero-length and reversed rows
  contribute nothing), rows are matched by exact filename, so rows naming a video of no split are
  ignored. We keep those rows (`orphan_rows`) and the empty ones (`empty_rows`) so they can be counted.

Ground truth is stored segment-major, (N, 10, K), the layout of predictions and of the store; the
official (K, 10) matrix of one video is `EvalAnnotations.video_matrices(video_id)`.

File names are `<11-char YouTube id>_<start>_<end>`; feature files of the official release are keyed by
the 11-char id (`filename[:11]`), see `ytid` and `ytid_to_filename`.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from avvp.data.classes import CLASS_INDEX, LLP_CLASSES, NUM_CLASSES, NUM_SEGMENTS

PathLike = Union[str, os.PathLike]

# split name -> bundled weak-label file
SPLIT_FILES: dict[str, str] = {
    "train": "AVVP_train.csv",
    "val": "AVVP_val_pd.csv",
    "test": "AVVP_test_pd.csv",
    "full": "AVVP_dataset_full.csv",
}
# the three disjoint splits (their union is "full")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# splits that have segment annotations in the eval files
EVAL_SPLITS: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class EvalAnnotationFiles:
    """The pair of eval files one annotation version consists of (paths inside the bundle or on disk)."""

    audio: str
    visual: str
    bundled: bool = True


# annotation version -> files. "2024" is the current official version (commit fde5611, 3 rows fixed in
# the audio file); "2020" is the original audio file (commit 0b28c1a) used by every pre-2024 paper.
EVAL_ANNOTATIONS: dict[str, EvalAnnotationFiles] = {
    "2024": EvalAnnotationFiles("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"),
    "2020": EvalAnnotationFiles("2020/AVVP_eval_audio.csv", "AVVP_eval_visual.csv"),
}

WEAK_HEADER = ("filename", "event_labels")
EVAL_HEADER = ("filename", "onset", "offset", "event_labels")
MODALITIES = ("audio", "visual")


class LLPFormatError(ValueError):
    """An LLP CSV that does not follow the official format (header, class name, onset/offset)."""


# ------------------------------------------------------------------------------------------ file access
def _read_text(name_or_path: PathLike, bundled: bool) -> tuple[str, str]:
    """Return (text, label for messages) of a bundled CSV (name relative to `llp/`) or a file on disk."""
    if bundled:
        resource = resources.files("avvp.data").joinpath("llp", *str(name_or_path).split("/"))
        return resource.read_text(encoding="utf-8"), f"<bundled llp/{name_or_path}>"
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"LLP CSV {path} does not exist")
    return path.read_text(encoding="utf-8"), str(path)


def _read_tsv(text: str, label: str, header: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """Rows (line number, fields) of a tab-separated file whose header must equal `header`."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows or tuple(rows[0]) != header:
        got = tuple(rows[0]) if rows else ()
        raise LLPFormatError(f"{label}: expected header {header}, got {got}")
    out: list[tuple[int, list[str]]] = []
    for line_no, fields in enumerate(rows[1:], start=2):
        if not fields:  # a trailing blank line
            continue
        if len(fields) != len(header):
            raise LLPFormatError(f"{label} line {line_no}: expected {len(header)} tab-separated fields, got {fields}")
        out.append((line_no, fields))
    return out


def _class_index(name: str, label: str, line_no: int) -> int:
    try:
        return CLASS_INDEX[name]
    except KeyError:
        raise LLPFormatError(
            f"{label} line {line_no}: unknown class {name!r} (the 25 LLP classes are {', '.join(LLP_CLASSES)})"
        ) from None


def _frozen(array: np.ndarray) -> np.ndarray:
    # cached readers hand out the same arrays to every caller: make accidental in-place edits fail loudly
    array.flags.writeable = False
    return array


# ------------------------------------------------------------------------------------------ weak labels
@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class WeakLabels:
    """Video-level labels of one split: `labels[i, c] = 1` iff class c is in the weak label of `ids[i]`."""

    ids: tuple[str, ...]
    labels: np.ndarray  # (N, 25) uint8, read-only
    source: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {vid: i for i, vid in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, video_id: str) -> int:
        try:
            return self._index[video_id]
        except KeyError:
            raise KeyError(f"{video_id!r} is not in {self.source}") from None

    def classes_of(self, video_id: str) -> frozenset[str]:
        row = self.labels[self.index_of(video_id)]
        return frozenset(LLP_CLASSES[c] for c in np.flatnonzero(row))

    def as_sets(self) -> dict[str, frozenset[str]]:
        return {vid: frozenset(LLP_CLASSES[c] for c in np.flatnonzero(row)) for vid, row in zip(self.ids, self.labels)}


def _parse_weak(text: str, label: str) -> WeakLabels:
    rows = _read_tsv(text, label, WEAK_HEADER)
    ids: list[str] = []
    seen: dict[str, int] = {}
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    for i, (line_no, (filename, event_labels)) in enumerate(rows):
        if filename in seen:
            raise LLPFormatError(f"{label} line {line_no}: video {filename!r} already listed on line {seen[filename]}")
        seen[filename] = line_no
        ids.append(filename)
        # the official loader splits on ',' with no stripping; an empty label list is malformed
        for name in event_labels.split(","):
            labels[i, _class_index(name, label, line_no)] = 1
    return WeakLabels(ids=tuple(ids), labels=_frozen(labels), source=label)


@lru_cache(maxsize=None)
def _bundled_weak(split: str) -> WeakLabels:
    text, label = _read_text(SPLIT_FILES[split], bundled=True)
    return _parse_weak(text, label)


def read_weak_labels(split: PathLike) -> WeakLabels:
    """Weak labels of a bundled split ('train', 'val', 'test', 'full') or of a CSV file at a path."""
    if isinstance(split, str) and split in SPLIT_FILES:
        return _bundled_weak(split)
    path = Path(split)
    if not path.is_file() and isinstance(split, str) and len(path.parts) == 1 and not path.suffix:
        # a bare word that is neither a split nor a file: most likely a mistyped split name
        raise ValueError(f"unknown LLP split {split!r}; known: {', '.join(SPLIT_FILES)} (or a path to a CSV)")
    text, label = _read_text(path, bundled=False)
    return _parse_weak(text, label)


def split_ids(split: str) -> tuple[str, ...]:
    """Video ids (LLP filenames) of a bundled split, in file order."""
    return read_weak_labels(split).ids


@lru_cache(maxsize=None)
def _split_of_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for split in SPLITS:
        for vid in _bundled_weak(split).ids:
            if vid in mapping:  # the official splits are disjoint; say so loudly if a file changes
                raise LLPFormatError(f"video {vid!r} is in both {mapping[vid]!r} and {split!r}")
            mapping[vid] = split
    return mapping


def split_of(video_id: str) -> str:
    """'train', 'val' or 'test' for an LLP filename; KeyError for a video of no split."""
    try:
        return _split_of_map()[video_id]
    except KeyError:
        raise KeyError(f"{video_id!r} is in no LLP split") from None


# --------------------------------------------------------------------------------------------- ids
@dataclass(frozen=True)
class ClipName:
    """The parts of an LLP filename `<ytid>_<start>_<end>` (start/end in seconds of the source video)."""

    ytid: str
    start: float
    end: float


YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
CLIP_NAME = re.compile(r"^[A-Za-z0-9_-]{11}_[0-9.]+_[0-9.]+$")  # an LLP filename <ytid>_<start>_<end>


def youtube_id(video_id: str) -> str | None:
    """The YouTube id a released feature file is named by: an LLP filename's first 11 characters, or the id
    itself when it is one; None for any other id."""
    if CLIP_NAME.match(video_id):
        return video_id[:11]
    return video_id if YOUTUBE_ID.match(video_id) else None


def ytid(filename: str) -> str:
    """The 11-char YouTube id of an LLP filename, as the official feature files are named (`filename[:11]`)."""
    if len(filename) < 11:
        raise ValueError(f"{filename!r} is shorter than an 11-char YouTube id")
    return filename[:11]


def parse_clip_name(filename: str) -> ClipName:
    """Split `<11-char ytid>_<start>_<end>`; YouTube ids may themselves contain '_' and '-'."""
    head, rest = filename[:11], filename[11:]
    parts = rest.split("_")
    if len(head) != 11 or len(parts) != 3 or parts[0] != "":
        raise ValueError(f"{filename!r} is not an LLP clip name <11-char ytid>_<start>_<end>")
    try:
        return ClipName(head, float(parts[1]), float(parts[2]))
    except ValueError:
        raise ValueError(f"{filename!r}: start/end are not numbers") from None


def ytid_to_filename(split: str = "full") -> dict[str, str]:
    """Map 11-char YouTube id -> LLP filename for a split; raises if two videos share an id."""
    mapping: dict[str, str] = {}
    for filename in split_ids(split):
        key = ytid(filename)
        if key in mapping:
            raise LLPFormatError(f"YouTube id {key!r} is shared by {mapping[key]!r} and {filename!r}")
        mapping[key] = filename
    return mapping


# ---------------------------------------------------------------------------------- eval annotations
@dataclass(frozen=True)
class EvalRow:
    """One row of an eval file: an event instance of `label` in [onset, offset) seconds."""

    modality: str  # 'audio' or 'visual'
    filename: str
    onset: int
    offset: int
    label: str
    line: int


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class EvalAnnotations:
    """Segment ground truth of the val and test videos for one annotation version.

    `audio[i, t, c] = 1` iff class c is audible in segment t of `ids[i]` (same for `visual`); every val and
    test video has a row here (all zeros when the eval files have no row for it).
    """

    version: str
    ids: tuple[str, ...]
    audio: np.ndarray  # (N, 10, 25) uint8, read-only
    visual: np.ndarray  # (N, 10, 25) uint8, read-only
    orphan_rows: tuple[EvalRow, ...]  # rows naming a video of no split: ignored, as by the official code
    empty_rows: tuple[EvalRow, ...]  # offset <= onset (zero-length or reversed): contribute nothing
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {vid: i for i, vid in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def orphans(self, modality: str) -> tuple[EvalRow, ...]:
        return tuple(r for r in self.orphan_rows if r.modality == modality)

    def orphan_filenames(self, modality: str | None = None) -> list[str]:
        return sorted({r.filename for r in self.orphan_rows if modality in (None, r.modality)})

    def rows_of(self, video_ids: Sequence[str]) -> np.ndarray:
        index = self._index
        missing = [v for v in video_ids if v not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} videos have no eval annotations (not val/test videos): {missing[:10]}"
            )
        return np.fromiter((index[v] for v in video_ids), dtype=np.int64, count=len(video_ids))

    def ground_truth(self, video_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(audio, visual) ground truth of `video_ids`, each (len(ids), 10, 25) uint8, in that order."""
        rows = self.rows_of(video_ids)
        return self.audio[rows], self.visual[rows]

    def video_matrices(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The official (25, 10) GT_a and GT_v matrices of one video (class-major)."""
        i = int(self.rows_of([video_id])[0])
        return self.audio[i].T.copy(), self.visual[i].T.copy()


def _parse_eval_rows(text: str, label: str, modality: str) -> list[EvalRow]:
    rows: list[EvalRow] = []
    for line_no, (filename, onset, offset, event) in _read_tsv(text, label, EVAL_HEADER):
        try:
            on, off = int(onset), int(offset)
        except ValueError:
            raise LLPFormatError(f"{label} line {line_no}: onset/offset {onset!r}/{offset!r} are not integers") from None
        # the official code slices GT[c, onset:offset]; a negative or >10 bound would silently wrap/clip there
        if not (0 <= on <= NUM_SEGMENTS and 0 <= off <= NUM_SEGMENTS):
            raise LLPFormatError(f"{label} line {line_no}: onset/offset {on}/{off} outside [0, {NUM_SEGMENTS}]")
        _class_index(event, label, line_no)
        rows.append(EvalRow(modality, filename, on, off, event, line_no))
    return rows


def _build_annotations(version: str, files: dict[str, tuple[str, str]]) -> EvalAnnotations:
    split_map = _split_of_map()
    rows = {m: _parse_eval_rows(text, label, m) for m, (text, label) in files.items()}
    # every val/test video gets a GT row (empty GT is meaningful: no event in that modality); videos of
    # other splits only if an eval row names them (none in the official files)
    ids = list(_bundled_weak("val").ids) + list(_bundled_weak("test").ids)
    known = set(ids)
    for m in MODALITIES:
        for r in rows[m]:
            if r.filename in split_map and r.filename not in known:
                known.add(r.filename)
                ids.append(r.filename)
    index = {vid: i for i, vid in enumerate(ids)}
    gt = {m: np.zeros((len(ids), NUM_SEGMENTS, NUM_CLASSES), dtype=np.uint8) for m in MODALITIES}
    orphans: list[EvalRow] = []
    empty: list[EvalRow] = []
    for m in MODALITIES:
        for r in rows[m]:
            if r.offset <= r.onset:
                empty.append(r)
            if r.filename not in split_map:
                orphans.append(r)
                continue
            # offset exclusive, like GT[class, onset:offset] = 1; an empty range sets nothing
            gt[m][index[r.filename], r.onset : r.offset, CLASS_INDEX[r.label]] = 1
    return EvalAnnotations(
        version=version,
        ids=tuple(ids),
        audio=_frozen(gt["audio"]),
        visual=_frozen(gt["visual"]),
        orphan_rows=tuple(orphans),
        empty_rows=tuple(empty),
    )


@lru_cache(maxsize=None)
def _bundled_annotations(version: str) -> EvalAnnotations:
    spec = EVAL_ANNOTATIONS[version]
    files = {m: _read_text(getattr(spec, m), bundled=True) for m in MODALITIES}
    return _build_annotations(version, files)


def read_eval_annotations(annotations: str | tuple[PathLike, PathLike] = "2024") -> EvalAnnotations:
    """Segment GT of val+test: a bundled version ('2024' default, '2020') or a pair (audio_csv, visual_csv)."""
    if isinstance(annotations, str):
        if annotations not in EVAL_ANNOTATIONS:
            raise ValueError(
                f"unknown annotation version {annotations!r}; known: {', '.join(EVAL_ANNOTATIONS)} "
                "(or a pair of paths (audio_csv, visual_csv))"
            )
        return _bundled_annotations(annotations)
    audio_path, visual_path = annotations
    files = {"audio": _read_text(audio_path, bundled=False), "visual": _read_text(visual_path, bundled=False)}
    return _build_annotations("custom", files)


def eval_rows(annotations: str = "2024") -> dict[str, list[EvalRow]]:
    """All rows (including orphan and empty ones) of a bundled annotation version, per modality."""
    spec = EVAL_ANNOTATIONS[annotations]
    out: dict[str, list[EvalRow]] = {}
    for m in MODALITIES:
        text, label = _read_text(getattr(spec, m), bundled=True)
        out[m] = _parse_eval_rows(text, label, m)
    return out
