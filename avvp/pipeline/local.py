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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

from avvp.pipeline.core import (
    ExtractionConfig, RunSummary, decode_job, load_backbones, open_sink, plan_run, progress_bar, run_backbones,
)
from avvp.pipeline.jobs import VideoJob


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
    batches, summary = plan_run(out, jobs, backbones, cfg.batch_videos)
    sink = open_sink(out, backbones, cfg)

    pool = ThreadPoolExecutor(cfg.decode_workers, thread_name_prefix="avvp-decode") if cfg.decode_workers > 1 else None

    def decode(batch):
        # each decode is an ffmpeg child process, so threads decode videos of a batch in parallel; map keeps order
        if pool is None:
            return [decode_job(job, cfg, need) for job, need in batch]
        return list(pool.map(lambda item: decode_job(item[0], cfg, item[1]), batch))

    try:
        sink.write_dataset_arrays()
        with progress_bar(summary.to_compute, progress) as bar:
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
    return summary.finish(sink, t_start)
