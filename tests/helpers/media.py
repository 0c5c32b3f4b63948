"""Test media made on the fly with the ffmpeg binary (lavfi sources), plus reference frame dumps.

Every clip is synthetic, tiny (160x120 by default) and deterministic: `testsrc` draws a moving
gradient and a frame counter, so consecutive frames differ and an off-by-one frame selection is
visible in pixel comparisons. Audio is a sine (mono) or per-channel sines (multi-channel).

`reference_frames_png` / `reference_frame_count_jpeg` run the *reference* frame extraction of the
official AVVP scripts (`ffmpeg -i video -r 8 <dir>/%06d.jpg`), with PNG (lossless) or JPEG output, into
a temporary directory. They exist for tests only: the package itself never writes frames to disk.

Tests import these functions (`from tests.helpers import media`); the session-wide clips built on them are
the fixtures of `tests/helpers/media_fixtures.py`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"

# container -> (default video codec, default audio codec, extension)
_CONTAINERS = {
    "mp4": ("libx264", "aac", ".mp4"),
    "mkv": ("libx264", "aac", ".mkv"),
    "mov": ("libx264", "aac", ".mov"),
    "webm": ("libvpx-vp9", "libvorbis", ".webm"),
    "avi": ("mjpeg", "pcm_s16le", ".avi"),
    "m4a": (None, "aac", ".m4a"),
}

# Segments of a variable-frame-rate clip: (seconds, fps). Rates change at 3 s and 6.5 s, so an
# 8 fps grid crosses every regime; the total is scaled to the requested length.
_VFR_SEGMENTS = ((3.0, 30.0), (3.5, 12.0), (3.5, 25.0))


def _run(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _audio_source(seconds: float, sample_rate: int, channels: int, pattern: str) -> str:
    """A lavfi audio graph: one sine per channel (different frequencies), joined into `channels`."""
    if pattern == "noise":
        src = f"anoisesrc=d={seconds}:r={sample_rate}:c=pink:seed=7:a=0.3"
        if channels == 1:
            return src
        return f"{src},aformat=channel_layouts=mono,pan={channels}c|" + "|".join(
            f"c{i}=c0" for i in range(channels)
        )
    sines = [f"sine=f={220 * (i + 1)}:r={sample_rate}:d={seconds}" for i in range(channels)]
    if channels == 1:
        return sines[0]
    labels = "".join(f"[s{i}]" for i in range(channels))
    parts = ";".join(f"{s}[s{i}]" for i, s in enumerate(sines))
    return f"{parts};{labels}amerge=inputs={channels}"


def _video_source(seconds: float, fps: float, size: tuple[int, int], pattern: str, vfr: bool) -> str:
    w, h = size
    if not vfr:
        return f"{pattern}=size={w}x{h}:rate={fps}:duration={seconds}"
    # Variable frame rate: concatenate segments made at different rates. The concat filter keeps
    # each segment's timestamps, so the output has genuinely varying frame durations.
    total = sum(s for s, _ in _VFR_SEGMENTS)
    segs = [(s * seconds / total, r) for s, r in _VFR_SEGMENTS]
    parts = []
    for i, (d, r) in enumerate(segs):
        parts.append(
            f"{pattern}=size={w}x{h}:rate={r}:duration={d:.6f},settb=1/90000,format=yuv420p[v{i}]"
        )
    labels = "".join(f"[v{i}]" for i in range(len(segs)))
    return ";".join(parts) + f";{labels}concat=n={len(segs)}:v=1:a=0"


def make_clip(
    path: str | os.PathLike,
    *,
    seconds: float = 10,
    fps: float | str = 25,
    size: tuple[int, int] = (160, 120),
    audio: bool = True,
    video: bool = True,
    sample_rate: int = 44100,
    channels: int = 1,
    codec: str | None = None,
    audio_codec: str | None = None,
    container: str | None = None,
    vfr: bool = False,
    pattern: str = "testsrc",
    audio_pattern: str = "sine",
    gop: int | None = None,
    audio_delay: float = 0.0,
) -> Path:
    """Write a synthetic clip with the ffmpeg binary and return its path.

    `container` defaults to the path's extension; `codec`/`audio_codec` to the container's usual
    codecs (mp4/mkv/mov: h264+aac, webm: vp9+vorbis, avi: mjpeg+pcm, m4a: aac only). `fps` may be a
    string such as "30000/1001". `vfr=True` concatenates 30/12/25 fps segments (see `_VFR_SEGMENTS`).
    `audio_delay` makes the audio stream start that many seconds after the video.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container = container or path.suffix.lstrip(".") or "mp4"
    default_v, default_a, _ = _CONTAINERS[container]
    vcodec = codec or default_v
    acodec = audio_codec or default_a
    if container == "m4a":
        video = False
    if not video and not audio:
        raise ValueError("a clip needs audio or video")

    # lavfi *inputs* (not -filter_complex): through a simple filter graph ffmpeg sizes audio frames
    # for encoders with a fixed frame size (vorbis, opus), which -filter_complex does not do in 5.1.
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", _video_source(seconds, fps, size, pattern, vfr) + "[out0]"]
    if audio:
        if audio_delay:
            cmd += ["-itsoffset", str(audio_delay)]
        cmd += ["-f", "lavfi", "-i", _audio_source(seconds, sample_rate, channels, audio_pattern) + "[out0]"]
    cmd += ["-map", "0:0"] + (["-map", "1:0"] if video and audio else [])
    if video:
        cmd += ["-c:v", vcodec]
        if vcodec == "libx264":
            cmd += ["-pix_fmt", "yuv420p", "-preset", "ultrafast"]
        elif vcodec == "libvpx-vp9":
            cmd += ["-pix_fmt", "yuv420p", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"]
        elif vcodec == "mjpeg":
            cmd += ["-pix_fmt", "yuvj420p", "-q:v", "5"]
        if gop is not None:
            cmd += ["-g", str(gop)]
        if vfr:
            cmd += ["-fps_mode", "vfr"]
    if audio:
        cmd += ["-c:a", acodec, "-ac", str(channels)]
        # opus only runs at 48 kHz (and rejects filter-graph frames of arbitrary size unless resampled)
        cmd += ["-ar", "48000" if acodec == "libopus" else str(sample_rate)]
    cmd += [str(path)]
    _run(cmd)
    return path


def make_truncated(src: str | os.PathLike, dst: str | os.PathLike, keep_fraction: float = 0.3) -> Path:
    """Copy the first `keep_fraction` of the bytes of `src` (an mp4 with its moov atom at the end
    becomes unreadable; the classic half-downloaded file)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return dst


def with_rotation(src: str | os.PathLike, dst: str | os.PathLike, degrees: int) -> Path:
    """Copy `src` (mp4/mov) with display-rotation metadata; players and ffmpeg turn the frames."""
    _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy",
          "-metadata:s:v:0", f"rotate={degrees}", str(dst)])
    return Path(dst)


def lossless_cut(src: str | os.PathLike, dst: str | os.PathLike, start: float, seconds: float) -> Path:
    """`ffmpeg -ss start -i src -t seconds` re-encoded losslessly (x264 qp 0, same yuv420p pixels) +
    AAC into mp4: the way the AVVP clips were cut from full videos, without the quality loss."""
    _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-ss", str(start), "-i", str(src),
          "-t", str(seconds), "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast",
          "-pix_fmt", "yuv420p", "-c:a", "aac", str(dst)])
    return Path(dst)


def reference_frames_png(path: str | os.PathLike, fps: int = 8, size: str | None = None) -> np.ndarray:
    """The reference 8 fps frame set, losslessly: `ffmpeg -i path -r 8 %06d.png`, loaded as
    (N, H, W, 3) uint8 RGB. Same command as the AVVP script except the image format
    (`size` adds `-s WxH`)."""
    from PIL import Image

    extra = ["-s", size] if size else []
    with tempfile.TemporaryDirectory(prefix="avvp_ref_png_") as d:
        _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-r", str(fps), *extra,
              os.path.join(d, "%06d.png")])
        files = sorted(f for f in os.listdir(d) if f.endswith(".png"))
        return np.stack([np.asarray(Image.open(os.path.join(d, f)).convert("RGB")) for f in files])


def reference_frames_jpeg(path: str | os.PathLike, fps: int = 8) -> np.ndarray:
    """The literal reference: `ffmpeg -i path -r 8 %06d.jpg` (the AVVP `extract_frames.py`
    command), loaded with PIL as (N, H, W, 3) uint8 RGB."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="avvp_ref_jpg_") as d:
        _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-r", str(fps),
              os.path.join(d, "%06d.jpg")])
        files = sorted(f for f in os.listdir(d) if f.endswith(".jpg"))
        return np.stack([np.asarray(Image.open(os.path.join(d, f)).convert("RGB")) for f in files])


def reference_indices(num_available: int, num_frames: int = 80) -> np.ndarray:
    """`np.round(np.linspace(0, N-1, 80))` as the AVVP feature scripts compute it."""
    return np.round(np.linspace(0, num_available - 1, num_frames)).astype(np.int64)


def all_frames_rgb(path: str | os.PathLike) -> np.ndarray:
    """Every decoded frame at its own timestamp (no rate conversion), (M, H, W, 3) uint8 RGB, in
    presentation order: index i is the i-th frame of the file."""
    w, h = video_size(path)
    proc = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
    )
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)


def rate_converted_rgb(path: str | os.PathLike, pre_input: Sequence[str] = (), fps: int = 8) -> np.ndarray:
    """What `ffmpeg [pre_input] -i path -r fps` emits, as (N, H, W, 3) uint8 RGB from a pipe."""
    w, h = video_size(path)
    proc = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", *pre_input, "-i", str(path), "-map", "0:v:0",
         "-r", str(fps), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
    )
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)


def video_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of decoded frames, after ffmpeg's auto-rotation."""
    import json

    out = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height:stream_side_data=rotation", "-of", "json", str(path)],
        stdout=subprocess.PIPE, check=True, text=True,
    ).stdout
    stream = json.loads(out)["streams"][0]
    w, h = int(stream["width"]), int(stream["height"])
    rotation = next((int(sd["rotation"]) for sd in stream.get("side_data_list", []) if "rotation" in sd), 0)
    return (int(h), int(w)) if rotation % 180 else (int(w), int(h))
