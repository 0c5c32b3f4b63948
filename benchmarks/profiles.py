"""Input profiles: how far the clean inputs are from the reference ones, and what the reference costs.

    .venv/bin/python benchmarks/profiles.py [--repeats 3] [--json OUT]

Clips (synthetic, made with ffmpeg by tests/helpers/media.py, 320x240 testsrc2 + pink noise): 29.97 fps +
48 kHz stereo AAC, 25 fps + 44.1 kHz mono AAC, 24 fps 9.7 s, VFR, VP9/Vorbis webm.

1. Per backbone and clip: max |clean - reference| and mean |clean - reference| of `network_inputs`
   (the arrays each network receives), and for the visual backbones the PSNR of the clean raw frames
   against the reference (JPEG round trip) frames. Shapes that differ (CLAP pieces: 48,000 vs L // 10)
   are compared on the common prefix and reported.
2. Time of decode + preprocessing (`network_inputs`, no network) per profile, best of `--repeats`, and
   the ratio reference / clean (> 1: the reference profile is slower by that factor), measured in the
   same run on the same files.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import media  # noqa: E402

from avvp.extract import network_inputs  # noqa: E402
from avvp.extract.decode import decode_video  # noqa: E402

BACKBONES = ("resnet152", "r2plus1d", "clip", "vggish", "clap")
CLIP_OPTS = (("clip", (("model", "ViT-B-32"),)),)  # preprocessing is the same as ViT-L-14 at 224 px


def make_clips(d: Path) -> dict[str, Path]:
    kw = dict(size=(320, 240), pattern="testsrc2", audio_pattern="noise")
    return {
        "29.97fps_48k_stereo": media.make_clip(d / "ntsc.mp4", seconds=10, fps="30000/1001", sample_rate=48000, channels=2, **kw),
        "25fps_44.1k_mono": media.make_clip(d / "pal.mp4", seconds=10, fps=25, sample_rate=44100, channels=1, **kw),
        "24fps_9.7s": media.make_clip(d / "film.mp4", seconds=9.7, fps=24, sample_rate=44100, channels=2, **kw),
        "vfr": media.make_clip(d / "vfr.mp4", seconds=10, vfr=True, sample_rate=32000, size=(320, 240), audio_pattern="noise"),
        "webm": media.make_clip(d / "clip.webm", seconds=10, fps=30, sample_rate=48000, channels=2, **kw),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avvp_bench_profiles_") as tmp:
        clips = make_clips(Path(tmp))
        for b in BACKBONES:  # warm-up: imports, backbone construction
            network_inputs(clips["vfr"], b, backbone_options=CLIP_OPTS)
        rows = []
        for name, path in clips.items():
            ref_frames = decode_video(path, audio_rates=()).frames
            clean_frames = decode_video(path, audio_rates=(), profile="clean").frames
            frame_psnr = psnr(clean_frames, ref_frames)
            for b in BACKBONES:
                ref = network_inputs(path, b, backbone_options=CLIP_OPTS)
                clean = network_inputs(path, b, backbone_options=CLIP_OPTS, profile="clean")
                diffs = {}
                for key in ref:
                    x, y = ref[key], clean[key]
                    note = ""
                    if x.shape != y.shape:
                        note = f"shapes {x.shape} vs {y.shape}"
                        n = min(x.shape[-1], y.shape[-1])
                        x, y = x[..., :n], y[..., :n]
                    d = np.abs(x.astype(np.float64) - y.astype(np.float64))
                    diffs[key] = {"max": float(d.max()), "mean": float(d.mean()), "note": note}
                t_ref = best_time(lambda path=path, b=b: network_inputs(path, b, backbone_options=CLIP_OPTS), args.repeats)
                t_clean = best_time(lambda path=path, b=b: network_inputs(path, b, backbone_options=CLIP_OPTS, profile="clean"),
                                    args.repeats)
                row = {"clip": name, "backbone": b, "diff": diffs, "seconds_reference": t_ref,
                       "seconds_clean": t_clean, "ratio_reference_over_clean": t_ref / t_clean}
                if b in ("resnet152", "r2plus1d", "clip"):
                    row["frames_psnr_db"] = frame_psnr
                rows.append(row)
                d0 = "; ".join(f"{k} max {v['max']:.4g} mean {v['mean']:.3g} {v['note']}".strip() for k, v in diffs.items())
                extra = f" frames PSNR {frame_psnr:.1f} dB" if "frames_psnr_db" in row else ""
                print(f"{name:20s} {b:9s} {d0}{extra} | time ref {t_ref:.3f}s clean {t_clean:.3f}s "
                      f"ratio {t_ref / t_clean:.2f}", flush=True)
    print("\nratio reference / clean (decode + preprocessing), mean over clips:")
    for b in BACKBONES:
        r = [row["ratio_reference_over_clean"] for row in rows if row["backbone"] == b]
        print(f"  {b:9s} {np.mean(r):.2f} (min {min(r):.2f}, max {max(r):.2f})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
