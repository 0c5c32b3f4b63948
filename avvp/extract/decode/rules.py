"""The rules every backend shares: which of the N fps frames make the 80 (`select_fps_frames`), how
audio is cut and padded to a window (`AudioSpan`, `cut_audio_window`, `fit_audio`), how a file is cut
into windows (`num_windows`, `padded_seconds`), what is decodable at all (`check_decodable`), and the
output frame size (`output_size`). Pure functions on probed facts and options; no process runs here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.video import DecodeError, DecodeOptions


def select_fps_frames(num_available: int, num_frames: int = 80) -> tuple[np.ndarray, str]:
    """Indices into the N frames of the 8 fps sequence, and the rule used.

    "reference" (N >= num_frames - 1): `round(linspace(0, N-1, num_frames))`, the AVVP scripts' rule.
    With ffmpeg's -r 8 a fully covered 10 s window gives 80..83 frames (82 for 24-60 fps sources
    with ffmpeg 5.1), so N >= 79 means the window is covered up to one 8 fps frame.
    "time" (N < num_frames - 1, a short clip): frame k is output frame k; the missing tail repeats
    the last frame, so segment t still shows [t, t+1) instead of a stretched clip.
    """
    if num_available <= 0:
        raise ValueError("no frames to select from")
    if num_available >= num_frames - 1:
        return np.round(np.linspace(0, num_available - 1, num_frames)).astype(np.int64), "reference"
    return np.minimum(np.arange(num_frames), num_available - 1).astype(np.int64), "time"


def fit_audio(samples: np.ndarray, num_samples: int, lead: int = 0) -> np.ndarray:
    """Exactly `num_samples` float32 samples: `lead` zeros (audio that starts late), then the decoded
    samples, truncated or zero-padded at the end."""
    out = np.zeros(num_samples, np.float32)
    lead = max(0, min(int(lead), num_samples))
    take = min(len(samples), num_samples - lead)
    if take > 0:
        out[lead:lead + take] = samples[:take]
    return out


def compact_in_place(buf: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`buf[indices]` for a monotone index map without a second frame buffer (1080p frames are
    6 MB each): when indices[k] >= k for all k, copy in ascending order; when <= k, descending."""
    n = len(indices)
    if np.all(indices >= np.arange(n)):
        order = range(n)
    elif np.all(indices <= np.arange(n)):
        order = range(n - 1, -1, -1)
    else:
        return buf[indices]
    for k in order:
        j = int(indices[k])
        if j != k:
            buf[k] = buf[j]
    return buf[:n]


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Frame size after the optional cap on the longer side (aspect kept, at least 1 pixel)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


# Audio is decoded from AUDIO_MARGIN s before the window to AUDIO_MARGIN s after it, then cut: the
# resampler and the AAC decoder (whose frames overlap) then see the same neighbouring samples as
# when the whole file is decoded, so windows join seamlessly and match librosa.load at the edges.
AUDIO_MARGIN = 0.5


@dataclass(frozen=True)
class AudioSpan:
    """The stretch of audio ffmpeg decodes for a window: `-ss seek -t duration` on the input."""

    seek: float  # seconds on the file's timeline; 0 = no -ss
    duration: float

    @classmethod
    def for_window(cls, options: DecodeOptions) -> "AudioSpan":
        seek = max(0.0, options.start - AUDIO_MARGIN)
        return cls(seek=seek, duration=(options.start - seek) + options.window + AUDIO_MARGIN)


def cut_audio_window(info: MediaInfo, options: DecodeOptions, decoded: np.ndarray, rate: int) -> np.ndarray:
    """The window's `window * rate` samples out of the decoded span: zeros where the audio stream
    starts after the span start, then the samples from the window start on, zero-padded at the end."""
    span = AudioSpan.for_window(options)
    audio_start = 0.0
    if info.audio is not None and info.audio.start_time is not None:
        audio_start = info.audio.start_time - info.start_time
    lead = int(round(max(0.0, audio_start - span.seek) * rate))  # zeros before the first sample
    skip = int(round((options.start - span.seek) * rate))  # span samples before the window
    n = int(round(options.window * rate))
    if lead >= skip:
        return fit_audio(decoded, n, lead=lead - skip)
    return fit_audio(decoded[skip - lead:], n)


def num_windows(duration: float, window: float, fps: int) -> int:
    """Windows needed to cover `duration` seconds; a last window holding less than one 8 fps frame
    period of content is not started (it would decode to nothing)."""
    return max(1, int(math.ceil((duration - 1.0 / fps) / window - 1e-9)))


def padded_seconds(info: MediaInfo, options: DecodeOptions) -> float:
    remaining = max(0.0, info.duration - options.start)
    return round(max(0.0, options.window - remaining), 6)


def check_decodable(info: MediaInfo, options: DecodeOptions) -> None:
    if (options.video or options.require_video) and info.video is None:
        what = "audio only" if info.audio is not None else "no audio/video streams"
        raise DecodeError(f"no video stream ({what})", path=info.path)
    if not options.video and info.audio is None and info.video is None:
        raise DecodeError("no audio or video stream", path=info.path)
    if options.start > 0 and options.start >= info.duration:
        raise DecodeError(f"window start {options.start}s is past the end ({info.duration:.3f}s)", path=info.path)
