"""The in-process executor: decode and run backbones batch by batch in this process.

Used for debugging and as the reference the Ray executor is compared against value for value.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

from tqdm import tqdm

from avvp.pipeline.core import (
    ExtractionConfig, StoreSink, decode_job, load_backbones, missing_backbones, run_backbones,
)
from avvp.pipeline.jobs import VideoJob


@dataclass
class RunSummary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
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
            f"(of {self.total}); {self.clips_per_second:.2f} clips/s over {self.seconds:.1f}s; per stage: {stages or '-'}",
            file=file,
        )


def progress_bar(total: int, enabled: bool = True) -> tqdm:
    return tqdm(total=total, unit="video", desc="avvp-extract", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


def run_local(
    jobs: Sequence[VideoJob], cfg: ExtractionConfig, out: str, *, progress: bool = True, backbones=None
) -> RunSummary:
    t_start = time.perf_counter()
    backbones = backbones if backbones is not None else load_backbones(cfg)
    needs = missing_backbones(out, jobs, backbones)
    todo = [(job, need) for job, need in zip(jobs, needs) if need]
    summary = RunSummary(total=len(jobs), skipped=len(jobs) - len(todo))
    sink = StoreSink(out, backbones)
    try:
        sink.write_dataset_arrays()
        with progress_bar(len(todo), progress) as bar:
            for start in range(0, len(todo), cfg.batch_videos):
                batch = todo[start : start + cfg.batch_videos]
                t0 = time.perf_counter()
                decoded = [decode_job(job, cfg, need) for job, need in batch]
                summary.add_stage("decode", time.perf_counter() - t0)
                results = run_backbones(backbones, [j for j, _ in batch], decoded, [n for _, n in batch])
                for r in results:
                    for stage, sec in r.seconds.items():
                        summary.add_stage(stage, sec)
                    sink.write(r)
                bar.update(len(batch))
                bar.set_postfix(failed=sink.failed)
    finally:
        sink.close()
    summary.done, summary.failed = sink.done, sink.failed
    summary.seconds = time.perf_counter() - t_start
    return summary
