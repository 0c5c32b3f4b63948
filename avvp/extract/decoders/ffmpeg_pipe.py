"""The ffmpeg backend: the reference command itself, piped into memory.

One ffmpeg process per window opens the file twice: `-ss start -t window -i file` for the video,
written as `-r 8 -f rawvideo -pix_fmt rgb24` to stdout (the output option `-r 8` is what the AVVP
script uses, so the frame set is ffmpeg's own; `-vf fps=8` selects different frames, see
docs/decoding.md), and the same window widened by `AUDIO_MARGIN` on both sides for the audio, one
`-f f32le` output per requested rate on its own pipe, cut to the window afterwards. Nothing touches
the disk. Commands are built with ffmpeg-python; subprocess runs them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np

from avvp.extract.decode.backend import DECODERS, Decoder
from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.process import audio_filter_args, ffmpeg_binary, ffmpeg_input_path, run_ffmpeg, to_mono
from avvp.extract.decode.rate import cfr_frame_sources, frame_times_of
from avvp.extract.decode.rules import (
    AudioSpan,
    check_decodable,
    compact_in_place,
    cut_audio_window,
    fit_audio,
    output_size,
    padded_seconds,
    select_fps_frames,
)
from avvp.extract.decode.video import DecodedVideo, DecodeError, DecodeOptions

GLOBAL_ARGS = ["-nostdin", "-hide_banner", "-loglevel", "error"]


def build_command(info: MediaInfo, options: DecodeOptions, audio_urls: list[str], *, video: bool) -> list[str]:
    """The ffmpeg command line: optional rawvideo on stdout, one f32le output per audio URL."""
    import ffmpeg  # ffmpeg-python

    path = ffmpeg_input_path(info.path)
    outputs = []
    if video:
        assert info.video is not None
        input_kwargs: dict[str, Any] = {"t": repr(float(options.window))}
        if options.start > 0:  # -ss only when needed: even -ss 0 inserts a trim that drops pts < 0
            input_kwargs["ss"] = repr(float(options.start))
        src = ffmpeg.input(path, **input_kwargs)
        vkw: dict[str, Any] = {"format": "rawvideo", "pix_fmt": "rgb24", "r": options.fps,
                               "frames:v": options.max_fps_frames}
        w, h = output_size(info.video.width, info.video.height, options.max_side)
        if (w, h) != (info.video.width, info.video.height):
            # -s (not -vf scale): a user filter graph would change ffmpeg's rate-conversion rule
            vkw["s"] = f"{w}x{h}"
        outputs.append(ffmpeg.output(src[str(info.video.index)], "pipe:1", **vkw))
    if audio_urls:
        # the same file opened a second time, over the audio span (window plus margins)
        span = AudioSpan.for_window(options)
        akw: dict[str, Any] = {"t": repr(float(span.duration))}
        if span.seek > 0:
            akw["ss"] = repr(float(span.seek))
        asrc = ffmpeg.input(path, **akw)
    for url, rate in zip(audio_urls, options.audio_rates):
        assert info.audio is not None
        outputs.append(ffmpeg.output(asrc[str(info.audio.index)], url, format="f32le",
                                     acodec="pcm_f32le", **audio_filter_args(options, rate)))
    args = ffmpeg.merge_outputs(*outputs).compile(cmd=ffmpeg_binary())
    return [args[0], *GLOBAL_ARGS, *args[1:]]


class _FrameSink:
    """Reads rgb24 frames from a pipe straight into a growing (n, H, W, 3) buffer."""

    def __init__(self, height: int, width: int, capacity: int):
        self.frame_bytes = height * width * 3
        self.buf = np.empty((capacity, height, width, 3), np.uint8)
        self.count = 0
        self.leftover = 0

    def __call__(self, pipe: BinaryIO) -> None:
        while True:
            if self.count == len(self.buf):
                grown = np.empty((2 * len(self.buf), *self.buf.shape[1:]), np.uint8)
                grown[: self.count] = self.buf
                self.buf = grown
            view = memoryview(self.buf[self.count].reshape(-1))
            got = 0
            while got < self.frame_bytes:
                n = pipe.readinto(view[got:])
                if not n:
                    break
                got += n
            if got < self.frame_bytes:
                self.leftover = got
                return
            self.count += 1


def decode_audio(info: MediaInfo, options: DecodeOptions) -> tuple[dict[int, np.ndarray], str]:
    """Audio only, through ffmpeg: {rate: (window*rate,) float32 mono}; zeros without audio."""
    if info.audio is None or not options.audio_rates:
        return {r: fit_audio(np.zeros(0, np.float32), round(options.window * r)) for r in options.audio_rates}, ""
    pipes, stderr = run_ffmpeg(lambda urls: build_command(info, options, urls, video=False),
                               len(options.audio_rates), info.path)
    return finish_audio(info, options, pipes), stderr


def finish_audio(info: MediaInfo, options: DecodeOptions, pipes: list[bytes]) -> dict[int, np.ndarray]:
    assert info.audio is not None
    out = {}
    for raw, rate in zip(pipes, options.audio_rates):
        mono = to_mono(raw, info.audio.channels)
        out[rate] = cut_audio_window(info, options, mono, rate)
    return out


@dataclass(frozen=True, eq=False)
class SelectedFrames:
    """A backend's video result for one window: the chosen frames and where they come from."""

    frames: np.ndarray  # (num_frames, H, W, 3) uint8 RGB
    fps_indices: np.ndarray  # (num_frames,) int64 indices into the N fps frames
    num_fps_frames: int  # N
    rule: str  # the rule select_fps_frames used ("reference" or "time")
    times: np.ndarray  # (num_frames,) source timestamps in seconds


def assemble(
    info: MediaInfo, options: DecodeOptions, *, decoder: str, video: SelectedFrames | None = None,
    audio: Mapping[int, np.ndarray] | None = None, warnings: Sequence[str] = (),
) -> DecodedVideo:
    """Builds the DecodedVideo both backends return. Without `video` the frame fields are empty (rule
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
    )


def stderr_warnings(stderr: str, limit: int = 20) -> list[str]:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-limit:]


def reference_frame_times(info: MediaInfo, options: DecodeOptions, num_fps_frames: int,
                          fps_indices: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Source timestamps of the chosen frames from the rate-conversion port; if the port disagrees
    with ffmpeg on the frame count (an ffmpeg version with different rules), the 8 fps grid times
    are returned instead and a warning says so."""
    if info.timeline is not None and len(info.timeline.pts):
        sources = cfr_frame_sources(info, fps=options.fps, start=options.start,
                                    duration=options.window, max_frames=options.max_fps_frames)
        if len(sources) == num_fps_frames:
            return frame_times_of(info, sources[fps_indices])
        warnings.append(f"frame_times: rate-conversion port gives {len(sources)} frames, ffmpeg "
                        f"{num_fps_frames}; using grid times")
    else:
        warnings.append("frame_times: no packet timestamps; using grid times")
    return options.start + fps_indices.astype(np.float64) / options.fps


@DECODERS.register("ffmpeg")
class FfmpegPipeDecoder(Decoder):
    name = "ffmpeg"

    def decode(self, info: MediaInfo, options: DecodeOptions) -> DecodedVideo:
        check_decodable(info, options)
        if options.profile == "reference":
            from avvp.extract.decoders.ffmpeg_reference import decode_reference

            return decode_reference(info, options, self.name)
        want_video = options.video
        audio_rates = options.audio_rates if info.audio is not None else ()
        if not want_video and not audio_rates:  # audio-only request, file without audio: zeros, no ffmpeg run
            return assemble(info, options, decoder=self.name)
        run_opts = dataclasses.replace(options, audio_rates=audio_rates) if audio_rates != options.audio_rates else options
        if not want_video:
            audio, stderr = decode_audio(info, run_opts)
            return assemble(info, options, decoder=self.name, audio=audio, warnings=stderr_warnings(stderr))

        assert info.video is not None
        w, h = output_size(info.video.width, info.video.height, options.max_side)
        sink = _FrameSink(h, w, capacity=options.num_frames + 4)
        pipes, stderr = run_ffmpeg(lambda urls: build_command(info, run_opts, urls, video=True),
                                   len(audio_rates), info.path, stdout_consumer=sink)
        warnings = stderr_warnings(stderr)
        if sink.leftover:
            raise DecodeError(f"ffmpeg wrote a partial frame ({sink.leftover} of {sink.frame_bytes} "
                              f"bytes); frame size {w}x{h} does not match the stream", path=info.path,
                              stderr=stderr)
        n = sink.count
        if n == 0:
            raise DecodeError(f"no video frames decoded in [{options.start}, {options.start + options.window}) s",
                              path=info.path, stderr=stderr)
        fps_indices, rule = select_fps_frames(n, options.num_frames)
        frames = compact_in_place(sink.buf, fps_indices)
        times = reference_frame_times(info, options, n, fps_indices, warnings)
        audio = finish_audio(info, run_opts, pipes) if audio_rates else {}
        video = SelectedFrames(frames=frames, fps_indices=fps_indices, num_fps_frames=n, rule=rule, times=times)
        return assemble(info, options, decoder=self.name, video=video, audio=audio, warnings=warnings)
