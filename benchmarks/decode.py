"""Decoder benchmark: correctness first, then speed and memory, against the reference pipeline.

    .venv/bin/python benchmarks/decode.py [--reps 5] [--long-seconds 600] [--out results.json]

1. Correctness: on 10 s clips (25/29.97/30/24/60/5 fps, VFR, VP9 webm, mkv, MJPEG avi, mov) each
   backend's 80 frames are compared with the reference frame set, `ffmpeg -i v -r 8 %06d.png` +
   linspace (PNG = lossless, so "identical" means pixel for pixel).
2. Speed: clips/s on a 10 s 640x360 h264+AAC clip, video only and video + 16/48 kHz audio, runs of
   the backends interleaved so that they share the machine's load; the median time per clip is used.
   The reference pipeline is run the same way: `ffmpeg -i v -r 8 dir/%06d.jpg`, then the 80
   linspace-picked JPEGs loaded with PIL (what the AVVP feature scripts do before their models).
3. Memory: peak RSS of a fresh process (Python side, and the largest ffmpeg child) decoding the
   first window of a long 640x360 video, and iterating all its windows.

Prints one table (backend × frames-identical × clips/s × peak RSS) with ratios to the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import media  # noqa: E402
from avvp.extract.decode import DECODERS, DecodeError, decode_video  # noqa: E402

CORRECTNESS_CLIPS = {
    "25fps.mp4": dict(fps=25), "29.97fps.mp4": dict(fps="30000/1001"), "30fps.mp4": dict(fps=30),
    "24fps.mp4": dict(fps=24), "60fps.mp4": dict(fps=60), "5fps.mp4": dict(fps=5),
    "vfr.mp4": dict(vfr=True), "vfr.webm": dict(vfr=True), "vp9.webm": dict(fps=25),
    "h264.mkv": dict(fps=25), "mjpeg.avi": dict(fps=25), "h264.mov": dict(fps=30),
}


def reference_pipeline(path: Path, workdir: Path) -> np.ndarray:
    """ffmpeg -r 8 → JPEG files → PIL, with the AVVP linspace selection."""
    from PIL import Image

    out = Path(tempfile.mkdtemp(dir=workdir))
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-r", "8",
                    str(out / "%06d.jpg")], check=True)
    files = sorted(out.iterdir())
    idx = np.round(np.linspace(0, len(files) - 1, 80)).astype(int)
    frames = np.stack([np.asarray(Image.open(files[i]).convert("RGB")) for i in idx])
    for f in files:
        f.unlink()
    out.rmdir()
    return frames


def check_correctness(workdir: Path) -> dict:
    results: dict = {b: {} for b in ["reference(jpeg)", *DECODERS.names()]}
    for name, kw in CORRECTNESS_CLIPS.items():
        path = media.make_clip(workdir / f"c_{name}", seconds=10, **kw)
        ref = media.reference_frames_png(path)
        expected = ref[media.reference_indices(len(ref))]
        jpeg = reference_pipeline(path, workdir)
        results["reference(jpeg)"][name] = f"N={len(ref)}, JPEG mean |diff| {np.abs(jpeg.astype(int) - expected).mean():.2f}"
        for backend in DECODERS.names():
            try:
                dec = decode_video(path, decoder=backend)
                ok = dec.num_fps_frames == len(ref) and np.array_equal(dec.frames, expected)
                results[backend][name] = "identical" if ok else f"DIFFERENT (N={dec.num_fps_frames} vs {len(ref)})"
            except DecodeError as e:
                results[backend][name] = "ERROR " + str(e).splitlines()[0][:80]
    return results


def time_speed(path: Path, workdir: Path, reps: int) -> dict:
    runs = {
        "reference(jpeg)": lambda: reference_pipeline(path, workdir),
        **{f"{b}": (lambda b=b: decode_video(path, decoder=b, audio_rates=())) for b in DECODERS.names()},
        **{f"{b}+audio": (lambda b=b: decode_video(path, decoder=b)) for b in DECODERS.names()},
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up (imports, page cache)
        fn()
    for _ in range(reps):
        for name, fn in runs.items():  # interleaved: every backend sees the same load
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


MEMORY_SNIPPET = r"""
import json, os, sys, threading, time
sys.path.insert(0, {root!r})
from avvp.extract.decode import decode_video, iter_windows

# Peak RSS = VmHWM (per process image). ru_maxrss is not used: Linux carries the RSS a process had at
# fork into its maxrss, so a process started from a big parent would report the parent's size.
def hwm_kb(pid="self"):
    with open(f"/proc/{{pid}}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0

# ffmpeg children: poll their VmHWM while they run
child_peak_kb, stop = [0], threading.Event()
def poll():
    me = str(os.getpid())
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{{pid}}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] != me:
                        continue
                child_peak_kb[0] = max(child_peak_kb[0], hwm_kb(pid))
            except (OSError, IndexError):
                pass
        time.sleep(0.02)
threading.Thread(target=poll, daemon=True).start()

mode, backend, path = sys.argv[1:4]
if mode == "first":
    d = decode_video(path, decoder=backend)
    n = 1
else:
    n = sum(1 for _ in iter_windows(path, decoder=backend))
stop.set()
print(json.dumps({{"windows": n, "self_mb": hwm_kb() / 1024,
                  "child_mb": child_peak_kb[0] / 1024}}))
"""


def measure_memory(long_path: Path) -> dict:
    code = MEMORY_SNIPPET.format(root=str(ROOT))
    out = {}
    for backend in DECODERS.names():
        for mode in ("first", "all"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code, mode, backend, str(long_path)],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                out[(backend, mode)] = {"error": proc.stderr[-300:]}
                continue
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec["seconds"] = seconds
            out[(backend, mode)] = rec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="avvp_bench_") as tmp:
        workdir = Path(tmp)
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
        print(subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0])

        correctness = check_correctness(workdir)
        print("\n== correctness: 80 frames vs `ffmpeg -r 8` PNG reference + linspace ==")
        for backend, per_clip in correctness.items():
            print(f"{backend}:")
            for clip, verdict in per_clip.items():
                print(f"    {clip:14s} {verdict}")

        speed_clip = media.make_clip(workdir / "speed_640x360.mp4", seconds=10, fps=25, size=(640, 360))
        speed = time_speed(speed_clip, workdir, args.reps)

        t0 = time.perf_counter()
        long_clip = media.make_clip(workdir / "long_640x360.mp4", seconds=args.long_seconds, fps=25, size=(640, 360))
        print(f"\n(long clip {args.long_seconds:.0f} s made in {time.perf_counter() - t0:.1f} s)")
        memory = measure_memory(long_clip)

        ref_t = speed["reference(jpeg)"]
        print(f"\n== backends (speed: 10 s 640x360 h264, median of {args.reps}; memory: {args.long_seconds:.0f} s 640x360) ==")
        header = (f"{'backend':16s} {'frames identical':>17s} {'clips/s video':>14s} {'x ref':>6s} {'clips/s +audio':>15s}"
                  f" {'RSS first win MB (py/ffmpeg)':>29s} {'RSS all wins MB (py/ffmpeg)':>28s} {'all wins s':>10s}")
        print(header)
        print("-" * len(header))
        total = len(CORRECTNESS_CLIPS)
        print(f"{'reference(jpeg)':16s} {'N equal, JPEG':>17s} {1 / ref_t:14.2f} {1.0:6.2f} {'-':>15s} {'-':>29s} {'-':>28s} {'-':>10s}")
        rows = {}
        for b in DECODERS.names():
            ident = sum(v == "identical" for v in correctness[b].values())
            m1, ma = memory[(b, "first")], memory[(b, "all")]
            mem1 = f"{m1['self_mb']:.0f}/{m1['child_mb']:.0f}" if "self_mb" in m1 else "error"
            mema = f"{ma['self_mb']:.0f}/{ma['child_mb']:.0f}" if "self_mb" in ma else "error"
            secs = f"{ma['seconds']:.1f}" if "seconds" in ma else "-"
            print(f"{b:16s} {f'{ident}/{total}':>17s} {1 / speed[b]:14.2f} {ref_t / speed[b]:6.2f}"
                  f" {1 / speed[b + '+audio']:15.2f} {mem1:>29s} {mema:>28s} {secs:>10s}")
            rows[b] = dict(identical=ident, total=total, clips_per_s_video=1 / speed[b],
                           ratio_vs_reference=ref_t / speed[b], clips_per_s_with_audio=1 / speed[b + "+audio"],
                           memory_first=m1, memory_all=ma)
        if args.out:
            args.out.write_text(json.dumps(dict(correctness=correctness, seconds_per_clip=speed, backends=rows,
                                                reference_clips_per_s=1 / ref_t), indent=2, default=str))


if __name__ == "__main__":
    main()
