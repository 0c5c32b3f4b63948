"""The in-process executor: decode and run backbones batch by batch in this process.

Used for debugging and as the reference the Ray executor is compared against value for value.

Decoding of the next batch overlaps the forward of the current one: a prefetch thread decodes up to
`cfg.prefetch_batches` batches ahead into a bounded queue (0 = decode in the loop, no thread). Decoding
is an ffmpeg child process per video, so the thread mostly waits on pipes without the GIL while torch
computes. Memory stays flat: at most `prefetch_batches` decoded batches wait, one is being decoded, one
is in the forward. With `cfg.decode_workers` > 1 the videos of a batch are decoded by that many threads
in parallel (for GPU machines, where one decoder cannot feed the model). Results are written in job
order, so the store is the same with or without prefetch and parallel decoding.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from avvp.pipeline.core import (
    ExtractionConfig, decode_job, load_backbones, missing_backbones, open_sink, run_backbones,
)
from avvp.data.store import recover_journal
from avvp.pipeline.jobs import VideoJob


@dataclass
class RunSummary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    recovered: int = 0  # rows an interrupted run had journaled, merged before this run started
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def clips_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def print(self, file=None) -> None:
        file = file or sys.stderr
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(self.stage_seconds.items()))
        print(
            f"avvp-extract: {self.done} done, {self.failed} failed, {self.skipped} already in the store "
            + (f"({self.recovered} rows recovered from the journal of an interrupted run) " if self.recovered else "")
            + f"(of {self.total}); {self.clips_per_second:.2f} clips/s over {self.seconds:.1f}s; per stage: {stages or '-'}",
            file=file,
        )


def progress_bar(total: int, enabled: bool = True) -> tqdm:
    return tqdm(total=total, unit="video", desc="avvp-extract", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


def prefetched(items: Sequence[Any], work: Callable[[Any], Any], depth: int) -> Iterator[tuple[Any, Any, float]]:
    """(item, work(item), seconds work took) in order, with up to `depth` results computed ahead by one
    background thread (depth 0: computed inline). An exception in `work` is re-raised here, in order;
    leaving the loop early stops the thread."""
    if depth <= 0:
        for item in items:
            t0 = time.perf_counter()
            result = work(item)
            yield item, result, time.perf_counter() - t0
        return
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        for item in items:
            t0 = time.perf_counter()
            try:
                entry = (item, work(item), time.perf_counter() - t0, None)
            except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
                put((item, None, 0.0, err))
                return
            if not put(entry):
                return
        put(done)

    thread = threading.Thread(target=produce, name="avvp-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            entry = slots.get()
            if entry is done:
                return
            item, result, seconds, err = entry
            if err is not None:
                raise err
            yield item, result, seconds
    finally:
        stop.set()
        thread.join()


def run_local(
    jobs: Sequence[VideoJob], cfg: ExtractionConfig, out: str, *, progress: bool = True, backbones=None
) -> RunSummary:
    t_start = time.perf_counter()
    backbones = backbones if backbones is not None else load_backbones(cfg)
    recovered = recover_journal(out)  # a killed run's journaled rows count as present
    needs = missing_backbones(out, jobs, backbones)
    todo = [(job, need) for job, need in zip(jobs, needs) if need]
    summary = RunSummary(total=len(jobs), skipped=len(jobs) - len(todo), recovered=recovered)
    sink = open_sink(out, backbones, cfg)
    batches = [todo[start : start + cfg.batch_videos] for start in range(0, len(todo), cfg.batch_videos)]

    pool = ThreadPoolExecutor(cfg.decode_workers, thread_name_prefix="avvp-decode") if cfg.decode_workers > 1 else None

    def decode(batch):
        # each decode is an ffmpeg child process, so threads decode videos of a batch in parallel; map keeps order
        if pool is None:
            return [decode_job(job, cfg, need) for job, need in batch]
        return list(pool.map(lambda item: decode_job(item[0], cfg, item[1]), batch))

    try:
        sink.write_dataset_arrays()
        with progress_bar(len(todo), progress) as bar:
            t_wait = time.perf_counter()
            for batch, decoded, decode_seconds in prefetched(batches, decode, cfg.prefetch_batches):
                # decode: time spent decoding (overlapped with forwards when prefetching);
                # decode_wait: time the forwards sat idle waiting for a decoded batch
                summary.add_stage("decode", decode_seconds)
                summary.add_stage("decode_wait", time.perf_counter() - t_wait)
                results = run_backbones(backbones, [j for j, _ in batch], decoded, [n for _, n in batch])
                sink.write_all(results, summary)
                bar.update(len(batch))
                bar.set_postfix(failed=sink.failed)
                t_wait = time.perf_counter()
    finally:
        sink.close()
        if pool is not None:
            pool.shutdown(wait=True)
    summary.done, summary.failed = sink.done, sink.failed
    summary.seconds = time.perf_counter() - t_start
    return summary
