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
"""
from __future__ import annotations

import abc
import dataclasses
import math
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np

from avvp.registry import Registry

FFMPEG_BIN = os.environ.get("AVVP_FFMPEG", "ffmpeg")
FFPROBE_BIN = os.environ.get("AVVP_FFPROBE", "ffprobe")

AUDIO_RATES = (16000, 48000)
STDERR_TAIL_CHARS = 1500
# Input profiles (docs/decoding.md): "reference" reproduces the official pipelines' network inputs bit
# for bit (JPEG round trip, moviepy's and librosa's audio, linspace over every frame count); "clean" is
# the lossless path (raw frames, soxr resampling, a time rule for short clips, exact window cuts).
PROFILES = ("reference", "clean")
DEFAULT_PROFILE = "reference"


class DecodeError(RuntimeError):
    """A file that cannot be decoded (missing, empty, truncated, not a video, no video stream...).

    The message names the file and, when ffmpeg/ffprobe produced one, ends with its stderr tail.
    """

    def __init__(self, message: str, *, path: str | None = None, stderr: str = ""):
        self.path = path
        self.stderr = stderr
        full = f"{message} [{path}]" if path else message
        if stderr:
            full += "\n--- ffmpeg stderr (tail) ---\n" + stderr[-STDERR_TAIL_CHARS:]
        super().__init__(full)


# ---------------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class VideoStreamInfo:
    index: int  # absolute stream index in the container
    codec: str
    width: int  # as decoded frames come out of ffmpeg (after applying the rotation metadata)
    height: int
    rotation: int  # display rotation in degrees (ffmpeg auto-rotates by it), 0 if none
    fps: float  # the rate ffmpeg's rate conversion assumes (av_guess_frame_rate, ≈ r_frame_rate)
    avg_fps: float
    time_base: Fraction
    start_time: float | None  # seconds, container timeline
    num_frames: int | None  # from the container header, when it has one


@dataclass(frozen=True)
class AudioStreamInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    start_time: float | None


@dataclass(frozen=True)
class VideoTimeline:
    """Packet timestamps of the video stream in presentation order (what the decoder outputs)."""

    pts: np.ndarray  # int64, in time_base units, sorted
    durations: np.ndarray  # int64, packet durations in time_base units (0 = unknown)
    time_base: Fraction


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    duration: float  # seconds (container duration; estimated from streams when missing)
    start_time: float  # container start time in seconds (ffmpeg's zero)
    start_time_us: int  # the same in microseconds, exactly as ffmpeg uses it
    size_bytes: int
    num_streams: int
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None
    timeline: VideoTimeline | None = field(default=None, repr=False)

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


def _ffmpeg_path(path: str | os.PathLike) -> str:
    """An argument ffmpeg reads as a local file: `file:` stops a colon in the name from being taken
    for a protocol ("clip:1.mp4"); the absolute path stops a leading '-' from being an option."""
    return "file:" + os.path.abspath(os.fspath(path))


def _require_binary(name: str) -> None:
    if shutil.which(name) is None:
        raise DecodeError(f"{name} not found on PATH; install ffmpeg (Debian: apt-get install ffmpeg)")


def _seconds(value: Any) -> float | None:
    if value in (None, "N/A", ""):
        return None
    return float(value)


def _fraction(value: Any) -> Fraction:
    try:
        f = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return f if f > 0 else Fraction(0)


def _guess_frame_rate(r_frame_rate: Fraction, avg_frame_rate: Fraction) -> Fraction:
    # libavformat's av_guess_frame_rate: r_frame_rate unless it is implausibly high for the average
    # (the codec-level refinement it also applies needs decoder state ffprobe does not print).
    if avg_frame_rate > 0 and r_frame_rate > 0 and avg_frame_rate < 70 and r_frame_rate > 210:
        return avg_frame_rate
    return r_frame_rate


def _rotation(stream: dict) -> int:
    for sd in stream.get("side_data_list") or []:
        if "rotation" in sd:
            return int(round(float(sd["rotation"])))
    rotate = (stream.get("tags") or {}).get("rotate")
    return -int(rotate) if rotate not in (None, "") else 0  # the tag is clockwise, side data counter-clockwise


def probe(path: str | os.PathLike, *, with_timeline: bool = False) -> MediaInfo:
    """Container and stream facts from ffprobe. `with_timeline=True` also lists the video packets'
    timestamps (needed for `frame_times` and by the decord backend).

    Raises DecodeError for a missing, empty or unreadable file. A file without a video stream is
    *not* an error here (`info.video is None`); `decode_video` decides.
    """
    import ffmpeg  # ffmpeg-python

    spath = os.fspath(path)
    if not os.path.exists(spath):
        raise DecodeError("no such file", path=spath)
    if os.path.getsize(spath) == 0:
        raise DecodeError("empty file (0 bytes)", path=spath)
    _require_binary(FFPROBE_BIN)
    kwargs = {"show_entries": "packet=stream_index,pts,dts,duration"} if with_timeline else {}
    try:
        data = ffmpeg.probe(_ffmpeg_path(spath), cmd=FFPROBE_BIN, v="error", **kwargs)
    except ffmpeg.Error as e:
        raise DecodeError("ffprobe cannot read the file", path=spath,
                          stderr=(e.stderr or b"").decode("utf-8", "replace")) from None
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    video = audio = None
    for s in streams:
        kind = s.get("codec_type")
        disp = s.get("disposition") or {}
        if kind == "video" and video is None and not disp.get("attached_pic"):  # skip cover art
            rot = _rotation(s)
            w, h = int(s.get("width") or 0), int(s.get("height") or 0)
            if rot % 180 != 0:  # ffmpeg auto-rotates; a quarter turn swaps the output size
                w, h = h, w
            r, avg = _fraction(s.get("r_frame_rate")), _fraction(s.get("avg_frame_rate"))
            nb = s.get("nb_frames")
            video = VideoStreamInfo(
                index=int(s["index"]), codec=str(s.get("codec_name", "?")), width=w, height=h,
                rotation=rot, fps=float(_guess_frame_rate(r, avg)), avg_fps=float(avg),
                time_base=_fraction(s.get("time_base")) or Fraction(1, 90000),
                start_time=_seconds(s.get("start_time")),
                num_frames=int(nb) if nb not in (None, "N/A", "") else None,
            )
        elif kind == "audio" and audio is None:
            audio = AudioStreamInfo(
                index=int(s["index"]), codec=str(s.get("codec_name", "?")),
                sample_rate=int(s.get("sample_rate") or 0), channels=int(s.get("channels") or 0),
                start_time=_seconds(s.get("start_time")),
            )
    if video is not None and (video.width <= 0 or video.height <= 0):
        raise DecodeError("video stream has no frame size (undecodable?)", path=spath)

    timeline = None
    if with_timeline and video is not None:
        pts, dur = [], []
        for p in data.get("packets") or []:
            if p.get("stream_index") != video.index:
                continue
            ts = p.get("pts", p.get("dts"))  # AVI and raw streams only carry dts
            if ts is None:
                continue
            pts.append(int(ts))
            dur.append(int(p.get("duration") or 0))
        order = np.argsort(np.asarray(pts, np.int64), kind="stable")
        timeline = VideoTimeline(pts=np.asarray(pts, np.int64)[order],
                                 durations=np.asarray(dur, np.int64)[order], time_base=video.time_base)

    start = _seconds(fmt.get("start_time")) or 0.0
    duration = _seconds(fmt.get("duration"))
    if duration is None:  # some muxers (e.g. streamed mkv/webm) write no duration
        ends = [_seconds(s.get("duration")) for s in streams]
        duration = max([d for d in ends if d is not None], default=None)
    if duration is None and timeline is not None and len(timeline.pts):
        last = int(timeline.pts[-1] + timeline.durations[-1])
        duration = float(last * timeline.time_base) - start
    return MediaInfo(
        path=spath, format_name=str(fmt.get("format_name", "?")), duration=float(duration or 0.0),
        start_time=start, start_time_us=int(round(start * 1_000_000)),
        size_bytes=int(fmt.get("size") or os.path.getsize(spath)), num_streams=len(streams),
        video=video, audio=audio, timeline=timeline,
    )


# ---------------------------------------------------------------------------------------------------
# ffmpeg's constant-frame-rate output logic, ported


def _rescale(a: int, b: Fraction, c: Fraction) -> int:
    """av_rescale_q(a, b, c) with ffmpeg's default rounding (to nearest, halves away from zero)."""
    num = a * b.numerator * c.denominator
    den = b.denominator * c.numerator
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def _lrintf(x: float) -> int:
    # C lrintf: the double is first narrowed to float, then rounded half-to-even (FE_TONEAREST)
    return int(round(float(np.float32(x))))


def cfr_frame_sources(
    info: MediaInfo, *, fps: int = 8, start: float = 0.0, duration: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Which source frame each output frame of `ffmpeg [-ss start] -t duration -i f -r fps` shows.

    A port of ffmpeg 5.1's `do_video_out` in constant-frame-rate mode ("vsync cfr"; "vscfr" for
    single-stream inputs), with the input trim that `-ss`/`-t` insert, evaluated on the packet
    timestamps. Returns int64 indices into the presentation-ordered frames of the whole file
    (the numbering decord uses). The rules, in output-frame units (1/fps s):
      * sync_ipts = frame pts rescaled with 16 extra bits, nudged by 2^-17 away from exact halves;
      * duration = min(1/(stream fps), 1 frame), or the packet duration when it rounds to >= 1;
      * delta0 = sync_ipts - frames_out, delta = delta0 + duration; a frame is dropped when
        delta < -1.1, emitted lrintf(delta) times when delta > 1.1 (the first lrintf(delta0-0.6) of
        those are copies of the previous frame), else once; when delta0 < 0 < delta the frame is
        clipped to the current output time;
      * at the end the last frame is repeated median(last three "previous-frame copy" counts) times.
    Tests compare it with ffmpeg's own output on CFR, VFR, low-fps, delayed-start and windowed
    inputs. ffmpeg ≥ 6.1 moved this code; if it changes behaviour there the tests will say so.
    """
    if info.video is None or info.timeline is None:
        raise ValueError("cfr_frame_sources needs probe(..., with_timeline=True) of a video file")
    tl = info.timeline
    tb = tl.time_base
    enc_tb = Fraction(1, fps)
    seek_us = int(round(start * 1_000_000)) if start > 0 else None
    # ffmpeg shifts input timestamps so that the container start (+ the seek point) becomes 0
    offset = _rescale(-(info.start_time_us + (seek_us or 0)), Fraction(1, 1_000_000), tb)
    extra_bits = max(0, min(16, 29 - (fps.bit_length() - 1)))
    precise_tb = Fraction(1, fps << extra_bits)
    frame_rate = Fraction(info.video.fps).limit_denominator(1_000_000)
    base_duration = 1.0 / (float(frame_rate) * float(enc_tb)) if frame_rate > 0 else 0.0
    if info.video.start_time is not None:
        base_duration = min(base_duration, 1.0 / (fps * float(enc_tb)))
    vscfr = info.num_streams == 1
    trim_duration = _rescale(int(round(duration * 1_000_000)), Fraction(1, 1_000_000), tb) if duration else None

    out: list[int] = []
    sync_opts = 0
    last: int | None = None
    last_nb0 = [0, 0, 0]
    first_kept: int | None = None
    limit = max_frames if max_frames is not None else 1 << 62
    for i, (p, d) in enumerate(zip(tl.pts.tolist(), tl.durations.tolist())):
        rel = p + offset
        if seek_us is not None and rel < 0:  # trim after an accurate seek drops earlier frames
            continue
        if first_kept is None:
            first_kept = rel
        if trim_duration is not None and rel - first_kept >= trim_duration:
            break
        sync_ipts = _rescale(rel, tb, precise_tb) / (1 << extra_bits)
        sync_ipts += (1 if sync_ipts > 0 else -1 if sync_ipts < 0 else 0) / (1 << 17)
        dur = base_duration
        pkt_frames = _lrintf(d * float(tb) / float(enc_tb)) if d else 0
        if pkt_frames > 0:
            dur = float(pkt_frames)
        delta0 = sync_ipts - sync_opts
        delta = delta0 + dur
        nb0, nb = 0, 1
        if delta0 < 0 and delta > 0:
            sync_ipts = float(sync_opts)
            dur += delta0
            delta0 = 0.0
        if vscfr and not out and delta0 >= 0.5:  # "not duplicating initial frames"
            delta = dur
            delta0 = 0.0
            sync_opts = int(round(sync_ipts))
        if delta < -1.1:
            nb = 0
        elif delta > 1.1:
            nb = _lrintf(delta)
            if delta0 > 1.1:
                nb0 = _lrintf(delta0 - 0.6)
        nb = min(nb, limit - len(out))
        nb0 = min(nb0, nb)
        last_nb0 = [nb0] + last_nb0[:2]
        for k in range(nb):
            out.append(last if (k < nb0 and last is not None) else i)
            sync_opts += 1
        last = i
    if last is not None:
        for _ in range(min(sorted(last_nb0)[1], limit - len(out))):
            out.append(last)
    return np.asarray(out, np.int64)


def frame_times_of(info: MediaInfo, sources: np.ndarray) -> np.ndarray:
    """Source timestamps (seconds on the file's timeline, 0 = container start) of frames by index."""
    tl = info.timeline
    assert tl is not None
    pts = tl.pts[sources].astype(np.float64) * float(tl.time_base)
    return pts - info.start_time


# ---------------------------------------------------------------------------------------------------
# Selection and fitting rules (shared by every backend)


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


# ---------------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class DecodeOptions:
    """What to decode. Never mutated; derive variants with `dataclasses.replace`."""

    start: float = 0.0  # window start, seconds on the file's timeline
    window: float = 10.0  # window length, seconds
    fps: int = 8
    num_frames: int = 80
    max_side: int | None = None  # cap on the longer frame side (aspect kept); None = native
    video: bool = True  # decode frames (False: audio only, also allowed for files without video)
    require_video: bool = False  # with video=False: still reject a file without a video stream
    audio_rates: tuple[int, ...] = AUDIO_RATES  # which mono waveforms to produce; () = none
    resampler: str = "soxr_s16"  # see RESAMPLERS: "soxr_s16" (= librosa.load), "soxr", "swr"
    profile: str = DEFAULT_PROFILE  # see PROFILES

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.profile == "reference" and self.max_side is not None:
            raise ValueError("max_side changes the pixels; the reference profile decodes at native size (use profile='clean')")
        if self.start < 0:
            raise ValueError(f"start must be >= 0, got {self.start}")
        if self.window <= 0:
            raise ValueError(f"window must be > 0, got {self.window}")
        if self.fps <= 0 or self.num_frames <= 0:
            raise ValueError("fps and num_frames must be positive")
        if self.max_side is not None and self.max_side <= 0:
            raise ValueError("max_side must be positive or None")
        if self.resampler not in RESAMPLERS:
            raise ValueError(f"resampler must be one of {sorted(RESAMPLERS)}, got {self.resampler!r}")
        if any(r not in AUDIO_RATES for r in self.audio_rates):
            raise ValueError(f"audio_rates must be drawn from {AUDIO_RATES}, got {self.audio_rates}")
        if not self.video and not self.audio_rates:
            raise ValueError("nothing to decode: video=False and no audio_rates")

    @property
    def max_fps_frames(self) -> int:
        # -frames:v cap: a covered window yields about window*fps + 2 frames; the margin is generous
        return int(math.ceil(self.window * self.fps)) + 16


@dataclass
class DecodedVideo:
    """One decoded window. Arrays not requested in DecodeOptions are None."""

    path: str
    decoder: str
    frames: np.ndarray | None  # (num_frames, H, W, 3) uint8 RGB
    frame_times: np.ndarray | None  # (num_frames,) float64 source pts in seconds (file timeline)
    frame_indices: np.ndarray | None  # (num_frames,) int64 indices into the N fps frames
    num_fps_frames: int  # N, the number of frames ffmpeg -r fps produced for the window
    frame_rule: str  # "reference" (linspace over N), "time" (short clip, tail padded), "none" (no video)
    audio_16k: np.ndarray | None  # (window*16000,) float32 mono
    audio_48k: np.ndarray | None  # (window*48000,) float32 mono
    has_audio: bool
    has_video: bool
    duration: float  # source duration in seconds (container), before any padding
    window_start: float
    window: float
    fps: int
    source_fps: float
    audio_sample_rate_in: int  # 0 without audio
    audio_channels_in: int  # 0 without audio
    padded_seconds: float  # seconds of the window after the end of the source
    warnings: tuple[str, ...] = ()  # decoder messages (e.g. ffmpeg errors on a damaged stream)
    profile: str = "clean"  # the input profile that produced the arrays (PROFILES)
    # reference profile: VALOR's CLIP frames, round(linspace(0, N-1, 10)) over ALL N fps frames (not
    # over the 80 selected ones); None in the clean profile (CLIP then picks 10 of the 80)
    segment_frames: np.ndarray | None = None  # (10, H, W, 3) uint8 RGB
    segment_frame_indices: np.ndarray | None = None  # (10,) int64 indices into the N fps frames

    def audio(self, sample_rate: int) -> np.ndarray | None:
        return {16000: self.audio_16k, 48000: self.audio_48k}.get(sample_rate)


# ---------------------------------------------------------------------------------------------------
# ffmpeg process helpers (both backends decode audio with ffmpeg)


class _PipeReader(threading.Thread):
    """Drains one pipe into memory on a thread, so several ffmpeg outputs can be read at once
    without ffmpeg blocking on a full pipe."""

    def __init__(self, fileobj, limit: int | None = None):
        super().__init__(daemon=True)
        self.fileobj = fileobj
        self.limit = limit  # keep only the last `limit` bytes (stderr)
        self.chunks: list[bytes] = []
        self.size = 0

    def run(self) -> None:
        try:
            while True:
                chunk = self.fileobj.read(1 << 16)
                if not chunk:
                    break
                self.chunks.append(chunk)
                self.size += len(chunk)
                if self.limit is not None and self.size > 4 * self.limit:
                    data = b"".join(self.chunks)[-self.limit:]
                    self.chunks, self.size = [data], len(data)
        finally:
            self.fileobj.close()

    def data(self) -> bytes:
        return b"".join(self.chunks)


# How each resampler choice is spelled for ffmpeg. Measured against librosa.load(path, sr) (docs/decoding.md):
#   soxr_s16: quantise to int16 (what audioread hands librosa), then soxr at its default 20-bit
#             precision (= soxr "HQ", librosa's default res_type soxr_hq) → bit-identical on mono.
#   soxr:     soxr on the decoder's float samples → differs from librosa by the int16 step (≤3e-5).
#   swr:      ffmpeg's default resampler → SNR ~29 dB vs librosa at 16 kHz on broadband noise.
RESAMPLERS = {
    "soxr_s16": "aformat=sample_fmts=s16,aresample={rate}:resampler=soxr",
    "soxr": "aresample={rate}:resampler=soxr",
    "swr": None,
}


def audio_filter_args(options: DecodeOptions, rate: int) -> dict[str, Any]:
    """Output arguments for one f32le audio output at `rate` (channels kept; averaged in numpy)."""
    graph = RESAMPLERS[options.resampler]
    if graph is None:
        return {"ar": rate}
    # the rate must be inside the filter: a bare -ar would add a second (swr) resampler
    return {"af": graph.format(rate=rate), "ar": rate}


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


def to_mono(raw: bytes, channels: int) -> np.ndarray:
    x = np.frombuffer(raw, np.float32)
    if channels <= 1:
        return x
    usable = len(x) - len(x) % channels
    return x[:usable].reshape(-1, channels).mean(axis=1, dtype=np.float64).astype(np.float32)


def run_ffmpeg(
    build_args: Callable[[list[str]], Sequence[str]], num_pipes: int, path: str, *, stdout_consumer=None
) -> tuple[list[bytes], str]:
    """Run ffmpeg with `num_pipes` extra output pipes besides stdout.

    `build_args(urls)` gets one "pipe:<fd>" URL per extra pipe and returns the command line.
    `stdout_consumer(fileobj)` reads stdout on the calling thread (rawvideo straight into a frame
    buffer); the extra pipes and stderr are drained by threads, so ffmpeg never blocks on a full
    pipe. Returns (bytes per extra pipe, stderr text). Raises DecodeError with the stderr tail when
    ffmpeg fails.
    """
    _require_binary(FFMPEG_BIN)
    fds = [os.pipe() for _ in range(num_pipes)]
    write_ends = [w for _, w in fds]
    try:
        args = list(build_args([f"pipe:{w}" for w in write_ends]))
        # bufsize=0: unbuffered pipes, so rawvideo is read straight into the frame buffer (no copy)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0,
                                stderr=subprocess.PIPE, close_fds=True, pass_fds=write_ends)
    except BaseException:
        for r, w in fds:
            os.close(r)
            os.close(w)
        raise
    for w in write_ends:  # only the child writes; our copies must go for EOF to arrive
        os.close(w)
    readers = [_PipeReader(os.fdopen(r, "rb")) for r, _ in fds]
    err_reader = _PipeReader(proc.stderr, limit=64 * 1024)
    for t in (*readers, err_reader):
        t.start()
    consumer_error: BaseException | None = None
    try:
        if stdout_consumer is not None:
            stdout_consumer(proc.stdout)
        else:
            proc.stdout.read()
    except BaseException as e:  # noqa: BLE001 — re-raised once the process is reaped
        consumer_error = e
        proc.kill()
    finally:
        proc.stdout.close()
        rc = proc.wait()
        for t in (*readers, err_reader):
            t.join()
    stderr = err_reader.data().decode("utf-8", "replace")
    if consumer_error is not None:
        raise consumer_error
    if rc != 0:
        raise DecodeError(f"ffmpeg failed (exit {rc})", path=path, stderr=stderr)
    return [r.data() for r in readers], stderr


# ---------------------------------------------------------------------------------------------------
# Backends


class Decoder(abc.ABC):
    """A decoding backend. Subclasses set `name`, implement `decode`, register in `DECODERS`."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def decode(self, info: MediaInfo, options: DecodeOptions) -> DecodedVideo:
        """Decode one window of a probed file (`info` from `probe(path, with_timeline=True)`)."""

    def iter_windows(self, info: MediaInfo, options: DecodeOptions) -> Iterator[DecodedVideo]:
        """Consecutive windows from options.start to the end. Each is decoded on its own with a seek,
        so memory stays at one window and window k equals decode(start=k*window)."""
        for k in range(num_windows(info.duration - options.start, options.window, options.fps)):
            yield self.decode(info, dataclasses.replace(options, start=options.start + k * options.window))


DECODERS: Registry[type[Decoder]] = Registry("decoder")


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


# The default backend, chosen by benchmarks/decode.py (docs/decoding.md): ffmpeg is pixel-identical
# to the reference on every container tested, decord fails on VP9/webm.
DEFAULT_DECODER = "ffmpeg"


def _prepare(path, decoder, start, window, fps, num_frames, max_side, **extra) -> tuple["Decoder", MediaInfo, DecodeOptions]:
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


# Register the built-in backends (they import this module, so this import comes last).
from avvp.extract import decoders as _decoders  # noqa: E402,F401
