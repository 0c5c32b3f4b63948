"""Decoding: a video file → 80 frames at 8 fps (uint8 RGB, native resolution) + mono audio at 16/48 kHz.

This is the first stage of extraction. It reproduces the frame set of the official AVVP scripts
(`ffmpeg -i video -r 8 %06d.jpg`, then `np.round(np.linspace(0, N-1, 80))` over the N files) without
writing any image to disk, and gives every backbone the same in-memory `DecodedVideo`.

Semantics (docs/decoding.md has the measurements behind each rule):

* A *window* is `[start, start + window)` seconds on the file's timeline (0 = the container's start
  time, as ffmpeg counts it). Segment t of a window is `[start + t, start + t + 1)`.
* Frames: the N frames that `ffmpeg -ss start -t window -i video -r 8` emits (ffmpeg's constant-frame-
  rate output logic, which duplicates and drops frames; 82 frames for a 10 s clip with ffmpeg 5.1).
  If `N >= num_frames - 1` the window is (almost) fully covered and the *reference rule* applies:
  indices `round(linspace(0, N-1, num_frames))`, exactly as the AVVP scripts. Otherwise the clip is
  short: the N frames are kept in time order and the tail is padded by repeating the last frame (no
  stretching, so segment t stays `[t, t+1)`), and `padded_seconds` says how much was missing.
* Audio: the first `window * sr` samples of the window, averaged over channels (the mean, as librosa's
  `to_mono` and VGGish's wav reader do; not ffmpeg's `-ac 1` matrix, which scales stereo by 1/sqrt(2)).
  The default resampler ("soxr_s16": int16, then soxr HQ, inside ffmpeg) reproduces VALOR's
  `librosa.load(mp4, sr=48000)` bit for bit on mono sources.
  Audio that starts after the window start is preceded by zeros; a short tail is padded with zeros.
  It is decoded with `AUDIO_MARGIN` s of context on both sides and then cut, so consecutive windows
  join seamlessly (the AAC decoder and the resampler never see an artificial edge).
  Files without an audio stream give zero arrays and `has_audio=False`.
* `frame_times` are the source timestamps of the selected frames. They come from a port of ffmpeg's
  frame-rate conversion (`cfr_frame_sources`) run on the packet timestamps; the same port gives the
  decord backend its frame indices. Tests check it against ffmpeg's actual output.

Backends live in `avvp/extract/decoders/` and register in `DECODERS`; `decode_video(decoder=...)`
picks one by name. `DEFAULT_DECODER` was chosen by benchmarks/decode.py (see docs/decoding.md).

The package, one module per job (each module's docstring gives its role):

* `video.py`    what to decode and what comes out: DecodeOptions, DecodedVideo, DecodeError, value sets
* `process.py`  running ffmpeg/ffprobe: binaries (AVVP_FFMPEG / AVVP_FFPROBE), run_ffmpeg, to_mono
* `probe.py`    ffprobe → MediaInfo (streams, packet timeline)
* `rate.py`     the port of ffmpeg's `-r` rate conversion: cfr_frame_sources, frame_times_of
* `rules.py`    selection and fitting rules every backend shares (frames, audio windows, padding)
* `backend.py`  the Decoder contract and the DECODERS registry (backends load on its first lookup)

This `__init__` re-exports their public names and holds the entry points `decode_video` and
`iter_windows`.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

from avvp.extract.decode.backend import DECODERS, DEFAULT_DECODER, Decoder
from avvp.extract.decode.probe import AudioStreamInfo, MediaInfo, VideoStreamInfo, VideoTimeline, probe
from avvp.extract.decode.process import (
    audio_filter_args,
    ffmpeg_binary,
    ffmpeg_input_path,
    ffprobe_binary,
    run_ffmpeg,
    to_mono,
)
from avvp.extract.decode.rate import cfr_frame_sources, frame_times_of
from avvp.extract.decode.rules import (
    AUDIO_MARGIN,
    AudioSpan,
    check_decodable,
    compact_in_place,
    cut_audio_window,
    fit_audio,
    num_windows,
    output_size,
    padded_seconds,
    select_fps_frames,
)
from avvp.extract.decode.video import (
    AUDIO_RATES,
    DEFAULT_PROFILE,
    PROFILES,
    RESAMPLERS,
    DecodedVideo,
    DecodeError,
    DecodeOptions,
)

__all__ = [
    "AUDIO_MARGIN", "AUDIO_RATES", "DECODERS", "DEFAULT_DECODER", "DEFAULT_PROFILE", "PROFILES", "RESAMPLERS",
    "AudioSpan", "AudioStreamInfo", "DecodedVideo", "DecodeError", "DecodeOptions", "Decoder", "MediaInfo",
    "VideoStreamInfo", "VideoTimeline",
    "audio_filter_args", "cfr_frame_sources", "check_decodable", "compact_in_place", "cut_audio_window",
    "decode_video", "ffmpeg_binary", "ffmpeg_input_path", "ffprobe_binary", "fit_audio", "frame_times_of",
    "iter_windows", "num_windows", "output_size", "padded_seconds", "probe", "run_ffmpeg",
    "select_fps_frames", "to_mono",
]


def _prepare(path, decoder, start, window, fps, num_frames, max_side, **extra) -> tuple[Decoder, MediaInfo, DecodeOptions]:
    """The shared start of decode_video and iter_windows: options, backend, one probe of the file."""
    options = DecodeOptions(start=float(start), window=float(window), fps=int(fps),
                            num_frames=int(num_frames), max_side=max_side, **extra)
    return DECODERS.get(decoder)(), probe(path, with_timeline=options.video), options


def decode_video(
    path: str | os.PathLike,
    *,
    start: float = 0.0,
    window: float = 10.0,
    decoder: str = DEFAULT_DECODER,
    fps: int = 8,
    num_frames: int = 80,
    max_side: int | None = None,
    video: bool = True,
    require_video: bool = False,
    audio_rates: Sequence[int] = AUDIO_RATES,
    resampler: str = "soxr_s16",
    profile: str = DEFAULT_PROFILE,
) -> DecodedVideo:
    """Decode the window [start, start+window) of a video into 80 RGB frames and mono 16/48 kHz audio.

    Raises DecodeError for unreadable files, files without a video stream (when video or
    require_video) and windows past the end. See the module docstring for the frame and audio rules.
    """
    backend, info, options = _prepare(path, decoder, start, window, fps, num_frames, max_side, video=video,
                                      require_video=require_video, audio_rates=tuple(audio_rates), resampler=resampler,
                                      profile=profile)
    return backend.decode(info, options)


def iter_windows(
    path: str | os.PathLike,
    *,
    window: float = 10.0,
    start: float = 0.0,
    decoder: str = DEFAULT_DECODER,
    fps: int = 8,
    num_frames: int = 80,
    max_side: int | None = None,
    video: bool = True,
    require_video: bool = False,
    audio_rates: Sequence[int] = AUDIO_RATES,
    resampler: str = "soxr_s16",
    profile: str = DEFAULT_PROFILE,
) -> Iterator[DecodedVideo]:
    """Consecutive windows [start + k*window, start + (k+1)*window) covering the whole file (the last
    one padded). The file is probed once; each window is decoded with a seek, so memory is flat."""
    backend, info, options = _prepare(path, decoder, start, window, fps, num_frames, max_side, video=video,
                                      require_video=require_video, audio_rates=tuple(audio_rates), resampler=resampler,
                                      profile=profile)
    yield from backend.iter_windows(info, options)  # each window's decode checks decodability
