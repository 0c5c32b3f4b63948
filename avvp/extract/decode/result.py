"""What every backend returns: `SelectedFrames` (a window's chosen frames) and `assemble()`, which
builds the `DecodedVideo` from them, plus the two pieces of bookkeeping the backends share (stderr
warnings, frame timestamps from the rate-conversion port). One place, so the ffmpeg, reference and
decord backends cannot drift apart in how a result is filled in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.rate import cfr_frame_sources, frame_times_of
from avvp.extract.decode.rules import fit_audio, padded_seconds
from avvp.extract.decode.video import DecodedVideo, DecodeOptions

MAX_WARNINGS = 20  # stderr lines kept per window (the last ones: ffmpeg's summary errors come last)


@dataclass(frozen=True, eq=False)
class SelectedFrames:
    """A backend's video result for one window: the chosen frames and where they come from."""

    frames: np.ndarray  # (num_frames, H, W, 3) uint8 RGB
    fps_indices: np.ndarray  # (num_frames,) int64 indices into the N fps frames
    num_fps_frames: int  # N
    rule: str  # the rule select_fps_frames used ("reference" or "time")
    times: np.ndarray  # (num_frames,) source timestamps in seconds
    # reference profile only: VALOR's 10 CLIP frames, round(linspace(0, N-1, 10)) over all N
    segment_frames: np.ndarray | None = None
    segment_frame_indices: np.ndarray | None = None


def assemble(
    info: MediaInfo, options: DecodeOptions, *, decoder: str, video: SelectedFrames | None = None,
    audio: Mapping[int, np.ndarray] | None = None, warnings: Sequence[str] = (),
) -> DecodedVideo:
    """Builds the DecodedVideo every backend returns. Without `video` the frame fields are empty (rule
    "none"); requested audio rates missing from `audio` are silence of the window's length."""
    zeros = {r: fit_audio(np.zeros(0, np.float32), round(options.window * r)) for r in options.audio_rates}
    all_audio = {**zeros, **(audio or {})}
    return DecodedVideo(
        path=info.path, decoder=decoder,
        frames=video.frames if video else None, frame_times=video.times if video else None,
        frame_indices=video.fps_indices if video else None,
        num_fps_frames=video.num_fps_frames if video else 0, frame_rule=video.rule if video else "none",
        audio_16k=all_audio.get(16000), audio_48k=all_audio.get(48000),
        has_audio=info.audio is not None, has_video=info.video is not None,
        duration=info.duration, window_start=options.start, window=options.window, fps=options.fps,
        source_fps=info.video.fps if info.video else 0.0,
        audio_sample_rate_in=info.audio.sample_rate if info.audio else 0,
        audio_channels_in=info.audio.channels if info.audio else 0,
        padded_seconds=padded_seconds(info, options), warnings=tuple(warnings), profile=options.profile,
        segment_frames=video.segment_frames if video else None,
        segment_frame_indices=video.segment_frame_indices if video else None,
    )


def stderr_warnings(stderr: str, limit: int = MAX_WARNINGS) -> list[str]:
    """The last `limit` non-empty stderr lines, stripped (kept on the DecodedVideo as warnings)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-limit:]


def port_frame_times(info: MediaInfo, options: DecodeOptions, num_fps_frames: int, fps_indices: np.ndarray,
                     warnings: list[str], *, duration: float | None, max_frames: int) -> np.ndarray:
    """Source timestamps of the chosen frames from the rate-conversion port, run over `duration`
    seconds from the window start (None: to the end of the file). If the port disagrees with ffmpeg
    on the frame count (an ffmpeg version with different rules), the 8 fps grid times are returned
    instead and a warning says so."""
    if info.timeline is not None and len(info.timeline.pts):
        sources = cfr_frame_sources(info, fps=options.fps, start=options.start, duration=duration,
                                    max_frames=max_frames)
        if len(sources) == num_fps_frames:
            return frame_times_of(info, sources[fps_indices])
        warnings.append(f"frame_times: rate-conversion port gives {len(sources)} frames, ffmpeg "
                        f"{num_fps_frames}; using grid times")
    else:
        warnings.append("frame_times: no packet timestamps; using grid times")
    return options.start + fps_indices.astype(np.float64) / options.fps
