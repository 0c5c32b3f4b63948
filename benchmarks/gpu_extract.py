"""GPU extraction benchmark: one command, sized for one device call of <= 8 minutes on one H200 + 16 cores.

    .venv/bin/python benchmarks/gpu_extract.py                      # on the GPU machine (defaults below)
    .venv/bin/python benchmarks/gpu_extract.py --device cpu --clips 2 --backbones vggish --skip-ray  # CPU smoke test

What it does, on the same generated clips (N LLP-like clips: 10 s, 640x360 25 fps h264 + stereo 44.1 kHz
AAC, distinct content, made in parallel with ffmpeg; not timed):
1. per backbone and for all five together, in fp32 and bf16: `run_local` (the CLI's local executor:
   batches of `--batch-size` videos, decoding prefetched one batch ahead, `--decode-workers` parallel
   ffmpeg decodes per batch) → clips/s, GPU utilisation while it ran, seconds per stage;
2. Ray: one GPU actor holding all requested backbones, decode tasks on all CPU cores (embedded cluster
   started before timing; actor start and model build are timed), per precision;
3. the reference method on the same GPU and a subset of the clips (`--reference-clips`): per video,
   `ffmpeg -r 8` JPEG files → PIL → torchvision transforms → fp32 forward of the same weights in torch's
   default layout, one video at a time, audio through wav files (benchmarks/extract.py's reference side);
4. the projected time for all 11,849 LLP clips at each measured rate, and the ratio to the reference.

Weights are RANDOM (seeded): pretrained weights cannot be downloaded on the benchmark machine; speed
does not depend on the values, and the bf16 vs fp32 cosine is reported on random weights only.
GPU utilisation: `nvidia-smi --query-gpu=utilization.gpu,memory.used` sampled every 200 ms (falls
back to `torch.cuda.utilization()`; "n/a" on CPU). Every measurement is printed as soon as it is done
(so a run cut by a time limit still reports), and `--json` is rewritten after each one. `--budget-s`
(default 420) skips the measurements that remain once the budget is spent (printed as skipped).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

ALL_BACKBONES = ("resnet152", "r2plus1d", "clip", "vggish", "clap")
LLP_CLIPS = 11849


def make_clips(workdir: Path, n: int, size: tuple[int, int], workers: int) -> list[Path]:
    from tests.helpers import media

    patterns = ("testsrc2", "testsrc", "mandelbrot", "smptebars")

    def one(i: int) -> Path:
        return media.make_clip(workdir / f"llp{i:04d}.mp4", seconds=10, fps=25, size=size, channels=2,
                               audio_pattern=("noise", "sine")[i % 2], pattern=patterns[i % len(patterns)])

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


class GpuMeter:
    """Mean / max GPU utilisation (%) and peak memory used (MiB) while a measurement runs."""

    def __init__(self, device: str):
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        self._thread = None
        self._stop = threading.Event()
        if not device.startswith("cuda"):
            return
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read_smi, daemon=True)
        else:
            self._thread = threading.Thread(target=self._poll_torch, daemon=True)
        self._thread.start()

    def _read_smi(self) -> None:
        for line in self.proc.stdout:
            try:
                util, mem = (float(x) for x in line.strip().split(",")[:2])
            except ValueError:
                continue
            self.samples.append((util, mem))

    def _poll_torch(self) -> None:
        import torch

        while not self._stop.wait(0.2):
            try:
                self.samples.append((float(torch.cuda.utilization()), torch.cuda.memory_allocated() / 2**20))
            except Exception:  # noqa: BLE001 - pynvml missing: no samples
                return

    def stop(self) -> dict:
        self._stop.set()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if not self.samples:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_peak_mib": None}
        util = np.array([u for u, _ in self.samples])
        return {"gpu_util_mean": float(util.mean()), "gpu_util_max": float(util.max()),
                "gpu_mem_peak_mib": float(max(m for _, m in self.samples))}


def jobs_for(clips):
    from avvp.pipeline.jobs import VideoJob

    return [VideoJob(id=p.stem, path=str(p)) for p in clips]


def cfg_for(names, device, precision, batch, decode_workers):
    from avvp.pipeline.core import ExtractionConfig

    return ExtractionConfig(backbones=tuple(names), weights="random", device=device, precision=precision,
                            batch_videos=batch, prefetch_batches=2, decode_workers=decode_workers)


def bench_local(clips, names, device, precision, batch, decode_workers, workdir) -> dict:
    import extract as ex  # benchmarks/extract.py: one backbone object per (name, precision) for the run

    from avvp.pipeline.local import run_local

    cfg = cfg_for(names, device, precision, batch, decode_workers)
    built = [ex.backbone(n, precision) for n in names]
    run_local(jobs_for(clips[:1]), cfg, str(workdir / f"warm_{time.monotonic_ns()}.h5"), progress=False,
              backbones=built)  # model build, first forward, cuDNN autotune: excluded
    out = workdir / f"local_{time.monotonic_ns()}.h5"
    meter = GpuMeter(device)
    t0 = time.perf_counter()
    summary = run_local(jobs_for(clips), cfg, str(out), progress=False, backbones=built)
    seconds = time.perf_counter() - t0
    row = dict(clips_per_s=len(clips) / seconds, seconds=seconds, done=summary.done, failed=summary.failed,
               stage_seconds={k: round(v, 2) for k, v in summary.stage_seconds.items()}, **meter.stop())
    row["store"] = str(out)
    return row


def bench_ray(clips, names, device, precision, batch, workdir) -> dict:
    from avvp.pipeline.executors import ExecutorOptions
    from avvp.pipeline.ray_executor import run_ray

    cfg = cfg_for(names, device, precision, batch, 1)
    gpus = 1.0 if device.startswith("cuda") else 0.0
    opts = ExecutorOptions(num_workers=1, gpus_per_worker=gpus, progress=False)
    meter = GpuMeter(device)
    t0 = time.perf_counter()
    summary = run_ray(jobs_for(clips), cfg, str(workdir / f"ray_{time.monotonic_ns()}.h5"), opts)
    seconds = time.perf_counter() - t0
    return dict(clips_per_s=len(clips) / seconds, seconds=seconds, done=summary.done, failed=summary.failed,
                note="actor start + model build timed", **meter.stop())


def bench_reference(clips, names, workdir) -> dict:
    import extract as ex

    outdir = Path(tempfile.mkdtemp(dir=workdir))
    ex.reference_video(clips[0], names, workdir, outdir)  # warm-up, excluded
    meter = GpuMeter(ex.DEVICE)
    t0 = time.perf_counter()
    for p in clips:
        ex.reference_video(p, names, workdir, outdir)
    seconds = time.perf_counter() - t0
    shutil.rmtree(outdir)
    return dict(clips_per_s=len(clips) / seconds, seconds=seconds, **meter.stop())


def min_cosine(a: str, b: str) -> dict:
    import extract as ex

    return ex.store_cosines(a, b)


def fmt(x, spec=".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (cpu: smoke test)")
    ap.add_argument("--clips", type=int, default=48, help="generated clips per measurement (default 48)")
    ap.add_argument("--reference-clips", type=int, default=8, help="clips for the reference method (default 8)")
    ap.add_argument("--backbones", default=",".join(ALL_BACKBONES))
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch-size", type=int, default=8, help="videos per forward (default 8)")
    ap.add_argument("--decode-workers", type=int, default=None, help="local: parallel decodes (default: CPU cores)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-single", action="store_true", help="only the all-backbones measurements")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip remaining measurements after this (default 420)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    t_all = time.perf_counter()

    import torch

    import extract as ex

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    for n in names:
        if n not in ALL_BACKBONES:
            ap.error(f"unknown backbone {n!r}; known: {', '.join(ALL_BACKBONES)}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no CUDA device (use --device cpu for the smoke test)")
    ex.DEVICE = args.device
    cores = len(os.sched_getaffinity(0))
    decode_workers = args.decode_workers or cores
    w, h = (int(v) for v in args.size.lower().split("x"))
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none (CPU run)"
    print(f"machine: {platform.platform()}, {cores} CPU cores, GPU {gpu}; torch {torch.__version__}")
    print(subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0])
    print("weights: RANDOM (seeded) - pretrained weights cannot be downloaded on this machine; speed does not "
          "depend on the weight values")
    print(f"clips: {args.clips} x 10 s {w}x{h} 25 fps h264 + stereo 44.1 kHz AAC; batch {args.batch_size}; "
          f"local: prefetch 2 batches, {decode_workers} parallel decodes; device {args.device}")

    results: dict = dict(config=vars(args) | {"json": str(args.json), "cores": cores, "gpu": gpu,
                                              "decode_workers": decode_workers})

    def save():
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))

    def over_budget(what: str) -> bool:
        spent = time.perf_counter() - t_all
        if spent > args.budget_s:
            print(f"SKIPPED (budget {args.budget_s:.0f} s spent, {spent:.0f} s): {what}", flush=True)
            results.setdefault("skipped", []).append(what)
            return True
        return False

    with tempfile.TemporaryDirectory(prefix="avvp_gpu_bench_") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        clips = make_clips(workdir, args.clips, (w, h), cores)
        print(f"generated {len(clips)} clips in {time.perf_counter() - t0:.0f} s (not timed below)", flush=True)

        local: dict = {}
        results["local"] = local
        combos = ([] if args.skip_single or len(names) == 1 else [(n,) for n in names]) + [tuple(names)]
        print("\n== local executor (run_local), clips/s ==")
        print("| backbones | precision | clips/s | GPU util mean / max % | GPU mem peak MiB | s: decode / waited / forward "
              "| LLP 11,849 clips projected |")
        print("|---|---|---|---|---|---|---|")
        for combo in combos:
            label = "+".join(combo) if len(combo) > 1 else combo[0]
            for prec in precisions:
                if over_budget(f"local {label} {prec}"):
                    continue
                r = bench_local(clips, combo, args.device, prec, args.batch_size, decode_workers, workdir)
                local[f"{label}/{prec}"] = r
                st = r["stage_seconds"]
                fwd = sum(v for k, v in st.items() if k in combo)
                print(f"| {label} | {prec} | {r['clips_per_s']:.2f} | {fmt(r['gpu_util_mean'], '.0f')} / "
                      f"{fmt(r['gpu_util_max'], '.0f')} | {fmt(r['gpu_mem_peak_mib'], '.0f')} | "
                      f"{st.get('decode', 0):.1f} / {st.get('decode_wait', 0):.1f} / {fwd:.1f} | "
                      f"{LLP_CLIPS / r['clips_per_s'] / 60:.1f} min |", flush=True)
                save()
            key32, key16 = f"{label}/fp32", f"{label}/bf16"
            if key32 in local and key16 in local:
                cos = min_cosine(local[key32]["store"], local[key16]["store"])
                local[f"{label}/bf16_cosine_min"] = cos
                print(f"|   {label}: bf16 vs fp32 min row cosine (random weights): "
                      + ", ".join(f"{k}={v:.5f}" for k, v in cos.items()) + " |", flush=True)

        if not args.skip_ray:
            print("\n== Ray: 1 model actor (1 GPU), decode tasks on all CPU cores, all backbones ==")
            try:
                from avvp.pipeline.executors import ExecutorOptions
                from avvp.pipeline.ray_executor import init_ray

                ray = init_ray(ExecutorOptions())  # cluster start-up: not timed
                results["ray"] = {}
                for prec in precisions:
                    if over_budget(f"ray {prec}"):
                        continue
                    r = bench_ray(clips, names, args.device, prec, args.batch_size, workdir)
                    results["ray"][prec] = r
                    print(f"| ray, {'+'.join(names)} | {prec} | {r['clips_per_s']:.2f} clips/s | GPU util mean "
                          f"{fmt(r['gpu_util_mean'], '.0f')} % | LLP projected {LLP_CLIPS / r['clips_per_s'] / 60:.1f} min "
                          f"| {r['note']} |", flush=True)
                    save()
                ray.shutdown()
            except Exception as err:  # noqa: BLE001 - report and go on
                results["ray_error"] = f"{type(err).__name__}: {err}"
                print(f"ray FAILED: {type(err).__name__}: {err}", flush=True)

        if not args.skip_reference and not over_budget("reference"):
            print(f"\n== reference method on the same device, {min(args.reference_clips, len(clips))} clips, "
                  "all backbones, one video at a time ==")
            ref = bench_reference(clips[: max(1, args.reference_clips)], names, workdir)
            results["reference"] = ref
            print(f"| reference, {'+'.join(names)} | fp32 | {ref['clips_per_s']:.3f} clips/s | GPU util mean "
                  f"{fmt(ref['gpu_util_mean'], '.0f')} % | LLP projected {LLP_CLIPS / ref['clips_per_s'] / 60:.1f} min |")
            label = "+".join(names) if len(names) > 1 else names[0]
            rows = [(f"local {p}", local.get(f"{label}/{p}")) for p in precisions]
            rows += [(f"ray {p}", results.get("ray", {}).get(p)) for p in precisions]
            print("\n| ours, all backbones | clips/s | × reference | LLP projected |")
            print("|---|---|---|---|")
            print(f"| reference | {ref['clips_per_s']:.3f} | 1.00 | {LLP_CLIPS / ref['clips_per_s'] / 60:.1f} min |")
            for what, r in rows:
                if r:
                    print(f"| {what} | {r['clips_per_s']:.2f} | {r['clips_per_s'] / ref['clips_per_s']:.2f} | "
                          f"{LLP_CLIPS / r['clips_per_s'] / 60:.1f} min |")
            save()

    results["wall_seconds"] = time.perf_counter() - t_all
    save()
    print(f"\ntotal wall time {results['wall_seconds']:.0f} s (target on one H100-class GPU: all five over "
          f"{LLP_CLIPS} clips in < 15 min = >= 13.2 clips/s)")


if __name__ == "__main__":
    main()
