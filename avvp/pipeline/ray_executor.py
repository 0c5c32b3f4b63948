"""The Ray executor: CPU decode tasks feeding backbone actors, with the driver as the single store writer.

Design (Ray Core, not Ray Data; see docs/distributed.md for why):
- jobs are cut into the same fixed batches as the local executor (consecutive `batch_videos` jobs), so
  every backbone forward sees the same videos in the same order and the numbers equal the local run's;
- each video of a batch is decoded by its own CPU task (`max_retries` covers a dying worker process);
  the decoded arrays stay in the object store and go straight to a backbone actor: the driver never
  fetches frames;
- backbone actors (one per GPU with `num_gpus`, or CPU actors) hold all requested backbones resident and
  run a whole batch per forward; an actor that dies is restarted and its batch retried
  (`max_restarts`, `max_task_retries`), and since the driver writes a batch only when its result arrives,
  a retried batch is written once;
- backpressure: at most `2 × workers` batches are in flight, so memory stays flat however many videos
  there are;
- data errors (bad media, a backbone raising on one video) come back as failure rows, never as task
  errors, so they are not retried;
- videos are read where the decode task runs, which may be another machine than the driver's: every
  node needs the driver's paths (a shared filesystem); a file missing on a node is a decode failure row
  that names the node (hostname, node IP, node id), never a hang.

Embedded by default: with no address, Ray starts inside the command with loopback-only listeners
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, `avvp._env.ray_defaults`), no dashboard, no auth token file, and a capped
object store. Tested with ray 2.60.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import deque
from typing import Any, Sequence

from avvp.pipeline.core import (
    ExtractionConfig, RunSummary, StageFailure, VideoResult, dataset_arrays, decode_job, load_backbones, open_sink,
    plan_run, progress_bar, run_backbones,
)
from avvp._extras import require_extra
from avvp.pipeline.executors import EXECUTORS, ExecutorOptions
from avvp.pipeline.jobs import VideoJob


def node_name() -> str:
    """This Ray node as a person finds it: hostname, node IP and the start of the node id."""
    import socket

    import ray

    return (f"{socket.gethostname()} {ray.util.get_node_ip_address()} "
            f"node {ray.get_runtime_context().get_node_id()[:12]}")


def _timed_decode(job: VideoJob, cfg: ExtractionConfig, need: frozenset[str]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    decoded = decode_job(job, cfg, need)
    if isinstance(decoded, StageFailure) and not os.path.exists(job.path):
        # decode tasks run on any node: a path the driver discovered may not exist here (no shared
        # filesystem, or the file went away); the row names the node so that the cause can be found
        decoded = StageFailure("decode", f"file not found on node {node_name()}: {job.path} (every node reads "
                                         f"the paths the driver discovered: mount the videos at the same path)")
    return decoded, time.perf_counter() - t0


class BackboneWorker:
    """A Ray actor holding the requested backbones; runs one batch per call."""

    def __init__(self, cfg: ExtractionConfig, torch_threads: int | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.backbones = load_backbones(cfg)

    def dataset_arrays(self) -> dict:
        return dataset_arrays(self.backbones)

    def pid(self) -> int:
        return os.getpid()

    def run(self, jobs: Sequence[VideoJob], needs: Sequence[frozenset[str]], *decoded_and_seconds: tuple[Any, float]) -> list[VideoResult]:
        decoded = [d for d, _ in decoded_and_seconds]
        results = run_backbones(self.backbones, jobs, decoded, needs)
        for r, (_, seconds) in zip(results, decoded_and_seconds):
            r.seconds["decode"] = seconds
        return results


def _actor_cpus(requested: float, num_workers: int, cluster_cpus: float, on_gpu: bool) -> float:
    """CPUs each backbone actor reserves. Decode tasks need one whole free CPU on some node: if the actors
    would reserve every CPU of the cluster (e.g. 2 CPU actors on a 2-CPU machine), no decode task could
    ever be scheduled and the run would hang. A fractional reservation is no way out on a multi-node
    cluster: 2 actors x 0.5 CPU on two 1-CPU nodes leave half a CPU per node and decoding still hangs
    (measured, tests/pipeline/test_ray_cluster.py). So such actors reserve nothing and share the CPUs (and say so)."""
    if on_gpu or cluster_cpus <= 0 or num_workers * requested <= cluster_cpus - 1:
        return requested
    print(f"avvp-extract: {num_workers} actors x {requested:g} CPU would leave no CPU for decoding on a "
          f"{cluster_cpus:g}-CPU cluster; the actors reserve no CPU and share them with the decode tasks",
          file=sys.stderr)
    return 0.0


def init_ray(options: ExecutorOptions):
    """Join a cluster (options.address) or start the safe embedded one."""
    from avvp._env import ray_defaults

    ray_defaults()  # before `import ray`: loopback-only listeners, no auth token file (user values kept)
    import ray

    if ray.is_initialized():
        return ray
    if options.address:
        ray.init(address=options.address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=options.object_store_mb * 1024 * 1024,
            _temp_dir=os.path.join(tempfile.gettempdir(), "avvp-ray"),
            log_to_driver=False,
            configure_logging=False,
        )
    return ray


def run_ray(jobs: Sequence[VideoJob], cfg: ExtractionConfig, out: str, options: ExecutorOptions) -> RunSummary:
    require_extra(("extract", "ray"), "the Ray executor", " (or --executor local)")
    ray = init_ray(options)
    t_start = time.perf_counter()
    resources = ray.cluster_resources()
    gpus_available = resources.get("GPU", 0)
    gpus_per_worker = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus_available else 0.0)
    num_workers = options.num_workers or (max(1, int(gpus_available // gpus_per_worker)) if gpus_per_worker else 1)
    # the driver builds the backbones too (cheap: weights are resolved, models are built on first use):
    # it fails fast on unavailable weights before any worker starts and knows the output specs
    local_backbones = load_backbones(cfg)
    planned, summary = plan_run(out, jobs, local_backbones, cfg.batch_videos)
    decode_remote = ray.remote(num_cpus=1, max_retries=3)(_timed_decode)
    actor_cpus = _actor_cpus(options.cpus_per_worker, num_workers, resources.get("CPU", 0.0), bool(gpus_per_worker))
    worker_cls = ray.remote(num_cpus=actor_cpus, num_gpus=gpus_per_worker, max_restarts=3, max_task_retries=3)(BackboneWorker)
    # CPU kernels may split reductions by thread count: the embedded cluster gives actors the driver's
    # torch thread count so that their numbers equal the local executor's bit for bit
    if gpus_per_worker:
        threads = None
    elif options.address:
        threads = max(1, int(options.cpus_per_worker))
    else:
        import torch

        threads = torch.get_num_threads()
    workers = [worker_cls.remote(cfg, threads) for _ in range(num_workers)]
    cfg_ref = ray.put(cfg)
    batches = deque(planned)
    in_flight: dict[Any, int] = {}  # result ref -> worker index
    load = [0] * num_workers
    max_in_flight = 2 * num_workers
    sink = open_sink(out, local_backbones, cfg)
    try:
        # label-text arrays come from a worker: the driver never builds a model (the backbones it builds
        # only resolve weights and describe outputs; models are built on first use)
        sink.write_dataset_arrays(ray.get(workers[0].dataset_arrays.remote()))
        with progress_bar(summary.to_compute, options.progress) as bar:
            while batches or in_flight:
                while batches and len(in_flight) < max_in_flight:
                    batch = batches.popleft()
                    w = min(range(num_workers), key=load.__getitem__)
                    decoded = [decode_remote.remote(job, cfg_ref, need) for job, need in batch]
                    ref = workers[w].run.remote([j for j, _ in batch], [n for _, n in batch], *decoded)
                    in_flight[ref] = (w, batch)
                    load[w] += 1
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    w, batch = in_flight.pop(ref)
                    load[w] -= 1
                    try:
                        results: list[VideoResult] = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        # Ray already retried the batch (task and actor restarts); what is left is recorded
                        message = f"{type(err).__name__} after retries: {str(err).splitlines()[0][:500]}"
                        results = [VideoResult(job, failures=[StageFailure("worker", message)]) for job, _ in batch]
                    sink.write_all(results, summary)
                    bar.update(len(results))
                    bar.set_postfix(failed=sink.failed)
    finally:
        sink.close()
        for w in workers:
            ray.kill(w)
    return summary.finish(sink, t_start)


@EXECUTORS.register("ray")
def _ray(jobs: Sequence[VideoJob], cfg: ExtractionConfig, out: str, options: ExecutorOptions) -> RunSummary:
    return run_ray(jobs, cfg, out, options)


__all__ = ["run_ray", "init_ray", "BackboneWorker", "StageFailure", "node_name"]
