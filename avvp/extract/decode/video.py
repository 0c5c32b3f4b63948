"""What to decode and what comes out: `DecodeOptions`, `DecodedVideo`, `DecodeError`, and the value sets
the options are checked against (audio rates, input profiles, resamplers).

The bottom of the decode package: plain data, no ffmpeg, no avvp imports, so every other decode module
and every backend in `avvp/extract/decoders/` can import it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

AUDIO_RATES = (16000, 48000)
STDERR_TAIL_CHARS = 1500
# Input profiles (docs/decoding.md): "reference" reproduces the official pipelines' network inputs bit
# for bit (JPEG round trip, moviepy's and librosa's audio, linspace over every frame count); "clean" is
# the lossless path (raw frames, soxr resampling, a time rule for short clips, exact window cuts).
PROFILES = ("reference", "clean")
DEFAULT_PROFILE = "reference"

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
