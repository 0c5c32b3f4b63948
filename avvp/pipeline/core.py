"""The extraction work shared by every executor: decode a job, run backbones on a batch, write results.

Executors (local loop, Ray) only decide *where* these functions run; the numbers are the same.

    cfg = ExtractionConfig(backbones=("clip", "vggish"))
    backbones = load_backbones(cfg)
    decoded = decode_job(job, cfg)                  # DecodedVideo or StageFailure
    results = run_backbones(backbones, [decoded])   # per video: arrays or a failure per backbone
    sink.write(job, decoded, results[0])            # into the store, through the journaled writer

What every executor shares lives here too: `plan_run` (what is still missing, in the batches every
executor cuts the same way), `RunSummary` (the counts and stage times) and `progress_bar`.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from avvp._extras import require_extra
from avvp.data.classes import LLP_CLASSES
from avvp.data.store import Store, StoreWriter, VideoRecord, recover_journal
from avvp.extract.backbones import BACKBONES, Backbone, BackboneConfig
from avvp.extract.inputs import check_profile, streams_for
from avvp.pipeline.jobs import VideoJob


@dataclass(frozen=True)
class ExtractionConfig:
    """Everything that determines the numbers written (plus batching, which must not change them)."""

    backbones: tuple[str, ...] = ("clip",)
    weights: str = "pretrained"  # "pretrained" | "random"
    weights_dir: str | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (autocast, recorded as the arrays' `precision`)
    decoder: str | None = None  # None = the measured default backend
    start: float = 0.0
    window: float = 10.0
    batch_videos: int = 4  # videos per backbone forward
    prefetch_batches: int = 1  # local executor: batches decoded ahead of the forward (0 = no prefetch thread)
    decode_workers: int = 1  # local executor: videos of a batch decoded in parallel (ffmpeg processes)
    backbone_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # (("clip", (("model","ViT-B-32"),)),)
    profile: str = "reference"  # network-input profile: "reference" (official inputs) | "clean" (docs/decoding.md)
    flush_every: int = 16  # store journal: a shard every N videos or `flush_seconds`, whichever first
    flush_seconds: float = 30.0

    def __post_init__(self) -> None:
        check_profile(self.profile, self.decoder)

    def options_for(self, name: str) -> tuple[tuple[str, Any], ...]:
        return dict(self.backbone_options).get(name, ())

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def backbone_config(self, name: str) -> BackboneConfig:
        return BackboneConfig(
            weights=self.weights, weights_dir=self.weights_dir, device=self.resolved_device(),
            precision=self.precision, options=self.options_for(name), profile=self.profile,
        )


@dataclass(frozen=True)
class StageFailure:
    stage: str
    message: str


@dataclass
class VideoResult:
    """What one video produced: per-backbone arrays, per-backbone failures, and the decode metadata."""

    job: VideoJob
    duration: float = 0.0
    has_audio: bool = False
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # backbone -> {path: array}
    failures: list[StageFailure] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds


def load_backbones(cfg: ExtractionConfig) -> list[Backbone]:
    require_extra("extract", "feature extraction")
    return [BACKBONES.get(name)(cfg.backbone_config(name)) for name in cfg.backbones]


def decode_job(job: VideoJob, cfg: ExtractionConfig, needs: Iterable[str] | None = None, *, all_streams: bool = False):
    """Decode the job's window; returns a DecodedVideo or a StageFailure (never raises for bad media).

    Only the streams that the backbones in `needs` (default: cfg.backbones) read are decoded, unless
    `all_streams`. A file without a video stream is a decode failure either way: a row is a video."""
    from avvp.extract.decode import AUDIO_RATES, DEFAULT_DECODER, DecodeError, decode_video

    video, rates = (True, AUDIO_RATES) if all_streams else streams_for(cfg.backbones if needs is None else needs)
    try:
        decoded = decode_video(job.path, start=cfg.start, window=cfg.window, decoder=cfg.decoder or DEFAULT_DECODER,
                               video=video, require_video=True, audio_rates=rates, profile=cfg.profile)
    except DecodeError as err:
        return StageFailure("decode", str(err))
    except FileNotFoundError as err:
        return StageFailure("decode", f"file not found: {err}")
    return decoded


def decode_windows(job: VideoJob, cfg: ExtractionConfig) -> Iterator[Any]:
    """decode_job over the whole file: consecutive windows from cfg.start, each a DecodedVideo equal to
    decode_job at that start, from ONE probe of the file; a decode error ends the sequence with a StageFailure."""
    from avvp.extract.decode import DEFAULT_DECODER, DecodeError, iter_windows

    video, rates = streams_for(cfg.backbones)
    try:
        yield from iter_windows(job.path, start=cfg.start, window=cfg.window, decoder=cfg.decoder or DEFAULT_DECODER,
                                video=video, require_video=True, audio_rates=rates, profile=cfg.profile)
    except DecodeError as err:
        yield StageFailure("decode", str(err))
    except FileNotFoundError as err:
        yield StageFailure("decode", f"file not found: {err}")


def run_backbones(
    backbones: Sequence[Backbone], jobs: Sequence[VideoJob], decoded: Sequence[Any], needs: Sequence[frozenset[str]] | None = None
) -> list[VideoResult]:
    """Run every backbone on the successfully decoded videos of a batch (one forward per backbone).

    `needs[i]` names the backbones video i still lacks (default: all). If a batched forward raises, the
    batch is retried video by video so that only the offending video gets a failure row."""
    results = []
    for job, d in zip(jobs, decoded):
        r = VideoResult(job)
        if isinstance(d, StageFailure):
            r.failures.append(d)
        else:
            r.duration = float(d.duration)
            r.has_audio = bool(d.has_audio)
        results.append(r)
    for backbone in backbones:
        ok = [
            i for i, d in enumerate(decoded)
            if not isinstance(d, StageFailure) and (needs is None or backbone.name in needs[i])
        ]
        if not ok:
            continue
        t0 = time.perf_counter()
        try:
            per_video = list(zip(ok, backbone.extract_batch([decoded[i] for i in ok])))
        except Exception:  # noqa: BLE001 - isolate the failing video(s), then record their errors
            per_video = []
            for i in ok:
                try:
                    per_video.append((i, backbone.extract_batch([decoded[i]])[0]))
                except Exception as err:  # noqa: BLE001 - a data error of one video must not stop the run
                    results[i].failures.append(StageFailure(backbone.name, f"{type(err).__name__}: {err}"))
        seconds = (time.perf_counter() - t0) / len(ok)
        for i, arrays in per_video:
            results[i].arrays[backbone.name] = arrays
            results[i].seconds[backbone.name] = seconds
    return results


def dataset_arrays(backbones: Iterable[Backbone]) -> dict[str, tuple[np.ndarray, dict]]:
    """Every backbone's per-dataset arrays, by store path."""
    return {path: value for b in backbones for path, value in b.dataset_arrays().items()}


@dataclass
class RunSummary:
    """What an executor's run did: the counts every input is accounted in, and where the time went."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    recovered: int = 0  # rows an interrupted run had journaled, merged before this run started
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def to_compute(self) -> int:
        """Jobs this run works on (the rest were in the store already)."""
        return self.total - self.skipped

    @property
    def clips_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def finish(self, sink: "StoreSink", started: float) -> "RunSummary":
        """Take the sink's counts and the wall time since `started` (time.perf_counter())."""
        self.done, self.failed = sink.done, sink.failed
        self.seconds = time.perf_counter() - started
        return self

    def print(self, file=None) -> None:
        file = file or sys.stderr
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(self.stage_seconds.items()))
        print(
            f"avvp-extract: {self.done} done, {self.failed} failed, {self.skipped} already in the store "
            + (f"({self.recovered} rows recovered from the journal of an interrupted run) " if self.recovered else "")
            + f"(of {self.total}); {self.clips_per_second:.2f} clips/s over {self.seconds:.1f}s; per stage: {stages or '-'}",
            file=file,
        )


def progress_bar(total: int, enabled: bool = True):
    """The executors' progress bar on stderr (videos still to compute)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="avvp-extract", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


Todo = list[tuple[VideoJob, frozenset[str]]]  # (job, backbones it still lacks)


def plan_run(out: str, jobs: Sequence[VideoJob], backbones: Sequence[Backbone], batch_videos: int) -> tuple[list[Todo], RunSummary]:
    """What a run still has to compute, in batches of `batch_videos` consecutive jobs (the same batches for
    every executor, so every forward sees the same videos), and its summary with the jobs already in the
    store counted as skipped. A killed run's journaled rows are merged first and count as present."""
    recovered = recover_journal(out)
    needs = missing_backbones(out, jobs, backbones)
    todo = [(job, need) for job, need in zip(jobs, needs) if need]
    summary = RunSummary(total=len(jobs), skipped=len(jobs) - len(todo), recovered=recovered)
    return [todo[i : i + batch_videos] for i in range(0, len(todo), batch_videos)], summary


class StoreSink:
    """The single writer of an extraction run: results in, store rows and failure rows out."""

    def __init__(self, path: str, backbones: Sequence[Backbone], flush_every: int = 16, flush_seconds: float = 30.0):
        self.writer = StoreWriter(path, classes=LLP_CLASSES, flush_every=flush_every, flush_seconds=flush_seconds)
        self.backbones = {b.name: b for b in backbones}
        self.specs = {b.name: {s.path: s for s in b.outputs()} for b in backbones}
        self.done = 0
        self.failed = 0
        self._dataset_arrays_written = False

    def write_dataset_arrays(self, arrays: dict[str, tuple[np.ndarray, dict]] | None = None) -> None:
        """Write the backbones' per-dataset arrays (label texts), computed here unless given (the Ray
        executor gets them from a worker, which holds the models already)."""
        if self._dataset_arrays_written:
            return
        if arrays is None:
            arrays = dataset_arrays(self.backbones.values())
        for path, (value, attrs) in arrays.items():
            self.writer.set_dataset_array(path, value, attrs)
        self._dataset_arrays_written = True

    def fail(self, job_id: str, stage: str, message: str) -> None:
        self.writer.add_failure(job_id, stage, message)
        self.failed += 1

    def write_all(self, results: Sequence[VideoResult], summary: RunSummary) -> None:
        """Write a batch's results and add their per-stage seconds to the run summary (both executors)."""
        for r in results:
            for stage, sec in r.seconds.items():
                summary.add_stage(stage, sec)
            self.write(r)

    def write(self, result: VideoResult) -> None:
        job = result.job
        for f in result.failures:
            self.writer.add_failure(job.id, f.stage, f.message)
        if result.arrays:
            arrays: dict[str, np.ndarray] = {}
            attrs: dict[str, dict] = {}
            for name, out in result.arrays.items():
                backbone = self.backbones[name]
                for path, value in out.items():
                    arrays[path] = value
                    attrs[path] = backbone.store_attrs(self.specs[name][path])
            if job.weak is not None:
                arrays["labels/weak"] = job.weak
            record = VideoRecord(job.id, source=job.source or job.path, split=job.split, duration=result.duration, has_audio=result.has_audio)
            self.writer.add_video(record, arrays, attrs, resolves=["decode", *result.arrays])
        if result.failures:
            self.failed += 1
        else:
            self.done += 1

    def close(self) -> None:
        self.writer.close()


def open_sink(out: str, backbones: Sequence[Backbone], cfg: ExtractionConfig) -> StoreSink:
    return StoreSink(out, backbones, flush_every=cfg.flush_every, flush_seconds=cfg.flush_seconds)


def missing_backbones(
    store_path: str, jobs: Sequence[VideoJob], backbones: Sequence[Backbone]
) -> list[frozenset[str]]:
    """Per job, the backbones whose outputs the store lacks (re-runs compute nothing twice). Call
    `recover_journal` first: rows an interrupted run journaled count only once merged."""
    import os

    all_names = frozenset(b.name for b in backbones)
    if not os.path.exists(store_path):
        return [all_names] * len(jobs)
    with Store(store_path) as store:
        have = {}
        for b in backbones:
            masks = [store.mask(s.path) for s in b.outputs()]
            have[b.name] = np.logical_and.reduce(masks)
        row = {vid: i for i, vid in enumerate(store.ids)}
    out = []
    for job in jobs:
        i = row.get(job.id)
        out.append(all_names if i is None else frozenset(n for n in all_names if not have[n][i]))
    return out


def announce_random(cfg: ExtractionConfig) -> None:
    if cfg.weights == "random":
        print(
            "avvp-extract: NOTICE: --weights random: backbones run with RANDOM weights; features carry "
            "random_weights=True and are meaningless for research (plumbing/shape checks only)",
            file=sys.stderr,
        )
