"""Executor registry: `--executor NAME` picks how extraction jobs are scheduled.

An executor is a callable `(jobs, cfg, out, options) -> RunSummary`; `options` holds the scheduling
knobs of the command line (address, workers, GPUs per worker, progress). Adding one is a module and a
`@EXECUTORS.register(name)` line, plus the module in the registry's `providers` (imported on first lookup).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from avvp.pipeline.core import ExtractionConfig, RunSummary
from avvp.pipeline.jobs import VideoJob
from avvp.pipeline.local import run_local
from avvp.registry import Registry


@dataclass(frozen=True)
class ExecutorOptions:
    address: str | None = None  # Ray: None = start an embedded local cluster
    num_workers: int | None = None  # Ray: model actors (default: one per GPU, else 1)
    gpus_per_worker: float | None = None  # Ray: None = 1 per actor when the cluster has GPUs, else 0
    cpus_per_worker: float = 1.0
    progress: bool = True
    object_store_mb: int = 512
    connect_timeout: float = 120.0  # Ray --address: seconds to retry the connection and to wait for the workers


Executor = Callable[[Sequence[VideoJob], ExtractionConfig, str, ExecutorOptions], RunSummary]
EXECUTORS: Registry[Executor] = Registry("executor", providers=("avvp.pipeline.ray_executor",))


@EXECUTORS.register("local")
def _local(jobs: Sequence[VideoJob], cfg: ExtractionConfig, out: str, options: ExecutorOptions) -> RunSummary:
    return run_local(jobs, cfg, out, progress=options.progress)
