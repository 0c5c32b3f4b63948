"""The Python API of extraction: `extract(video_path, backbones)` and `dump_network_inputs(jobs, cfg, dir)`.

`extract` runs exactly the code the CLI runs (decode_job + run_backbones of avvp.pipeline.core), for one
video. Keys are store paths ("features/clip", "zeroshot/clip", ...) plus "videos/duration" and
"videos/has_audio". Built backbones are cached per configuration, so calling it in a loop is cheap.

`dump_network_inputs` writes every backbone's network inputs (`avvp.extract.network_inputs`, the exact
arrays a network receives) as one .npz per video (`avvp-extract --dump-inputs DIR`).
"""
from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avvp.extract.inputs import ExtractionError
from avvp.pipeline.core import ExtractionConfig, StageFailure, decode_job, load_backbones, run_backbones
from avvp.pipeline.jobs import VideoJob

__all__ = ["ExtractionError", "dump_network_inputs", "extract"]


@lru_cache(maxsize=4)
def _backbones(cfg: ExtractionConfig):
    return tuple(load_backbones(cfg))


def extract(video_path: str, backbones: Sequence[str] = ("clip",), **config: Any) -> dict[str, np.ndarray]:
    """Extract the given backbones' arrays for one video. `config` fields: see ExtractionConfig
    (profile, weights, weights_dir, device, start, window, decoder, backbone_options)."""
    cfg = ExtractionConfig(backbones=tuple(backbones), **config)
    job = VideoJob(id=str(video_path), path=str(video_path))
    decoded = decode_job(job, cfg)
    if isinstance(decoded, StageFailure):
        raise ExtractionError(f"{video_path}: {decoded.stage}: {decoded.message}")
    (result,) = run_backbones(_backbones(cfg), [job], [decoded])
    if result.failures:
        raise ExtractionError("; ".join(f"{video_path}: {f.stage}: {f.message}" for f in result.failures))
    out: dict[str, np.ndarray] = {}
    for arrays in result.arrays.values():
        out.update(arrays)
    out["videos/duration"] = np.float32(result.duration)
    out["videos/has_audio"] = np.bool_(result.has_audio)
    return out


def dump_network_inputs(jobs: Sequence[VideoJob], cfg: ExtractionConfig, out_dir: str | os.PathLike) -> tuple[int, list[tuple[str, str]]]:
    """Write `<out_dir>/<job id>.npz` with every backbone's network inputs, keys "<backbone>/<name>"
    (e.g. "clip/pixels"), plus "profile". One decode per video serves all backbones, built without
    weights (the preprocessing needs none). Returns (videos written, [(job id, error message)])."""
    cfg = dataclasses.replace(cfg, weights="none", weights_dir=None)
    backbones = _backbones(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, failed = 0, []
    for job in jobs:
        decoded = decode_job(job, cfg)
        if isinstance(decoded, StageFailure):
            failed.append((job.id, f"{decoded.stage}: {decoded.message}"))
            continue
        arrays: dict[str, np.ndarray] = {"profile": np.array(cfg.profile)}
        try:
            for b in backbones:
                arrays.update({f"{b.name}/{k}": v for k, v in b.network_inputs(decoded).items()})
        except Exception as err:  # noqa: BLE001 - one bad video must not stop the dump
            failed.append((job.id, f"{type(err).__name__}: {err}"))
            continue
        target = out / f"{job.id}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez(target, **arrays)
        written += 1
    return written, failed
