"""Probing: container and stream facts from ffprobe (`probe` → `MediaInfo`), optionally with the video
packets' timestamps (`VideoTimeline`) that the rate-conversion port (rate.py) runs on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from avvp.extract.decode.process import ffmpeg_input_path, ffprobe_binary, require_binary
from avvp.extract.decode.video import DecodeError

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
    ffprobe = ffprobe_binary()
    require_binary(ffprobe)
    kwargs = {"show_entries": "packet=stream_index,pts,dts,duration"} if with_timeline else {}
    try:
        data = ffmpeg.probe(ffmpeg_input_path(spath), cmd=ffprobe, v="error", **kwargs)
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
