"""Prediction arrays → an event timeline: what `avvp-parse` writes as JSON and draws.

A parsing model sees 10 s windows of ten 1 s segments. For a video of any length the parser runs the
model on consecutive windows (start 0, 10, 20, ...; the last one padded) and hands each window's arrays
to `build_timeline`, which

1. binarises every window exactly as the official protocol does (`avvp.metrics.binarize`): a segment is
   on when `prob >= threshold` AND the window's video-level gate is on (`gate` names an entry of
   `avvp.metrics.GATES`: "global" = the fused video probability, "modality" = a_prob / v_prob as MA,
   "none" = no gating);
2. concatenates the windows on one time axis (window w covers [w·window, (w+1)·window) s) and drops
   the padded segments that start at or after the video's duration;
3. per class turns each modality's binary sequence into events = maximal runs of consecutive on
   segments (the metric's `extract_event`), so an event crossing a window boundary stays one event.
   "audio-visual" events are the runs where the class is on in BOTH modalities (GT_av = GT_a·GT_v);
4. gives each event its start/end in seconds (end clipped to the duration) and its peak probability:
   the maximum segment probability over the event (for audio-visual, of min(audio, visual) per segment,
   the weaker modality being what limits the joint claim).

The JSON form (`Timeline.to_dict`) keeps the raw per-segment probabilities so the figure and the HTML
page can shade them; `Timeline.from_dict` reads it back.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avvp.data.classes import NUM_SEGMENTS
from avvp.metrics import GATES, THRESHOLD, binarize

TIMELINE_FORMAT = "avvp-timeline"
TIMELINE_VERSION = 1
MODALITIES = ("audio", "visual", "audio-visual")
PROB_DECIMALS = 4  # probabilities in the JSON are rounded; events are computed before rounding


@dataclass(frozen=True)
class TimelineConfig:
    """How predictions become events. `gate="none"` disables the video-level gating."""

    threshold: float = THRESHOLD
    gate: str = "global"
    window: float = 10.0  # seconds per model window (LLP: 10)

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"unknown gate {self.gate!r}; known: {', '.join(GATES.names())}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {self.window}")

    @property
    def segment_seconds(self) -> float:
        return self.window / NUM_SEGMENTS


@dataclass
class WindowPrediction:
    """One model window: segment probabilities (10, K), video-level probabilities (K,), its start time."""

    start: float
    audio: np.ndarray
    visual: np.ndarray
    video: np.ndarray
    audio_video: np.ndarray | None = None
    visual_video: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.audio = np.asarray(self.audio, dtype=np.float64)
        self.visual = np.asarray(self.visual, dtype=np.float64)
        self.video = np.asarray(self.video, dtype=np.float64)
        k = self.video.shape[-1] if self.video.ndim == 1 else -1
        for name in ("audio", "visual"):
            arr = getattr(self, name)
            if arr.shape != (NUM_SEGMENTS, k):
                raise ValueError(f"window at {self.start} s: {name} must be ({NUM_SEGMENTS}, K={k}), got {arr.shape}")
        for name in ("audio_video", "visual_video"):
            arr = getattr(self, name)
            if arr is not None:
                arr = np.asarray(arr, dtype=np.float64)
                if arr.shape != (k,):
                    raise ValueError(f"window at {self.start} s: {name} must be ({k},), got {arr.shape}")
                setattr(self, name, arr)


@dataclass(frozen=True)
class Event:
    label: str
    modality: str  # "audio" | "visual" | "audio-visual"
    start: float  # seconds
    end: float  # seconds, exclusive
    peak: float  # max segment probability over the event
    first_segment: int  # index into the concatenated segment axis
    last_segment: int  # inclusive

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "modality": self.modality, "start": self.start, "end": self.end,
                "peak": round(self.peak, PROB_DECIMALS), "segments": [self.first_segment, self.last_segment]}


@dataclass
class Timeline:
    """Events of one video plus the per-segment probabilities they came from (S segments in all)."""

    video: str
    duration: float
    classes: list[str]
    config: TimelineConfig
    window_starts: list[float]
    audio: np.ndarray  # (S, K) segment probabilities, concatenated windows, padding dropped
    visual: np.ndarray  # (S, K)
    audio_on: np.ndarray  # (S, K) bool, after thresholding and gating
    visual_on: np.ndarray  # (S, K) bool
    video_prob: np.ndarray  # (W, K) fused video-level probability per window
    events: list[Event]
    meta: dict[str, Any] = field(default_factory=dict)  # checkpoint, model, features, random_weights, ...

    @property
    def num_segments(self) -> int:
        return int(self.audio.shape[0])

    def segment_start(self, i: int) -> float:
        return i * self.config.segment_seconds

    def segment_end(self, i: int) -> float:
        return min((i + 1) * self.config.segment_seconds, self.duration)

    def classes_present(self) -> list[int]:
        """Indices of classes with at least one event, in class order."""
        index = {c: i for i, c in enumerate(self.classes)}
        return sorted({index[e.label] for e in self.events})

    def to_dict(self) -> dict[str, Any]:
        r = PROB_DECIMALS
        return {
            "format": TIMELINE_FORMAT, "version": TIMELINE_VERSION,
            "video": self.video, "duration": self.duration,
            "window": self.config.window, "segment_seconds": self.config.segment_seconds,
            "threshold": self.config.threshold, "gate": self.config.gate,
            "classes": list(self.classes),
            "windows": [
                {"start": s, "end": min(s + self.config.window, self.duration),
                 "video_prob": np.round(self.video_prob[w], r).tolist()}
                for w, s in enumerate(self.window_starts)
            ],
            "events": [e.to_dict() for e in self.events],
            "probabilities": {"audio": np.round(self.audio, r).tolist(), "visual": np.round(self.visual, r).tolist()},
            "on": {"audio": self.audio_on.astype(int).tolist(), "visual": self.visual_on.astype(int).tolist()},
            **({"meta": self.meta} if self.meta else {}),
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Timeline":
        if d.get("format") != TIMELINE_FORMAT:
            raise ValueError(f"not an avvp timeline (format {d.get('format')!r})")
        cfg = TimelineConfig(threshold=float(d["threshold"]), gate=str(d["gate"]), window=float(d["window"]))
        k = len(d["classes"])
        events = [Event(e["label"], e["modality"], float(e["start"]), float(e["end"]), float(e["peak"]),
                        int(e["segments"][0]), int(e["segments"][1])) for e in d["events"]]

        def arr(x: Any, dtype: Any) -> np.ndarray:
            return np.asarray(x, dtype=dtype).reshape(-1, k)

        return cls(
            video=d["video"], duration=float(d["duration"]), classes=list(d["classes"]), config=cfg,
            window_starts=[float(w["start"]) for w in d["windows"]],
            audio=arr(d["probabilities"]["audio"], np.float64), visual=arr(d["probabilities"]["visual"], np.float64),
            audio_on=arr(d["on"]["audio"], bool), visual_on=arr(d["on"]["visual"], bool),
            video_prob=arr([w["video_prob"] for w in d["windows"]], np.float64), events=events,
            meta=dict(d.get("meta", {})),
        )


def runs(on: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-d bool array, as (first, last) inclusive index pairs."""
    on = np.asarray(on, dtype=bool)
    padded = np.concatenate([[False], on, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def build_timeline(
    windows: Sequence[WindowPrediction],
    classes: Sequence[str],
    duration: float,
    config: TimelineConfig = TimelineConfig(),
    video: str = "",
    meta: dict[str, Any] | None = None,
) -> Timeline:
    """Binarise, gate and concatenate the windows, then merge on-segments into events (module docstring)."""
    if not windows:
        raise ValueError("build_timeline needs at least one window")
    windows = sorted(windows, key=lambda w: w.start)
    k = len(classes)
    for w in windows:
        if w.audio.shape[1] != k:
            raise ValueError(f"predictions have {w.audio.shape[1]} classes, but {k} class names were given")
    audio = np.stack([w.audio for w in windows])  # (W, 10, K)
    visual = np.stack([w.visual for w in windows])
    video_prob = np.stack([w.video for w in windows])  # (W, K)

    def heads(name: str) -> np.ndarray | None:
        values = [getattr(w, name) for w in windows]
        return None if any(v is None for v in values) else np.stack(values)

    on_a, on_v = binarize(audio, visual, video_prob, audio_video=heads("audio_video"),
                          visual_video=heads("visual_video"), gate=config.gate, threshold=config.threshold)
    seg = config.segment_seconds
    # segment s of window w sits at absolute time window_start + s·seg; windows need not be contiguous
    # in principle, but the parser always makes them so, which the concatenation below relies on
    expected = [i * config.window for i in range(len(windows))]
    if not np.allclose([w.start for w in windows], expected):
        raise ValueError(f"windows must start at 0, {config.window}, 2·{config.window}, ... "
                         f"(got {[w.start for w in windows]})")
    total = len(windows) * NUM_SEGMENTS
    keep = int(min(total, max(1, math.ceil(duration / seg - 1e-4))))  # segments that start before the end
    audio, visual = audio.reshape(total, k)[:keep], visual.reshape(total, k)[:keep]
    on_a, on_v = on_a.reshape(total, k)[:keep], on_v.reshape(total, k)[:keep]

    def seconds(i: int) -> float:
        return round(i * seg, 6)

    events: list[Event] = []
    per_modality = {
        "audio": (on_a, audio),
        "visual": (on_v, visual),
        "audio-visual": (on_a & on_v, np.minimum(audio, visual)),
    }
    for c, label in enumerate(classes):
        for modality in MODALITIES:
            on, prob = per_modality[modality]
            for first, last in runs(on[:, c]):
                events.append(Event(label, modality, seconds(first), min(seconds(last + 1), float(duration)),
                                    float(prob[first : last + 1, c].max()), first, last))
    events.sort(key=lambda e: (e.start, MODALITIES.index(e.modality), classes.index(e.label)))
    return Timeline(
        video=video, duration=float(duration), classes=list(classes), config=config,
        window_starts=[float(w.start) for w in windows], audio=audio, visual=visual, audio_on=on_a,
        visual_on=on_v, video_prob=video_prob, events=events, meta=dict(meta or {}),
    )
