"""In-process decoding (PyAV) against the ffmpeg subprocess path: same frames? same samples? how fast?

    .venv/bin/python benchmarks/inprocess_decode.py [--clips 4] [--size 640x360]

PyAV (`pip install av`; not a project dependency: this script says so and stops when it is missing)
bundles its own FFmpeg libraries, which need not be the system ffmpeg that `avvp.extract.decode` runs.
On the same generated clips (10 s h264 + stereo 44.1 kHz AAC, tests/helpers/media.py) it measures:

1. frames: `decode_video(video=True, audio_rates=())` (ffmpeg `-r 8` rawvideo rgb24 pipe) vs PyAV
   decoding every frame in-process and converting the frames whose source pts equal our `frame_times`
   (the rate-conversion port picks them) to rgb24 with `VideoFrame.to_ndarray`; max |diff| and the share
   of differing pixels; clips/s of each.
2. samples at the native rate: `ffmpeg -vn -f f32le` (all channels) vs PyAV's decoded AAC frames
   (float planar); max |diff|.
3. samples at 16 kHz: our `audio_16k` (ffmpeg `aformat=s16,aresample=16000:resampler=soxr`, mean of
   channels) vs PyAV's filter graph with the same filter string; max |diff| (or "filter unavailable").

Adoption rule (issue 13): an in-process decoder is adopted only where it reproduces the same frames and
samples bit for bit; the result and decision are written up in docs/decoding.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pyav_frames(path: Path, times: np.ndarray) -> np.ndarray:
    """The frames whose source pts (s) are `times` (repeats allowed), decoded in-process, rgb24."""
    import av

    wanted = {round(float(t), 6) for t in times}
    got: dict[float, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            t = round(float(frame.pts * stream.time_base), 6)
            if t in wanted and t not in got:
                got[t] = frame.to_ndarray(format="rgb24")
    return np.stack([got[round(float(t), 6)] for t in times])


def pyav_audio_native(path: Path) -> np.ndarray:
    """(samples, channels) float32 of the first audio stream as decoded (AAC: fltp)."""
    import av

    parts = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts.append(frame.to_ndarray().T)  # planar (C, S) -> (S, C)
    return np.concatenate(parts).astype(np.float32)


def pyav_audio_filtered(path: Path, filt: str) -> np.ndarray | str:
    """Mono mean of the first audio stream through an FFmpeg filter string, in-process; or the error."""
    import av
    import av.filter

    out = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            graph = av.filter.Graph()
            src = graph.add_abuffer(template=stream)
            chain = [src]
            for part in filt.split(","):
                name, _, arg = part.partition("=")
                chain.append(graph.add(name, arg or None))
            chain.append(graph.add("aformat", "sample_fmts=flt"))
            sink = graph.add("abuffersink")
            chain.append(sink)
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            for frame in container.decode(stream):
                graph.push(frame)
                while True:
                    try:
                        out.append(graph.pull().to_ndarray())
                    except (av.error.BlockingIOError, av.error.EOFError):
                        break
            graph.push(None)
            while True:
                try:
                    out.append(graph.pull().to_ndarray())
                except (av.error.BlockingIOError, av.error.EOFError):
                    break
    except Exception as err:  # noqa: BLE001 - reported, not fatal
        return f"{type(err).__name__}: {err}"
    x = np.concatenate(out, axis=-1)  # packed flt: (1, S*C)
    channels = stream.codec_context.channels
    return x.reshape(-1, channels).mean(axis=1).astype(np.float32)


def ffmpeg_audio_native(path: Path, channels: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-vn", "-f", "f32le",
                          "-acodec", "pcm_f32le", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, channels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--size", default="640x360")
    args = ap.parse_args()
    try:
        import av
    except ImportError:
        print("PyAV is not installed (pip install av): nothing to measure")
        return
    from tests.helpers import media

    from avvp.extract.decode import decode_video

    w, h = (int(v) for v in args.size.split("x"))
    print(f"PyAV {av.__version__}, its libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}; "
          + subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0])
    with tempfile.TemporaryDirectory() as tmp:
        clips = [media.make_clip(Path(tmp) / f"c{i}.mp4", seconds=10, fps=25, size=(w, h), channels=2,
                                 audio_pattern=("noise", "sine")[i % 2], pattern=("testsrc2", "testsrc")[i % 2])
                 for i in range(args.clips)]
        t_ours = t_av = 0.0
        frame_diff, frame_share, native_diff, r16_diff = [], [], [], []
        for p in clips:
            t0 = time.perf_counter()
            d = decode_video(p, video=True, audio_rates=())
            t_ours += time.perf_counter() - t0
            t0 = time.perf_counter()
            f = pyav_frames(p, d.frame_times)
            t_av += time.perf_counter() - t0
            diff = np.abs(f.astype(np.int16) - d.frames.astype(np.int16))
            frame_diff.append(int(diff.max()))
            frame_share.append(float((diff > 0).mean()))
            a_av = pyav_audio_native(p)
            a_ff = ffmpeg_audio_native(p, a_av.shape[1])
            n = min(len(a_av), len(a_ff))
            native_diff.append((float(np.abs(a_av[:n] - a_ff[:n]).max()), len(a_av), len(a_ff)))
            ours16 = decode_video(p, video=False, audio_rates=(16000,)).audio_16k
            av16 = pyav_audio_filtered(p, "aformat=sample_fmts=s16,aresample=16000:resampler=soxr")
            if isinstance(av16, str):
                r16_diff.append(av16)
            else:
                m = min(len(av16), len(ours16))
                r16_diff.append(float(np.abs(av16[:m] - ours16[:m]).max()))
        n = len(clips)
        print(f"\nclips: {n} x 10 s {w}x{h} h264 + stereo AAC 44.1 kHz")
        print("| measure | ffmpeg subprocess (ours) | PyAV in-process |")
        print("|---|---|---|")
        print(f"| video decode, 80 frames rgb24, clips/s | {n / t_ours:.2f} | {n / t_av:.2f} |")
        print(f"| frames: max abs diff per clip / share of differing pixels | - | {frame_diff} / "
              f"{[f'{s:.4f}' for s in frame_share]} |")
        print(f"| native-rate samples: max abs diff (n PyAV, n ffmpeg) | - | {native_diff} |")
        print(f"| 16 kHz soxr samples: max abs diff (first 10 s) | - | {r16_diff} |")
        exact = all(x == 0 for x in frame_diff) and all(x[0] == 0 for x in native_diff) \
            and all(isinstance(x, float) and x == 0 for x in r16_diff)
        print(f"\nbit-identical frames and samples: {'YES' if exact else 'NO'} -> "
              f"{'candidate for an opt-in backend' if exact else 'keep the ffmpeg subprocess path'}")


if __name__ == "__main__":
    main()
