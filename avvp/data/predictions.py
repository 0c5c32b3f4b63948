"""The predictions file: what a parsing model outputs for a set of videos, the input of `avvp-eval`.

HDF5 layout (documented for users in docs/predictions.md):

    /videos/id          (N,)       utf-8 str   video ids (LLP filenames for LLP data), unique
    /pred/audio         (N,10,K)   float32     segment-level audio event probabilities
    /pred/visual        (N,10,K)   float32     segment-level visual event probabilities
    /pred/video         (N,K)      float32     fused video-level probability (the MMIL `global_prob`)
    /pred/audio_video   (N,K)      float32     optional: audio-only video-level probability (`a_prob`)
    /pred/visual_video  (N,K)      float32     optional: visual-only video-level probability (`v_prob`)
    root attributes: format="avvp-predictions", format_version=1, classes (K,) str, model str,
                     avvp_version str, plus any caller attributes

Probabilities are stored as float32, the dtype the reference models produce; the metric thresholds
them with `>= 0.5`. Writing is atomic: the file is written to `<path>.tmp` and renamed over `path`, so a
reader never sees a half-written file.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from avvp.data.classes import LLP_CLASSES, NUM_SEGMENTS

FORMAT = "avvp-predictions"
FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")
# optional video-level heads, needed only by the modality-specific gates of the metric
OPTIONAL_VIDEO_HEADS = ("audio_video", "visual_video")
RESERVED_ATTRS = ("format", "format_version", "classes", "model", "avvp_version")


class PredictionsError(ValueError):
    """A predictions array or file that does not follow the format (shape, dtype, ids, attributes)."""


class MissingVideosError(KeyError):
    """Videos that were asked for but are not in the predictions; `missing` lists them all."""

    def __init__(self, missing: Sequence[str], total: int, what: str):
        self.missing = list(missing)
        self.total = total
        shown = ", ".join(self.missing[:10])
        more = f" (and {len(self.missing) - 10} more)" if len(self.missing) > 10 else ""
        super().__init__(f"{what} lacks {len(self.missing)} of {total} requested videos: {shown}{more}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Predictions:
    """Model outputs for N videos over K classes; see the module docstring for the meaning of each array."""

    ids: tuple[str, ...]
    audio: np.ndarray  # (N, 10, K)
    visual: np.ndarray  # (N, 10, K)
    video: np.ndarray  # (N, K)
    audio_video: np.ndarray | None = None  # (N, K)
    visual_video: np.ndarray | None = None  # (N, K)
    classes: tuple[str, ...] = LLP_CLASSES
    attrs: Mapping[str, Any] = field(default_factory=dict)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(v) for v in self.ids))
        object.__setattr__(self, "classes", tuple(self.classes))
        _validate(self.ids, self.audio, self.visual, self.video, self.audio_video, self.visual_video, self.classes)
        object.__setattr__(self, "_index", {vid: i for i, vid in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def model(self) -> str:
        return str(self.attrs.get("model", ""))

    def select(self, video_ids: Sequence[str]) -> "Predictions":
        """The predictions of `video_ids`, in that order; MissingVideosError lists the absent ones."""
        missing = [v for v in video_ids if v not in self._index]
        if missing:
            raise MissingVideosError(missing, len(video_ids), "the predictions")
        rows = np.fromiter((self._index[v] for v in video_ids), dtype=np.int64, count=len(video_ids))
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Predictions(
            ids=tuple(video_ids),
            audio=self.audio[rows],
            visual=self.visual[rows],
            video=self.video[rows],
            audio_video=pick(self.audio_video),
            visual_video=pick(self.visual_video),
            classes=self.classes,
            attrs=dict(self.attrs),
        )


def _validate(
    ids: Sequence[str],
    audio: np.ndarray,
    visual: np.ndarray,
    video: np.ndarray,
    audio_video: np.ndarray | None,
    visual_video: np.ndarray | None,
    classes: Sequence[str],
) -> None:
    n, k = len(ids), len(classes)
    if len(set(ids)) != n:
        dup = sorted(v for v, count in Counter(ids).items() if count > 1)[:10]
        raise PredictionsError(f"video ids are not unique: {dup}")
    if any(not v for v in ids):
        raise PredictionsError("empty video id")
    if len(set(classes)) != k:
        raise PredictionsError(f"class names are not unique: {list(classes)}")
    expected = {"audio": (n, NUM_SEGMENTS, k), "visual": (n, NUM_SEGMENTS, k), "video": (n, k)}
    arrays = {"audio": audio, "visual": visual, "video": video}
    for name, arr in (("audio_video", audio_video), ("visual_video", visual_video)):
        if arr is not None:
            expected[name] = (n, k)
            arrays[name] = arr
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise PredictionsError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if arr.shape != expected[name]:
            raise PredictionsError(
                f"{name}: expected shape {expected[name]} (N videos={n}, {NUM_SEGMENTS} segments, K classes={k}), "
                f"got {arr.shape}"
            )
        if arr.dtype.kind != "f":
            raise PredictionsError(f"{name}: expected floating-point probabilities, got dtype {arr.dtype}")
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            bad = int((~np.isfinite(arr) | (arr < 0) | (arr > 1)).sum())
            raise PredictionsError(f"{name}: {bad} values are not probabilities in [0, 1] (NaN/inf/out of range)")


def write_predictions(
    path: str | os.PathLike,
    ids: Sequence[str],
    audio: np.ndarray,
    visual: np.ndarray,
    video: np.ndarray,
    audio_video: np.ndarray | None = None,
    visual_video: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    *,
    classes: Sequence[str] = LLP_CLASSES,
    model: str = "",
) -> Path:
    """Validate and write a predictions file atomically (`<path>.tmp` then rename). Returns the path."""
    from avvp import __version__

    as32 = lambda a: None if a is None else np.asarray(a, dtype=np.float32)  # noqa: E731
    pred = Predictions(
        ids=tuple(ids),
        audio=as32(audio),
        visual=as32(visual),
        video=as32(video),
        audio_video=as32(audio_video),
        visual_video=as32(visual_video),
        classes=tuple(classes),
    )
    attrs = dict(attrs or {})
    clash = [k for k in attrs if k in RESERVED_ATTRS and k != "model"]
    if clash:
        raise PredictionsError(f"attributes {clash} are set by write_predictions itself")
    model = str(attrs.pop("model", model))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["classes"] = np.array(pred.classes, dtype=object).astype(STR)
            f.attrs["model"] = model
            f.attrs["avvp_version"] = __version__
            for key, value in attrs.items():
                f.attrs[key] = value
            f.create_dataset("videos/id", data=np.array(pred.ids, dtype=object), dtype=STR)
            f.create_dataset("pred/audio", data=pred.audio)
            f.create_dataset("pred/visual", data=pred.visual)
            f.create_dataset("pred/video", data=pred.video)
            for name in OPTIONAL_VIDEO_HEADS:
                arr = getattr(pred, name)
                if arr is not None:
                    f.create_dataset(f"pred/{name}", data=arr)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read and validate a predictions file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise PredictionsError(f"{path} is not a readable HDF5 file: {exc}") from None
    with f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise PredictionsError(f"{path} is not an avvp predictions file (format attribute {attrs.get('format')!r})")
        if int(attrs.get("format_version", -1)) > FORMAT_VERSION:
            raise PredictionsError(
                f"{path} has format_version {attrs['format_version']}, this avvp reads up to {FORMAT_VERSION}"
            )
        for name in ("videos/id", "pred/audio", "pred/visual", "pred/video"):
            if name not in f:
                raise PredictionsError(f"{path} lacks the dataset /{name}")
        if "classes" not in attrs:
            raise PredictionsError(f"{path} lacks the 'classes' attribute")
        try:
            return Predictions(
                ids=tuple(f["videos/id"].asstr()[()]),
                audio=f["pred/audio"][()],
                visual=f["pred/visual"][()],
                video=f["pred/video"][()],
                audio_video=f["pred/audio_video"][()] if "pred/audio_video" in f else None,
                visual_video=f["pred/visual_video"][()] if "pred/visual_video" in f else None,
                classes=tuple(attrs["classes"]),
                attrs={k: v for k, v in attrs.items() if k != "classes"},
            )
        except PredictionsError as exc:
            raise PredictionsError(f"{path}: {exc}") from None
