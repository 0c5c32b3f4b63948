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

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any, Sequence

from avvp.pipeline.core import (
    ExtractionConfig, RunSummary, StageFailure, VideoResult, dataset_arrays, decode_job, load_backbones, open_sink,
    plan_run, progress_bar, run_backbones,
)
from avvp._extras import require_extra
from avvp.faults import OneLineError
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


def _gpus_per_worker(options: ExecutorOptions, resources: dict[str, float]) -> float:
    """--gpus-per-worker, else one GPU per actor when the cluster has GPUs (none otherwise)."""
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    return 1.0 if resources.get("GPU", 0) else 0.0


class ClusterUnreachable(OneLineError):
    """No Ray cluster answered at --address before --connect-timeout."""


def _say(message: str) -> None:
    print(f"avvp-extract: {message}", file=sys.stderr, flush=True)


def _endpoint(address: str) -> tuple[str, int, str] | None:
    """(host, port, what listens there) of a `ray://host:port` or `host:port` address; None for 'auto'."""
    if address.startswith("ray://"):
        rest, what = address[len("ray://"):], "Ray client server"
    else:
        rest, what = address, "Ray GCS"
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port), what


def _port_answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def connect_cluster(address: str, timeout: float, poll: float = 2.0, say_every: float = 10.0) -> None:
    """ray.init(address) retried until `timeout` seconds: a cluster started together with the job (one
    `docker compose up`) may not answer yet, or its client server may still refuse (\"Starting Ray client
    server failed\"). Says what it waits for (at most every `say_every` s); at the deadline raises
    ClusterUnreachable naming the address and what did not answer. The TCP port is checked first because
    ray.init itself waits 30 s (client) or minutes (GCS) on an address where nothing listens."""
    import ray

    endpoint = _endpoint(address)
    t0 = time.monotonic()
    deadline = t0 + timeout
    last_said, waiting_for = -say_every, ""
    while True:
        if endpoint is not None and not _port_answers(endpoint[0], endpoint[1]):
            waiting_for = f"the {endpoint[2]} at {endpoint[0]}:{endpoint[1]} does not accept connections"
        else:
            try:
                ray.init(address=address, log_to_driver=False)
                if waiting_for:
                    _say(f"connected to the Ray cluster at {address} after {time.monotonic() - t0:.0f} s")
                return
            except Exception as err:  # noqa: BLE001 - whatever a cluster that is still starting raises
                first = (str(err).strip().splitlines() or [""])[0][:300]
                waiting_for = f"ray.init failed: {type(err).__name__}: {first}"
                with contextlib.suppress(Exception):
                    ray.shutdown()
        now = time.monotonic()
        if now >= deadline:
            raise ClusterUnreachable(f"no Ray cluster answered at {address} within {timeout:g} s ({waiting_for}); "
                                     "start the cluster or check --address (--connect-timeout to wait longer)")
        if now - last_said >= say_every:
            _say(f"waiting for the Ray cluster at {address}: {waiting_for} "
                 f"({now - t0:.0f} of {timeout:g} s, --connect-timeout)")
            last_said = now
        time.sleep(min(poll, max(0.0, deadline - now)))


def wait_for_workers(ray, num_workers: int, cpus_per_worker: float, gpus_per_worker: float, timeout: float,
                     poll: float = 2.0, say_every: float = 10.0) -> None:
    """Wait (up to `timeout` s) until the joined cluster can place the `num_workers` actors asked for, each
    with its reservation (GPU actors: GPUs; CPU actors: CPUs), so that a job started with its cluster
    does not schedule on the first nodes that happen to be up. At the deadline it goes on with what is
    there (Ray queues what does not fit) and says so."""
    need, kind = (num_workers * gpus_per_worker, "GPU") if gpus_per_worker else (num_workers * cpus_per_worker, "CPU")
    t0 = time.monotonic()
    last_said = t0  # the first line after `say_every`: a cluster that is up needs no line
    while True:
        have = ray.cluster_resources().get(kind, 0.0)
        now = time.monotonic()
        if have >= need:
            if now - t0 >= say_every:
                _say(f"the cluster has {have:g} {kind}s for {num_workers} workers after {now - t0:.0f} s")
            return
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        if now - t0 >= timeout:
            _say(f"after {timeout:g} s the cluster has {have:g} of the {need:g} {kind}s that {num_workers} workers "
                 f"(--num-workers) ask for ({nodes} nodes); going on: Ray queues what does not fit")
            return
        if now - last_said >= say_every:
            _say(f"waiting for workers: {num_workers} x {need / num_workers:g} {kind} (--num-workers); the cluster "
                 f"has {have:g} {kind}s on {nodes} nodes ({now - t0:.0f} of {timeout:g} s)")
            last_said = now
        time.sleep(poll)


def init_ray(options: ExecutorOptions):
    """Join a cluster (options.address, retried until options.connect_timeout) or start the safe embedded one."""
    from avvp._env import ray_defaults

    ray_defaults()  # before `import ray`: loopback-only listeners, no auth token file (user values kept)
    import ray

    if ray.is_initialized():
        return ray
    if options.address:
        connect_cluster(options.address, options.connect_timeout)
    else:
        import signal

        # an embedded head node installs Ray's SIGTERM handler (kill the node, exit 1); the command's own
        # handler (avvp.faults: commit what is computed, one line, exit 143) is put back: the node's
        # processes still go with the driver (Ray's atexit hook)
        sigterm = signal.getsignal(signal.SIGTERM)
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=options.object_store_mb * 1024 * 1024,
            _temp_dir=os.path.join(tempfile.gettempdir(), "avvp-ray"),
            log_to_driver=False,
            configure_logging=False,
        )
        if callable(sigterm) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    return ray


def run_ray(jobs: Sequence[VideoJob], cfg: ExtractionConfig, out: str, options: ExecutorOptions) -> RunSummary:
    require_extra(("extract", "ray"), "the Ray executor", " (or --executor local)")
    ray = init_ray(options)
    t_start = time.perf_counter()
    if options.address and options.num_workers:
        wait_for_workers(ray, options.num_workers, options.cpus_per_worker,
                         _gpus_per_worker(options, ray.cluster_resources()), options.connect_timeout)
    resources = ray.cluster_resources()
    gpus_available = resources.get("GPU", 0)
    gpus_per_worker = _gpus_per_worker(options, resources)
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


__all__ = ["run_ray", "init_ray", "connect_cluster", "wait_for_workers", "ClusterUnreachable", "BackboneWorker", "StageFailure", "node_name"]
