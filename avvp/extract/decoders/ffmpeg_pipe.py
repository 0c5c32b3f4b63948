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
from typing import Any, BinaryIO

import numpy as np

from avvp.extract.decode.backend import DECODERS, Decoder
from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.process import (
    FFMPEG_GLOBAL_ARGS,
    audio_filter_args,
    ffmpeg_binary,
    ffmpeg_input_path,
    run_ffmpeg,
    to_mono,
)
from avvp.extract.decode.result import SelectedFrames, assemble, port_frame_times, stderr_warnings
from avvp.extract.decode.rules import (
    AudioSpan,
    check_decodable,
    compact_in_place,
    cut_audio_window,
    output_size,
    select_fps_frames,
)
from avvp.extract.decode.video import DecodedVideo, DecodeError, DecodeOptions


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
    return [args[0], *FFMPEG_GLOBAL_ARGS, *args[1:]]


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
    """Audio only, through ffmpeg: {rate: (window*rate,) float32 mono}; {} without audio (assemble()
    gives the silence)."""
    if info.audio is None or not options.audio_rates:
        return {}, ""
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
        times = port_frame_times(info, options, n, fps_indices, warnings, duration=options.window,
                                 max_frames=options.max_fps_frames)
        audio = finish_audio(info, run_opts, pipes) if audio_rates else {}
        video = SelectedFrames(frames=frames, fps_indices=fps_indices, num_fps_frames=n, rule=rule, times=times)
        return assemble(info, options, decoder=self.name, video=video, audio=audio, warnings=warnings)
