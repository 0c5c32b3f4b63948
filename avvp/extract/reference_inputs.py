"""Ports of the official input pipelines: what the AVVP scripts and VALOR fed their networks, from bytes.

The `reference` profile (docs/decoding.md) reproduces, from the outputs of ONE ffmpeg process per
window, the inputs that the official tools computed from files on disk:

* `split_jpeg_stream` + `decode_jpegs`: the frames of `ffmpeg -i V -r 8 dir/%06d.jpg` (AVVP
  `scripts/extract_frames.py`), taken from `-f image2pipe -c:v mjpeg` (the same mjpeg encoder with the
  same defaults, so the same JPEG bytes, in memory) and decoded by PIL exactly as the feature scripts'
  `Image.open(path).convert('RGB')` (PIL is the reference decoder, so it is what decodes them here).
* `moviepy_wav`: moviepy 1.0.3's `VideoFileClip(v).audio.write_audiofile(wav, fps=16000)` (AVVP
  `scripts/extract_audio.py`), ported operation by operation from its source (`FFMPEG_AudioReader`,
  `AudioClip.iter_chunks`, `to_soundarray`): the reader decodes `ffmpeg -i V -vn -f s16le -ar 44100
  -ac 2`; output sample k is reader sample `round(44100 * (k / 16000))` (no anti-alias filter), read
  through moviepy's 200000-sample buffer, whose refill keeps one sample too many (`conserved =
  current_f_end - new_bufferstart + 1`): after each refill the picked samples lag by one more 44.1 kHz
  sample, and the port does the same. Values are clipped to ±0.99, scaled by 32768 and truncated to
  int16, for `int(16000 * duration)` samples, where duration is the container duration as ffmpeg prints
  it (centiseconds, which moviepy parses from the `Duration:` line). The wav is stereo; VGGish's wav
  reader averages the channels (`vggish_wav_mono`).
* `librosa_load`: VALOR's `librosa.load(v, sr=48000)`: audioread's `ffmpeg -i V -f s16le -` (native
  rate and channels), int16 / 32768 as float32, the channel mean (`librosa.to_mono`), then
  `soxr.resample(..., quality="soxr_hq")` and `fix_length` to `ceil(n * 48000 / sr)`, as librosa 0.11
  does. The whole decoded stream is kept (a 10 s AAC clip gives 480,375 samples, not 480,000).

Nothing here runs moviepy or librosa; the tests run them and compare.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np

# moviepy 1.0.3 defaults on the AVVP call path
MOVIEPY_READER_FPS = 44100  # VideoFileClip(audio_fps=44100)
MOVIEPY_BUFFERSIZE = 200000  # VideoFileClip(audio_buffersize=200000)
MOVIEPY_CHUNKSIZE = 2000  # write_audiofile(buffersize=2000)
MOVIEPY_OUT_FPS = 16000  # extract_audio.py: write_audiofile(fps=16000)
MOVIEPY_NBYTES = 2
LIBROSA_SR = 48000  # VALOR: librosa.load(path, sr=48000)
LIBROSA_RES_TYPE = "soxr_hq"


class ReferenceUnsupported(RuntimeError):
    """The official tool would take a path this port does not reproduce (the message says which)."""


# ---------------------------------------------------------------------------------------------- JPEG
def split_jpeg_stream(data: bytes) -> list[bytes]:
    """The JPEG files of an mjpeg image2pipe stream, by walking the marker segments (a byte pair
    FF D9 can occur inside a quantisation table, so searching for it alone is not safe)."""
    out: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        if data[pos:pos + 2] != b"\xff\xd8":
            raise ValueError(f"mjpeg stream: no SOI marker at byte {pos}")
        i = pos + 2
        while True:
            if i + 2 > n or data[i] != 0xFF:
                raise ValueError(f"mjpeg stream: bad marker at byte {i}")
            marker = data[i + 1]
            if marker == 0xD9:  # EOI
                i += 2
                break
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
                i += 2
                continue
            if i + 4 > n:
                raise ValueError(f"mjpeg stream: truncated segment at byte {i}")
            length = (data[i + 2] << 8) | data[i + 3]
            i += 2 + length
            if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
                while True:
                    j = data.find(b"\xff", i)
                    if j < 0 or j + 1 >= n:
                        raise ValueError("mjpeg stream: truncated scan")
                    nxt = data[j + 1]
                    if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed byte or restart marker
                        i = j + 2
                        continue
                    i = j
                    break
        out.append(data[pos:i])
        pos = i
    return out


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """(H, W, 3) uint8: `Image.open(f).convert('RGB')`, the feature scripts' loader."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        return np.asarray(img.convert("RGB"))


def decode_jpegs(jpegs: Sequence[bytes], indices: np.ndarray) -> np.ndarray:
    """(len(indices), H, W, 3) uint8: the JPEGs at `indices`, each distinct one decoded once."""
    unique, inverse = np.unique(np.asarray(indices, np.int64), return_inverse=True)
    decoded = [decode_jpeg(jpegs[int(k)]) for k in unique]
    shapes = {d.shape for d in decoded}
    if len(shapes) != 1:
        raise ValueError(f"mjpeg stream: frames of different sizes {sorted(shapes)}")
    return np.stack(decoded)[inverse]


def linspace_indices(num_available: int, num: int) -> np.ndarray:
    """`np.round(np.linspace(0, N-1, num))`, the AVVP scripts' (num=80) and VALOR's (num=10) choice."""
    if num_available <= 0:
        raise ValueError("no frames to select from")
    return np.round(np.linspace(0, num_available - 1, num)).astype(np.int64)


# ---------------------------------------------------------------------------------------------- moviepy
def ffmpeg_printed_duration(duration_us: int) -> float:
    """The container duration as moviepy reads it: ffmpeg prints `Duration: HH:MM:SS.cc` (rounded to
    the nearest centisecond: +5000 µs, then truncated), moviepy's `cvsecs` sums the parts."""
    d = int(duration_us) + 5000
    secs, us = divmod(d, 1_000_000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    cs = (100 * us) // 1_000_000
    parts = [float(f"{hours:02d}"), float(f"{mins:02d}"), float(f"{secs:02d}.{cs:02d}")]
    return sum(mult * part for mult, part in zip((1, 60, 3600), reversed(parts)))


class _MoviepyReader:
    """moviepy 1.0.3 `FFMPEG_AudioReader` over an already decoded stream: the same buffer, position
    and index arithmetic; `stream` plays the role of the ffmpeg pipe (read sequentially)."""

    def __init__(self, stream: np.ndarray, duration: float, fps: int = MOVIEPY_READER_FPS,
                 buffersize: int = MOVIEPY_BUFFERSIZE, nbytes: int = MOVIEPY_NBYTES):
        self.stream = stream  # (n, 2) int16
        self.read_at = 0  # samples consumed from the pipe
        self.fps = fps
        self.nbytes = nbytes
        self.duration = duration
        self.nframes = int(self.fps * self.duration)
        self.buffersize = min(self.nframes + 1, buffersize)
        self.buffer: np.ndarray | None = None
        self.buffer_startframe = 1
        self.pos = np.round(self.fps * 0)  # initialize(): a numpy float, as in moviepy
        self.buffer_around(1)

    def read_chunk(self, chunksize) -> np.ndarray:
        chunksize = int(round(chunksize))
        rows = self.stream[self.read_at:self.read_at + chunksize]
        self.read_at += len(rows)
        result = (1.0 * rows.reshape(-1) / 2 ** (8 * self.nbytes - 1)).reshape((int(rows.size / 2), 2))
        self.pos = self.pos + chunksize
        return result

    def skip_chunk(self, chunksize) -> None:
        self.read_at += len(self.stream[self.read_at:self.read_at + int(chunksize)])
        self.pos = self.pos + chunksize

    def seek(self, pos) -> None:
        if (pos < self.pos) or (pos > (self.pos + 1000000)):
            raise ReferenceUnsupported(
                "moviepy would restart ffmpeg with -ss here (a backward or long seek of its audio reader); "
                "the port only follows sequential reads")
        elif pos > self.pos:
            self.skip_chunk(pos - self.pos)
        self.pos = pos

    def buffer_around(self, framenumber) -> None:
        new_bufferstart = max(0, framenumber - self.buffersize // 2)
        if self.buffer is not None:
            current_f_end = self.buffer_startframe + self.buffersize
            if new_bufferstart < current_f_end < new_bufferstart + self.buffersize:
                conserved = current_f_end - new_bufferstart + 1  # sic: one sample more than overlaps
                chunksize = self.buffersize - conserved
                array = self.read_chunk(chunksize)
                self.buffer = np.vstack([self.buffer[-conserved:], array])
            else:
                self.seek(new_bufferstart)
                self.buffer = self.read_chunk(self.buffersize)
        else:
            self.seek(new_bufferstart)
            self.buffer = self.read_chunk(self.buffersize)
        self.buffer_startframe = new_bufferstart

    def get_frame(self, tt: np.ndarray) -> np.ndarray:
        in_time = (tt >= 0) & (tt < self.duration)
        if not in_time.any():
            raise ReferenceUnsupported(f"moviepy: no audio at t={tt[0]:.2f}-{tt[-1]:.2f} s (it raises IOError)")
        frames = np.round((self.fps * tt)).astype(int)[in_time]
        fr_min, fr_max = frames.min(), frames.max()
        if not (0 <= (fr_min - self.buffer_startframe) < len(self.buffer)):
            self.buffer_around(fr_min)
        elif not (0 <= (fr_max - self.buffer_startframe) < len(self.buffer)):
            self.buffer_around(fr_max)
        result = np.zeros((len(tt), 2))
        indices = frames - self.buffer_startframe
        if len(self.buffer) < self.buffersize // 2:
            indices = indices - (self.buffersize // 2 - len(self.buffer) + 1)
        try:
            result[in_time] = self.buffer[indices]
        except IndexError:  # moviepy warns and repeats the last sample
            indices[indices >= len(self.buffer)] = len(self.buffer) - 1
            result[in_time] = self.buffer[indices]
        return result


def moviepy_wav(stream_44k_stereo: np.ndarray, duration: float, fps: int = MOVIEPY_OUT_FPS,
                chunksize: int = MOVIEPY_CHUNKSIZE) -> np.ndarray:
    """(int(fps * duration), 2) int16: the samples moviepy 1.0.3's `write_audiofile(wav, fps)` writes.

    `stream_44k_stereo` is the (n, 2) int16 output of `ffmpeg -i V -vn -f s16le -ar 44100 -ac 2`,
    `duration` the clip duration moviepy uses (`ffmpeg_printed_duration` for a file)."""
    stream = np.asarray(stream_44k_stereo, np.int16).reshape(-1, 2)
    if len(stream) == 0:
        raise ReferenceUnsupported("moviepy: the audio stream decodes to no samples")
    reader = _MoviepyReader(stream, duration)
    totalsize = int(fps * duration)
    nchunks = totalsize // chunksize + 1
    pospos = np.linspace(0, totalsize, nchunks + 1, endpoint=True, dtype=int)
    out = []
    for i in range(nchunks):
        tt = (1.0 / fps) * np.arange(pospos[i], pospos[i + 1])
        snd = reader.get_frame(tt)
        snd = np.maximum(-0.99, np.minimum(0.99, snd))
        out.append((2 ** (8 * MOVIEPY_NBYTES - 1) * snd).astype("int16"))
    return np.vstack(out)


def vggish_wav_mono(wav_int16: np.ndarray) -> np.ndarray:
    """VGGish's `wavfile_to_examples` input: int16 / 32768.0, channels averaged. Returned as float32,
    which holds the float64 mean of two int16 values exactly ((a + b) / 65536 needs 17 bits)."""
    samples = np.asarray(wav_int16).astype(np.float64) / 32768.0
    if samples.ndim > 1:
        samples = np.mean(samples, axis=1)
    return samples.astype(np.float32)


# ---------------------------------------------------------------------------------------------- librosa
def librosa_load(raw_s16: bytes, channels: int, sr_native: int, sr: int = LIBROSA_SR) -> np.ndarray:
    """(ceil(n * sr / sr_native),) float32: `librosa.load(path, sr=sr)` (librosa 0.11, audioread's
    ffmpeg backend) from the bytes of `ffmpeg -i V -f s16le -`."""
    import soxr

    usable = len(raw_s16) - len(raw_s16) % 2
    y = (1 / float(1 << 15)) * np.frombuffer(raw_s16[:usable], "<i2").astype(np.float32)
    if channels > 1:
        y = y[: len(y) - len(y) % channels].reshape((-1, channels)).T
        y = np.mean(y, axis=tuple(range(y.ndim - 1)))  # librosa.to_mono
    if sr_native == sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    if len(y) == 0:
        return np.zeros(0, np.float32)
    n_samples = int(np.ceil(y.shape[-1] * (float(sr) / sr_native)))
    y_hat = np.apply_along_axis(soxr.resample, axis=-1, arr=y, in_rate=sr_native, out_rate=sr,
                                quality=LIBROSA_RES_TYPE)
    y_hat = _fix_length(y_hat, n_samples)
    return np.asarray(y_hat, dtype=y.dtype)


def _fix_length(y: np.ndarray, size: int) -> np.ndarray:
    """librosa.util.fix_length on the last axis: zero-pad or trim to `size`."""
    n = y.shape[-1]
    if n > size:
        return y[..., :size]
    if n < size:
        return np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, size - n)], mode="constant")
    return y


__all__ = [
    "ReferenceUnsupported", "split_jpeg_stream", "decode_jpeg", "decode_jpegs", "linspace_indices",
    "ffmpeg_printed_duration", "moviepy_wav", "vggish_wav_mono", "librosa_load",
]
