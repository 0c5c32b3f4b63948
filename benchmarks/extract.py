"""Extraction benchmark: our pipeline against the reference (JPEG dump) pipeline, as ratios.

    .venv/bin/python benchmarks/extract.py [--quick] [--clips N] [--backbones vggish,r2plus1d,clap]
        [--ray-backbones vggish,r2plus1d] [--threads T] [--skip-ray] [--skip-rss] [--json OUT]

Default: ~8 min on 2 cores (decode table for all five backbones; end to end vggish, r2plus1d, clap;
Ray on vggish+r2plus1d; memory 10 vs 100 clips). `--quick`: ~3 min. resnet152 and clip (ViT-L-14)
cost ~25 s per video each on 2 CPU cores: ask for them with `--backbones`.

Clips are synthetic, made with ffmpeg (tests/helpers/media.py): 10 s, 320x240, 25 fps h264 + stereo 44.1 kHz
AAC (pink noise), distinct files. Every number is a ratio OURS / REFERENCE measured in the same run:
> 1 means our pipeline processes more clips per second. The reference pipeline is what the AVVP/VALOR
scripts do, one video at a time: `ffmpeg -i v -r 8 dir/%06d.jpg`, indices `round(linspace(0, N-1, 80))`,
the JPEGs loaded with PIL and preprocessed with torchvision transforms on PIL images (audio:
`ffmpeg -i v -vn -ar RATE a.wav` on disk, read with soundfile, averaged to mono, then the frontend).

1. Decode + preprocess (no model forward), per backbone: reference (JPEG/wav on disk + PIL/torchvision
   transforms) vs our `decode_job` asked for all streams (video + 16 kHz + 48 kHz, what parse uses) and
   for only the streams that backbone reads (what the executors decode), each followed by the
   backbone's own preprocessing. The audio frontends (VGGish log-mel examples, CLAP pieces + log-mel) are the same
   code on both sides, so for audio backbones the ratio compares the decode paths only.
2. End to end on CPU with random weights, per backbone: `avvp.pipeline.local.run_local` (the CLI's
   local executor: batches of `--batch-size` videos, decoding prefetched one batch ahead, channels_last
   layouts, HDF5 store writes included) in fp32 and bf16 (`--precisions`), and fp32 without prefetch,
   vs the reference (frames/wav to disk → PIL → transforms → fp32 forward of the same weights in torch's
   default layout, one video at a time, features np.save'd). Also: bf16 ÷ fp32 speed, the minimum row
   cosine between the bf16 and the fp32 store, and where our fp32 run spent its time (decode, time the
   forward waited for decoding, forward).
3. Executors, for one backbone combination: local executor (warm backbones, and as the CLI calls it,
   building them), Ray with 1 and 2 model actors (`run_ray`, embedded cluster started beforehand and
   not timed; actor start-up and model build inside each run ARE timed), each vs the reference.
4. Peak memory for 10 vs 100 clips (tiny 160x120 clips), each run in a fresh child process: the child's
   own VmHWM (peak RSS of the Python process) and the peak of the summed VmRSS of the child's whole
   process tree (ffmpeg children; with Ray, also raylet/GCS/workers), sampled every 0.1 s. Flat = ratio
   ~1. (`ru_maxrss` is not used: Linux carries the RSS a process had at fork into its maxrss.)

Fairness: the same backbone object (same weights, same nn.Module) serves both sides; the same
torch thread count (`--threads`, also given to Ray actors by the executor); one warm-up run of each side
(model build, first forward, page cache) is excluded; reference and ours run back to back in the same
process. Other processes on the machine are not controlled; each measurement prints the CPU that
processes outside this benchmark used meanwhile ("other load", cores). Read ratios with it: with 2 torch
threads on 2 cores and one core busy elsewhere, torch's OpenMP pool stalls on every parallel op, which
slows the reference's many small per-frame PIL/torchvision ops far more than our batched ones (ratios
of 10x were seen that vanish on an idle machine); `--threads 1` is insensitive to that.

Reading: decode+preprocess and end-to-end ratios near 1 mean the pipeline costs what the reference costs;
the memory ratio (many clips / few clips) near 1 means in-flight work is bounded.
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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # laion_clap reaches the hub at import otherwise
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALL_BACKBONES = ("resnet152", "r2plus1d", "clip", "vggish", "clap")
DEFAULT_E2E = ("vggish", "r2plus1d", "clap")
# measured s/video on this project's 2-core CPU box with random weights (forward dominated)
COST_HINT = {"resnet152": 27, "clip": 26, "r2plus1d": 9, "clap": 5, "vggish": 0.3}
AUDIO_RATE = {"vggish": 16000, "clap": 48000}
DEVICE = "cpu"  # the device of every backbone object; benchmarks/gpu_extract.py sets "cuda"


# ------------------------------------------------------------------------------------------ media
def make_clips(workdir: Path, n: int, size: tuple[int, int]) -> list[Path]:
    from tests.helpers import media

    patterns = ("testsrc2", "testsrc")
    return [media.make_clip(workdir / f"clip{i:03d}.mp4", seconds=10, fps=25, size=size, channels=2,
                            audio_pattern="noise", pattern=patterns[i % 2]) for i in range(n)]


def load_note() -> str:
    return f"load avg {os.getloadavg()[0]:.2f}"


class OtherLoad:
    """CPU used by processes OUTSIDE this benchmark's process tree while a measurement runs, in cores.

    A thread samples /proc every 0.5 s and adds up utime+stime increments of every process that is
    not a descendant of this one (Ray's processes are descendants). It says how much of the machine
    someone else took: torch's OpenMP pool (2 threads) slows down a lot when one core is busy
    elsewhere, and the reference side's many small per-frame ops suffer most."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.t0 = time.monotonic()
        self.other_ticks = 0
        self._last = self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _sample() -> dict[tuple[int, str], int]:
        ours = set(_tree(os.getpid()))
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in ours:
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[(int(entry), fields[19])] = int(fields[11]) + int(fields[12])  # key: pid, starttime
            except (OSError, IndexError, ValueError):
                pass
        return out

    def _tick(self) -> None:
        now = self._sample()
        self.other_ticks += sum(max(0, v - self._last[k]) for k, v in now.items() if k in self._last)
        self._last = now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()

    def cores(self) -> float:
        self._stop.set()
        self._thread.join()
        self._tick()
        wall = time.monotonic() - self.t0
        return self.other_ticks / os.sysconf("SC_CLK_TCK") / wall if wall > 0 else 0.0


# ------------------------------------------------------------------------------------------ backbones
_BUILT: dict[str, object] = {}


def backbone(name: str, precision: str = "fp32"):
    """One backbone object per (name, precision) for the whole run (both sides use the fp32 one; the
    seeded random init gives the bf16 object the same weights)."""
    key = (name, precision)
    if key not in _BUILT:
        from avvp.pipeline.core import ExtractionConfig, load_backbones

        (_BUILT[key],) = load_backbones(ExtractionConfig(backbones=(name,), weights="random", device=DEVICE,
                                                         precision=precision))
    return _BUILT[key]


_REFERENCE_MODELS: dict[str, object] = {}


def reference_model(name: str):
    """The network as the reference scripts run it: the same weights in torch's default (contiguous)
    memory layout, fp32 (our backbones keep resnet152/r2plus1d in channels_last layouts)."""
    if name not in _REFERENCE_MODELS:
        import copy

        import torch

        model = backbone(name).load_model()
        if name in ("resnet152", "r2plus1d"):
            model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        _REFERENCE_MODELS[name] = model
    return _REFERENCE_MODELS[name]


def needs_frames(name: str) -> bool:
    from avvp.pipeline.core import streams_for

    return streams_for((name,))[0]


# ------------------------------------------------------------------------------------------ reference side
def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args], check=True)


def reference_frame_indices(names) -> dict[str, np.ndarray]:
    """Indices into the 80-frame linspace selection that each visual backbone reads."""
    from avvp.extract.backbones.clip import segment_frame_indices

    return {n: (segment_frame_indices() if n == "clip" else np.arange(80)) for n in names if needs_frames(n)}


def reference_decode(path: Path, names, workdir: Path) -> tuple[dict[int, object], dict[int, np.ndarray]]:
    """The reference pipeline's files: JPEGs at 8 fps → PIL images of the needed selections;
    wav per needed rate → float mono. Returns ({selection index: PIL image}, {rate: waveform})."""
    import soundfile
    from PIL import Image

    d = Path(tempfile.mkdtemp(dir=workdir))
    images: dict[int, object] = {}
    audio: dict[int, np.ndarray] = {}
    try:
        wanted = reference_frame_indices(names)
        if wanted:
            _ffmpeg("-i", str(path), "-r", "8", str(d / "%06d.jpg"))
            files = sorted(d.glob("*.jpg"))
            sel = np.round(np.linspace(0, len(files) - 1, 80)).astype(int)
            for k in sorted(set(np.concatenate(list(wanted.values())).tolist())):
                images[k] = Image.open(files[sel[k]]).convert("RGB")
        for rate in sorted({AUDIO_RATE[n] for n in names if n in AUDIO_RATE}):
            wav = d / f"audio{rate}.wav"
            _ffmpeg("-i", str(path), "-vn", "-ar", str(rate), "-acodec", "pcm_s16le", str(wav))
            data, sr = soundfile.read(str(wav), dtype="int16")
            x = data / 32768.0  # vggish_input.wavfile_to_examples
            audio[rate] = (x.mean(axis=1) if x.ndim > 1 else x).astype(np.float32)
    finally:
        shutil.rmtree(d)
    return images, audio


_TRANSFORMS: dict[str, object] = {}


def reference_transform(name: str):
    if name not in _TRANSFORMS:
        import torchvision.transforms as T

        from avvp.extract.backbones.r2plus1d import KINETICS_MEAN, KINETICS_STD
        from avvp.extract.backbones.resnet152 import IMAGENET_MEAN, IMAGENET_STD

        if name == "resnet152":  # AVVP LoadTransformImage
            t = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        elif name == "r2plus1d":  # AVVP scripts/utils.py
            t = T.Compose([T.Resize((112, 112)), T.ToTensor(), T.Normalize(KINETICS_MEAN, KINETICS_STD)])
        elif name == "clip":  # VALOR: ToTensor, then tensor Resize (torchvision 0.13: no antialias), Normalize
            b = backbone("clip")
            t = (T.ToTensor(), T.Compose([T.Resize(b.image_size, antialias=False), T.Normalize(b.mean, b.std)]))
        else:
            t = None
        _TRANSFORMS[name] = t
    return _TRANSFORMS[name]


def reference_prepare(name: str, images: dict, audio: dict, *, with_mel: bool = False):
    """The reference preprocessing of one video for one backbone (inputs of the forward)."""
    import torch

    from avvp.extract.backbones import clap, vggish_frontend

    if name in ("resnet152", "r2plus1d"):
        t = reference_transform(name)
        x = torch.stack([t(images[k]) for k in range(80)])
        if name == "r2plus1d":  # 10 clips of 8 frames, (C, T, H, W)
            x = x.reshape(10, 8, *x.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()
        return x
    if name == "clip":
        to_tensor, rest = reference_transform(name)
        return torch.stack([rest(to_tensor(images[int(k)])) for k in reference_frame_indices(["clip"])["clip"]])
    if name == "vggish":
        return vggish_frontend.waveform_to_examples(audio[16000]).astype(np.float32)
    if name == "clap":
        w = clap.video_waveforms(audio[48000])
        return clap.log_mel(torch.from_numpy(w), clap.mel_filterbank()) if with_mel else w
    raise ValueError(f"no reference pipeline for backbone {name!r} (known: {', '.join(ALL_BACKBONES)})")


def reference_forward(name: str, x) -> dict[str, np.ndarray]:
    """The forward of the same model object the pipeline uses, on one video."""
    import torch

    b = backbone(name)
    with torch.inference_mode():
        if name in ("resnet152", "r2plus1d"):
            return {name: reference_model(name)(x.to(DEVICE)).float().cpu().numpy()}
        if name == "clip":
            f = torch.nn.functional.normalize(reference_model(name).encode_image(x.to(DEVICE)).float(), dim=-1)
            f = f.cpu().numpy()
            return {"clip": f, "clip_zs": b.zeroshot_scores(f)}
        if name == "vggish":
            return {name: reference_model(name)(torch.from_numpy(x).unsqueeze(1).to(DEVICE)).cpu().numpy()}
    if name == "clap":
        emb, tokens = b.encode_waveforms(x)
        text = b.text_embeddings()
        return {"clap": emb[:10], "clap_zs": b.logit_scale * emb[:10] @ text.T, "clap_tokens": tokens[10]}
    raise ValueError(name)


def reference_video(path: Path, names, workdir: Path, outdir: Path) -> None:
    """One video through the whole reference pipeline (frames/wav shared by all backbones)."""
    images, audio = reference_decode(path, names, workdir)
    for name in names:
        for key, value in reference_forward(name, reference_prepare(name, images, audio)).items():
            np.save(outdir / f"{path.stem}_{key}.npy", value)


# ------------------------------------------------------------------------------------------ our side
def our_preprocess(name: str, decoded):
    """The backbone's own preprocessing of a DecodedVideo, up to the network input."""
    import torch

    from avvp.extract.backbones import clap
    from avvp.extract.backbones.frames import check_frames, normalize_on_device

    b = backbone(name)
    if name == "resnet152":
        pre = b.weights_spec.preprocessing
        return normalize_on_device(b.preprocess(check_frames(decoded, name)), pre["mean"], pre["std"], "cpu")
    if name == "r2plus1d":
        pre = b.weights_spec.preprocessing
        clips = b.preprocess(check_frames(decoded, name))
        n, c, t, h, w = clips.shape
        x = normalize_on_device(clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w), pre["mean"], pre["std"], "cpu")
        return x.reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
    if name == "clip":
        return b.preprocess(check_frames(decoded, name))
    if name == "vggish":
        return b.examples(decoded)
    if name == "clap":
        return clap.log_mel(torch.from_numpy(clap.video_waveforms(decoded.audio_48k)), clap.mel_filterbank())
    raise ValueError(f"unknown backbone {name!r}")


def our_decode(path: Path, name: str | None):
    """name=None: decode_job with all streams; else what the executors decode for backbone `name` alone."""
    from avvp.pipeline.core import ExtractionConfig, StageFailure, decode_job
    from avvp.pipeline.jobs import VideoJob

    job, cfg = VideoJob(id=path.stem, path=str(path)), ExtractionConfig(device="cpu")
    d = decode_job(job, cfg, all_streams=True) if name is None else decode_job(job, cfg, [name])
    if isinstance(d, StageFailure):
        raise RuntimeError(f"{path}: {d.stage}: {d.message}")
    return d


# ------------------------------------------------------------------------------------------ 1. decode + preprocess
def bench_decode(clips: list[Path], names, workdir: Path) -> dict:
    runs = {}
    for name in names:
        runs[(name, "reference")] = lambda p, n=name: reference_prepare(n, *reference_decode(p, [n], workdir), with_mel=True)
        runs[(name, "ours")] = lambda p, n=name: our_preprocess(n, our_decode(p, None))
        runs[(name, "ours_needed")] = lambda p, n=name: our_preprocess(n, our_decode(p, n))
    for fn in runs.values():  # warm-up, excluded
        fn(clips[0])
    seconds = {k: 0.0 for k in runs}
    meter = OtherLoad()
    for p in clips:  # interleaved per clip: every variant sees the same load
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn(p)
            seconds[k] += time.perf_counter() - t0
    out = {"other_load_cores": meter.cores()}
    for name in names:
        ref, ours, needed = (len(clips) / seconds[(name, v)] for v in ("reference", "ours", "ours_needed"))
        out[name] = dict(reference_clips_per_s=ref, ours_clips_per_s=ours, ratio=ours / ref,
                         ours_needed_streams_clips_per_s=needed, ratio_needed_streams=needed / ref)
    return out


# ------------------------------------------------------------------------------------------ 2. end to end
def time_reference(clips: list[Path], names, workdir: Path) -> tuple[float, float]:
    """(clips/s, other load in cores)."""
    outdir = Path(tempfile.mkdtemp(dir=workdir))
    reference_video(clips[0], names, workdir, outdir)  # warm-up, excluded
    meter = OtherLoad()
    t0 = time.perf_counter()
    for p in clips:
        reference_video(p, names, workdir, outdir)
    seconds = time.perf_counter() - t0
    shutil.rmtree(outdir)
    return len(clips) / seconds, meter.cores()


def jobs_for(clips: list[Path]):
    from avvp.pipeline.jobs import VideoJob

    return [VideoJob(id=p.stem, path=str(p)) for p in clips]


def time_local(clips: list[Path], names, workdir: Path, batch: int, *, warm: bool = True, precision: str = "fp32",
               prefetch: int = 1, stats: dict | None = None) -> tuple[float, float]:
    """run_local with the benchmark's backbone objects (warm) or via the executor registry (the CLI's
    call, which builds the backbones inside the timed run). `stats`, when given, receives the store path
    and the run's per-stage seconds."""
    from avvp.pipeline.core import ExtractionConfig
    from avvp.pipeline.executors import EXECUTORS, ExecutorOptions
    from avvp.pipeline.local import run_local

    cfg = ExtractionConfig(backbones=tuple(names), weights="random", device="cpu", batch_videos=batch,
                           precision=precision, prefetch_batches=prefetch)
    built = [backbone(n, precision) for n in names]
    run_local(jobs_for(clips[:1]), cfg, str(workdir / f"warm_{time.monotonic_ns()}.h5"), progress=False, backbones=built)
    out = str(workdir / f"local_{time.monotonic_ns()}.h5")
    meter = OtherLoad()
    t0 = time.perf_counter()
    if warm:
        summary = run_local(jobs_for(clips), cfg, out, progress=False, backbones=built)
    else:
        summary = EXECUTORS.get("local")(jobs_for(clips), cfg, out, ExecutorOptions(progress=False))
    seconds = time.perf_counter() - t0
    if summary.done != len(clips):
        raise RuntimeError(f"local run: {summary.done} done, {summary.failed} failed of {len(clips)}")
    if stats is not None:
        stats.update(store=out, stages=dict(summary.stage_seconds), seconds=seconds)
    return len(clips) / seconds, meter.cores()


def store_cosines(a: str, b: str) -> dict[str, float]:
    """Per per-video array: the minimum over rows of the cosine between store a's and store b's row."""
    from avvp.data.store import Store

    out = {}
    with Store(a) as sa, Store(b) as sb:
        for name in sa.arrays():
            if not name.startswith(("features/", "zeroshot/")):
                continue
            x = sa.read(name).astype(np.float64).reshape(-1, sa.read(name).shape[-1])
            y = sb.read(name, list(sa.ids)).astype(np.float64).reshape(x.shape)
            cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-30)
            out[name] = float(cos.min())
    return out


def bench_e2e(clips, names, workdir, batch, precisions=("fp32", "bf16")) -> dict:
    """Per backbone, on the same clips: the reference method (fp32, default layout, one video at a time),
    ours in each precision (run_local, prefetch 1), ours fp32 without prefetch; bf16 vs fp32 feature cosine."""
    out = {}
    for name in names:
        print(f"  end-to-end {name} ({load_note()}) ...", file=sys.stderr, flush=True)
        row: dict = {}
        ref, ref_other = time_reference(clips, [name], workdir)
        row.update(reference_clips_per_s=ref, reference_other_load_cores=ref_other)
        stores = {}
        for prec in precisions:
            st: dict = {}
            c, other = time_local(clips, [name], workdir, batch, precision=prec, stats=st)
            stores[prec] = st["store"]
            row[prec] = dict(clips_per_s=c, ratio=c / ref, other_load_cores=other,
                             stage_seconds={k: round(v, 2) for k, v in st["stages"].items()}, seconds=st["seconds"])
        c, other = time_local(clips, [name], workdir, batch, prefetch=0)
        row["fp32_no_prefetch"] = dict(clips_per_s=c, ratio=c / ref, other_load_cores=other)
        if "fp32" in stores and "bf16" in stores:
            row["bf16_cosine_min"] = store_cosines(stores["fp32"], stores["bf16"])
            row["bf16_over_fp32"] = row["bf16"]["clips_per_s"] / row["fp32"]["clips_per_s"]
        out[name] = row
    return out


# ------------------------------------------------------------------------------------------ 3. executors
def ray_cpus_per_worker(num_workers: int) -> float:
    """Embedded Ray has os.cpu_count() CPUs; decode tasks need 1 CPU each, so actors must leave one free
    (with the default 1.0 per actor, 2 actors on 2 CPUs leave none and the run never progresses)."""
    cpus = os.cpu_count() or 1
    return 1.0 if num_workers < cpus else max(0.1, (cpus - 1) / num_workers)


def bench_executors(clips, names, workdir, batch) -> dict:
    from avvp.pipeline.core import ExtractionConfig
    from avvp.pipeline.executors import ExecutorOptions
    from avvp.pipeline.ray_executor import init_ray, run_ray

    rows = {}
    ref, other = time_reference(clips, names, workdir)
    rows["reference (JPEG → PIL → forward, 1 video at a time)"] = dict(clips_per_s=ref, ratio=1.0, other_load_cores=other)
    c, other = time_local(clips, names, workdir, batch)
    rows["local, warm backbones (run_local)"] = dict(clips_per_s=c, ratio=c / ref, other_load_cores=other)
    c, other = time_local(clips, names, workdir, batch, warm=False)
    rows["local via executor registry (CLI call; builds backbones in the run)"] = dict(
        clips_per_s=c, ratio=c / ref, other_load_cores=other)
    ray = init_ray(ExecutorOptions())  # cluster start-up: not timed
    cfg = ExtractionConfig(backbones=tuple(names), weights="random", device="cpu", batch_videos=batch)
    try:
        run_ray(jobs_for(clips[:1]), cfg, str(workdir / "ray_warm.h5"),
                ExecutorOptions(num_workers=1, progress=False))  # warm-up: worker pool imports, not timed
        for n in (1, 2):
            cpw = ray_cpus_per_worker(n)
            print(f"  ray num_workers={n} cpus_per_worker={cpw} ({load_note()}) ...", file=sys.stderr, flush=True)
            meter = OtherLoad()
            t0 = time.perf_counter()
            summary = run_ray(jobs_for(clips), cfg, str(workdir / f"ray{n}.h5"),
                              ExecutorOptions(num_workers=n, cpus_per_worker=cpw, progress=False))
            c = len(clips) / (time.perf_counter() - t0)
            if summary.done != len(clips):
                raise RuntimeError(f"ray run: {summary.done} done, {summary.failed} failed of {len(clips)}")
            rows[f"ray, num_workers={n} (cpus_per_worker={cpw:g})"] = dict(clips_per_s=c, ratio=c / ref,
                                                                           other_load_cores=meter.cores())
    finally:
        ray.shutdown()
    return rows


# ------------------------------------------------------------------------------------------ 4. memory
def _status_kb(pid, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_child(executor: str, clipdir: str, n: int, names: str, batch: int, threads: int) -> None:
    """Runs in the child process: extract n clips with one executor, print JSON."""
    import torch

    torch.set_num_threads(threads)
    from avvp.pipeline.core import ExtractionConfig
    from avvp.pipeline.executors import EXECUTORS, ExecutorOptions

    clips = sorted(Path(clipdir).glob("*.mp4"))[:n]
    cfg = ExtractionConfig(backbones=tuple(names.split(",")), weights="random", device="cpu", batch_videos=batch)
    out = tempfile.mktemp(suffix=".h5", dir=clipdir)
    t0 = time.perf_counter()
    summary = EXECUTORS.get(executor)(jobs_for(clips), cfg, out,
                                              ExecutorOptions(num_workers=1, progress=False))
    seconds = time.perf_counter() - t0
    if executor == "ray":
        import ray

        ray.shutdown()
    os.unlink(out)
    print(json.dumps(dict(done=summary.done, failed=summary.failed, seconds=seconds,
                          self_hwm_mb=_status_kb("self", "VmHWM") / 1024)))


def measure_rss(executor: str, clipdir: Path, n: int, names, batch: int, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", executor, str(clipdir), str(n),
           ",".join(names), str(batch), str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"tree_mb": 0.0, "procs": 0}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            pids = _tree(proc.pid)
            total = sum(_status_kb(p, "VmRSS") for p in pids) / 1024
            if total > peak["tree_mb"]:
                peak.update(tree_mb=total, procs=len(pids))
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    stdout, stderr = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        return {"error": stderr[-500:]}
    rec = json.loads(stdout.strip().splitlines()[-1])
    rec.update(tree_peak_mb=peak["tree_mb"], tree_procs_at_peak=peak["procs"])
    return rec


def bench_rss(workdir: Path, counts, names, executors, batch, threads) -> dict:
    from tests.helpers import media

    clipdir = workdir / "rss_clips"
    clipdir.mkdir()
    src = media.make_clip(workdir / "tiny.mp4", seconds=10, fps=25, size=(160, 120), channels=2, audio_pattern="noise")
    for i in range(max(counts)):
        shutil.copy(src, clipdir / f"t{i:04d}.mp4")
    out = {}
    for ex in executors:
        for n in counts:
            print(f"  memory {ex} {n} clips ({load_note()}) ...", file=sys.stderr, flush=True)
            out[(ex, n)] = measure_rss(ex, clipdir, n, names, batch, threads)
    return out


# ------------------------------------------------------------------------------------------ main
def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def csv_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        ex, clipdir, n, names, batch, threads = sys.argv[2:8]
        rss_child(ex, clipdir, int(n), names, int(batch), int(threads))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small defaults: 2 clips, e2e vggish+r2plus1d, "
                    "ray on vggish, memory 10 vs 50 clips (a few minutes on 2 cores)")
    ap.add_argument("--clips", type=int, default=None, help="clips per speed measurement (default 4; quick 2)")
    ap.add_argument("--backbones", default=None,
                    help=f"end-to-end set (default {','.join(DEFAULT_E2E)}; heavy on CPU: resnet152, clip)")
    ap.add_argument("--decode-backbones", default=",".join(ALL_BACKBONES), help="decode+preprocess table set")
    ap.add_argument("--ray-backbones", default=None, help="executor table combination (default vggish,r2plus1d; quick vggish)")
    ap.add_argument("--rss-clips", default=None, help="clip counts for the memory table (default 10,100; quick 10,50)")
    ap.add_argument("--rss-backbones", default="vggish")
    ap.add_argument("--batch-size", type=int, default=4, help="videos per backbone forward (CLI default 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads, both sides (default: torch's)")
    ap.add_argument("--size", default="320x240", help="clip size WxH for the speed tables")
    ap.add_argument("--precisions", default="fp32,bf16", help="end-to-end precisions of our side (default fp32,bf16)")
    ap.add_argument("--skip-decode", action="store_true", help="skip the decode+preprocess table")
    ap.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end table")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args()

    n_clips = args.clips or (2 if args.quick else 4)
    e2e = [] if args.skip_e2e else csv_list(args.backbones) if args.backbones else (["vggish", "r2plus1d"] if args.quick else list(DEFAULT_E2E))
    dec = csv_list(args.decode_backbones)
    ray_set = csv_list(args.ray_backbones) if args.ray_backbones else (["vggish"] if args.quick else ["vggish", "r2plus1d"])
    rss_counts = [int(x) for x in csv_list(args.rss_clips or ("10,50" if args.quick else "10,100"))]
    for name in {*e2e, *dec, *ray_set, *csv_list(args.rss_backbones)}:
        if name not in ALL_BACKBONES:
            ap.error(f"unknown backbone {name!r}; known: {', '.join(ALL_BACKBONES)}")
    w, h = (int(v) for v in args.size.lower().split("x"))
    precisions = csv_list(args.precisions)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    t_all = time.perf_counter()
    results: dict = dict(config=dict(clips=n_clips, size=[w, h], threads=threads, batch_size=args.batch_size,
                                     e2e_backbones=e2e, decode_backbones=dec, ray_backbones=ray_set,
                                     rss_clips=rss_counts, rss_backbones=csv_list(args.rss_backbones)))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {load_note()} at start "
          "(other processes on the machine are not controlled)")
    print(subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0])
    print(f"torch {torch.__version__}, {threads} torch threads on both sides (and in Ray actors); device cpu; "
          "weights random (seeded), the same backbone object on both sides; one warm-up run per side excluded")
    from avvp.extract.backbones.weights import cpu_precision_support

    bf16_ok, units = cpu_precision_support("bf16")
    print(f"CPU bf16 units ({' or '.join(units)}): {'yes' if bf16_ok else 'NO (bf16 is emulated, slower)'}")
    print(f"clips: {n_clips} x 10 s {w}x{h} 25 fps h264 + stereo 44.1 kHz AAC; batch {args.batch_size} videos per forward")
    print("ratio = ours clips/s ÷ reference clips/s (> 1: ours faster)")
    print("'other load' = CPU cores used by processes outside this benchmark during that measurement (see OtherLoad)")
    skipped = [b for b in ALL_BACKBONES if b not in e2e]
    print(f"end-to-end backbones run: {', '.join(e2e)}"
          + (f"; not run (by flag --backbones): {', '.join(f'{b} ~{COST_HINT[b]} s/video' for b in skipped)}" if skipped else ""))

    with tempfile.TemporaryDirectory(prefix="avvp_bench_extract_") as tmp:
        workdir = Path(tmp)
        clips = make_clips(workdir, n_clips, (w, h))

        print(f"\n== 1. decode + preprocess (no forward), clips/s over {n_clips} clips, runs interleaved per clip ==")
        d = bench_decode(clips, [] if args.skip_decode else dec, workdir)
        results["decode_preprocess"] = d
        other = d.pop("other_load_cores")
        results["decode_preprocess_other_load_cores"] = other
        print(table(["backbone", "reference (JPEG/wav files + PIL/torchvision)", "ours: all streams + preprocess",
                     "ratio", "ours: needed streams (executors) + preprocess", "ratio"],
                    [[n, f"{r['reference_clips_per_s']:.2f}", f"{r['ours_clips_per_s']:.2f}", f"{r['ratio']:.2f}",
                      f"{r['ours_needed_streams_clips_per_s']:.2f}", f"{r['ratio_needed_streams']:.2f}"] for n, r in d.items()]))
        print(f"(other load {other:.2f} cores)")

        if e2e:
            print(f"\n== 2. end to end on CPU, random weights, clips/s over {n_clips} clips ==", flush=True)
            t0 = time.perf_counter()
            e = bench_e2e(clips, e2e, workdir, args.batch_size, precisions)
            results["end_to_end"] = e
            rows = []
            for n, r in e.items():
                cells = [n, f"{r['reference_clips_per_s']:.3f}"]
                for prec in precisions:
                    cells += [f"{r[prec]['clips_per_s']:.3f}", f"{r[prec]['ratio']:.2f}"]
                cells += [f"{r['fp32_no_prefetch']['ratio']:.2f}"]
                if "bf16_over_fp32" in r:
                    cells += [f"{r['bf16_over_fp32']:.2f}",
                              ", ".join(f"{k.split('/', 1)[0][0]}:{v:.5f}" for k, v in r["bf16_cosine_min"].items())]
                st = r[precisions[0]]["stage_seconds"]
                cells += [" / ".join(f"{st.get(k, 0):.1f}" for k in ("decode", "decode_wait", n)),
                          f"{r['reference_other_load_cores']:.2f} / {r[precisions[0]]['other_load_cores']:.2f}"]
                rows.append(cells)
            header = ["backbone", "reference clips/s"]
            for prec in precisions:
                header += [f"ours {prec} clips/s", "× ref"]
            header += ["× ref, fp32 no prefetch"]
            if "bf16" in precisions and "fp32" in precisions:
                header += ["bf16 ÷ fp32", "bf16 vs fp32 min row cosine (f: features, z: zeroshot)"]
            header += [f"ours {precisions[0]} s: decode / waited for decode / forward", "other load, cores (ref / ours)"]
            print(table(header, rows))
            print("reference = ffmpeg -r 8 JPEG files → PIL → torchvision transforms → fp32 forward in torch's default "
                  "layout, one video at a time; ours = run_local (batches, prefetch 1, channels_last layouts, store writes)")
            print(f"({time.perf_counter() - t0:.0f} s, {load_note()} at end)")

        if not args.skip_ray:
            print(f"\n== 3. executors, backbones {'+'.join(ray_set)}, clips/s over {n_clips} clips ==", flush=True)
            t0 = time.perf_counter()
            try:
                x = bench_executors(clips, ray_set, workdir, args.batch_size)
                results["executors"] = x
                print(table(["executor", "clips/s", "ratio vs reference", "other load, cores"],
                            [[k, f"{r['clips_per_s']:.3f}", f"{r['ratio']:.2f}", f"{r['other_load_cores']:.2f}"]
                             for k, r in x.items()]))
                print("Ray: embedded cluster started before timing; each run's actor start-up and model build are timed. "
                      f"cpus_per_worker for 2 workers is {ray_cpus_per_worker(2):g}, as the executor itself shrinks it "
                      "(actors must leave a CPU for the decode tasks).")
            except Exception as err:  # noqa: BLE001 - report and go on
                results["executors"] = {"error": f"{type(err).__name__}: {err}"}
                print(f"FAILED: {type(err).__name__}: {err}")
            print(f"({time.perf_counter() - t0:.0f} s, {load_note()} at end)")

        if not args.skip_rss:
            rss_names = csv_list(args.rss_backbones)
            execs = ["local"] if args.skip_ray else ["local", "ray"]
            print(f"\n== 4. peak memory, {'+'.join(rss_names)}, 10 s 160x120 clips, fresh child process per run ==", flush=True)
            t0 = time.perf_counter()
            m = bench_rss(workdir, rss_counts, rss_names, execs, args.batch_size, threads)
            results["memory"] = {f"{ex}/{n}": v for (ex, n), v in m.items()}
            rows = []
            lo, hi = min(rss_counts), max(rss_counts)
            for ex in execs:
                for n in rss_counts:
                    r = m[(ex, n)]
                    if "error" in r:
                        rows.append([ex, str(n), "error", "-", "-", "-", r["error"].splitlines()[-1][:80]])
                        continue
                    rows.append([ex, str(n), f"{r['done']}/{n}", f"{r['seconds']:.1f}", f"{r['self_hwm_mb']:.0f}",
                                 f"{r['tree_peak_mb']:.0f} ({r['tree_procs_at_peak']} procs)", ""])
                a, b = m[(ex, lo)], m[(ex, hi)]
                if "error" not in a and "error" not in b:
                    rows.append([ex, f"ratio {hi}/{lo}", "", "", f"{b['self_hwm_mb'] / a['self_hwm_mb']:.2f}",
                                 f"{b['tree_peak_mb'] / a['tree_peak_mb']:.2f}", ""])
            print(table(["executor", "clips", "done", "run s", "peak RSS child Python (VmHWM) MB",
                         "peak summed RSS of process tree MB", "note"], rows))
            print("ray: the child is the driver (num_workers=1); the tree includes Ray's GCS, raylet, workers. Summed RSS "
                  "counts a shared page (e.g. torch's libraries) in every process that maps it; ffmpeg children "
                  "live ~0.3 s and are caught only when a sample falls inside one.")
            print(f"({time.perf_counter() - t0:.0f} s)")

    total = time.perf_counter() - t_all
    results["wall_seconds"] = total
    print(f"\ntotal wall time {total:.0f} s, {load_note()} at end")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
