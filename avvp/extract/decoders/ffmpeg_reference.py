"""The ffmpeg backend's `reference` profile: one ffmpeg process per window, the official inputs out.

One input, up to three outputs, nothing on disk:

    ffmpeg [-ss start] [-t window] -i V
        -map 0:v -r 8 -f image2pipe -c:v mjpeg pipe:1            # = ffmpeg -i V -r 8 dir/%06d.jpg
        -map 0:a -f s16le -acodec pcm_s16le -ar 44100 -ac 2 pipe:A  # = moviepy's audio reader
        -map 0:a -f s16le -acodec pcm_s16le pipe:B                 # = audioread (librosa.load)

The JPEGs are decoded by PIL and selected with `round(linspace(0, N-1, 80))` for every N (the AVVP
scripts; no time rule), plus VALOR's 10 CLIP frames `round(linspace(0, N-1, 10))` over all N. The
16 kHz track is moviepy's `write_audiofile(fps=16000)` output averaged over its two channels (what
VGGish reads); the 48 kHz track is `librosa.load(sr=48000)`, whole (see `avvp.extract.reference_inputs`).

Windows: the official tools read whole files. A window that reaches the end of the file (start +
window >= duration - 1/fps, the same rule by which `num_windows` stops) therefore runs to the end of
the file with no `-t`, so a 10 s LLP clip (container 10.0-10.1 s) is processed exactly as the file; a
window that ends before the file does is cut with `-ss/-t` and processed as if the cut were the file
(moviepy's duration is then the window length).

The official scripts never cut windows, so a long file's partial last window (start > 0, less than a
window of content left) has no official counterpart; it is padded as in the clean profile (time rule
for the frames, zeros after the audio) so that segment t stays [start + t, start + t + 1) on a parse
timeline. A file shorter than the window (start = 0) is processed as the official scripts process it.
"""
from __future__ import annotations

import numpy as np

from avvp.extract import reference_inputs as ref
from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.process import FFMPEG_GLOBAL_ARGS, ffmpeg_binary, ffmpeg_input_path, run_ffmpeg
from avvp.extract.decode.result import SelectedFrames, assemble, port_frame_times, stderr_warnings
from avvp.extract.decode.rules import fit_audio, select_fps_frames
from avvp.extract.decode.video import DecodedVideo, DecodeError, DecodeOptions

NUM_SEGMENT_FRAMES = 10  # VALOR: one CLIP frame per 1 s segment


def reaches_end(info: MediaInfo, options: DecodeOptions) -> bool:
    """Whether the window is the file's last one (then it runs to the end of the file, as the
    official tools read files): start + window >= duration - one frame period."""
    return options.start + options.window >= info.duration - 1.0 / options.fps - 1e-9


def padded_tail(info: MediaInfo, options: DecodeOptions) -> bool:
    """A long file's partial last window (see the module docstring): padded, not stretched."""
    return options.start > 0 and info.duration - options.start < options.window - 1.0 / options.fps


def moviepy_duration(info: MediaInfo, options: DecodeOptions) -> float:
    """The clip duration moviepy would use: the container duration as ffmpeg prints it for a window
    that runs to the end of the file, the window length for a cut."""
    if reaches_end(info, options):
        return ref.ffmpeg_printed_duration(int(round((info.duration - options.start) * 1_000_000)))
    return float(options.window)


def build_command(info: MediaInfo, options: DecodeOptions, urls: list[str], *, video: bool,
                  rates: tuple[int, ...]) -> list[str]:
    cmd = [ffmpeg_binary(), *FFMPEG_GLOBAL_ARGS]
    if options.start > 0:
        cmd += ["-ss", repr(float(options.start))]
    if not reaches_end(info, options):
        cmd += ["-t", repr(float(options.window))]
    cmd += ["-i", ffmpeg_input_path(info.path)]
    if video:
        assert info.video is not None
        cmd += ["-map", f"0:{info.video.index}", "-r", str(options.fps), "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"]
    for url, rate in zip(urls, rates):
        assert info.audio is not None
        cmd += ["-map", f"0:{info.audio.index}", "-f", "s16le", "-acodec", "pcm_s16le"]
        if rate == 16000:  # moviepy's reader: 44.1 kHz stereo, resampled by moviepy itself (below)
            cmd += ["-ar", str(ref.MOVIEPY_READER_FPS), "-ac", "2"]
        cmd.append(url)  # 48000: audioread's native-rate, native-channel int16 (librosa resamples)
    return cmd


def decode_reference(info: MediaInfo, options: DecodeOptions, decoder_name: str) -> DecodedVideo:
    """One window in the reference profile (the caller has run check_decodable)."""
    want_video = options.video
    rates = tuple(options.audio_rates) if info.audio is not None else ()
    warnings: list[str] = []
    video: SelectedFrames | None = None
    pipes: list[bytes] = []
    if want_video or rates:
        sink: dict[str, bytes] = {}

        def read_stdout(pipe) -> None:
            sink["jpeg"] = pipe.read()

        pipes, stderr = run_ffmpeg(lambda urls: build_command(info, options, urls, video=want_video, rates=rates),
                                   len(rates), info.path, stdout_consumer=read_stdout)
        warnings += stderr_warnings(stderr)
        if want_video:
            video = _select_frames(info, options, sink.get("jpeg", b""), stderr, warnings)
    audio: dict[int, np.ndarray] = {}
    for raw, rate in zip(pipes, rates):
        assert info.audio is not None
        if rate == 16000:
            stream = np.frombuffer(raw[: len(raw) - len(raw) % 4], np.int16).reshape(-1, 2)
            try:
                wav = ref.moviepy_wav(stream, moviepy_duration(info, options))
            except ref.ReferenceUnsupported as err:
                raise DecodeError(f"reference audio (moviepy): {err}", path=info.path) from None
            audio[rate] = ref.vggish_wav_mono(wav)
        else:
            audio[rate] = ref.librosa_load(raw, info.audio.channels, info.audio.sample_rate, rate)
    if padded_tail(info, options):
        audio = {rate: fit_audio(x, round(options.window * rate)) for rate, x in audio.items()}
    # no audio stream: assemble() gives silence of the window's length for every requested rate
    return assemble(info, options, decoder=decoder_name, video=video, audio=audio, warnings=warnings)


def _select_frames(info: MediaInfo, options: DecodeOptions, jpeg_stream: bytes, stderr: str,
                   warnings: list[str]) -> SelectedFrames:
    """The 80 frames and VALOR's 10 CLIP frames out of the window's JPEG stream, decoded by PIL."""
    try:
        jpegs = ref.split_jpeg_stream(jpeg_stream)
    except ValueError as err:
        raise DecodeError(str(err), path=info.path, stderr=stderr) from None
    n = len(jpegs)
    if n == 0:
        raise DecodeError(f"no video frames decoded in [{options.start}, {options.start + options.window}) s",
                          path=info.path, stderr=stderr)
    if padded_tail(info, options):
        fps_indices, rule = select_fps_frames(n, options.num_frames)
        seg_indices = fps_indices[ref.linspace_indices(options.num_frames, NUM_SEGMENT_FRAMES)]
    else:
        fps_indices, rule = ref.linspace_indices(n, options.num_frames), "reference"
        seg_indices = ref.linspace_indices(n, NUM_SEGMENT_FRAMES)
    both = ref.decode_jpegs(jpegs, np.concatenate([fps_indices, seg_indices]))
    # the port runs to the end of the file when the window does (no -t on the command line)
    duration = None if reaches_end(info, options) else options.window
    times = port_frame_times(info, options, n, fps_indices, warnings, duration=duration,
                             max_frames=max(n, options.max_fps_frames) + 16)
    return SelectedFrames(frames=both[:len(fps_indices)], fps_indices=fps_indices, num_fps_frames=n, rule=rule,
                          times=times, segment_frames=both[len(fps_indices):], segment_frame_indices=seg_indices)
