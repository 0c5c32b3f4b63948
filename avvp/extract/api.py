"""The Python API of extraction: `extract(video_path, backbones) -> dict[str, ndarray]`.

It runs exactly the code the CLI runs (decode_job + run_backbones of avvp.pipeline.core), for one video.
Keys are store paths ("features/clip", "zeroshot/clip", ...) plus "videos/duration" and
"videos/has_audio". Built backbones are cached per configuration, so calling it in a loop is cheap.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from avvp.pipeline.core import ExtractionConfig, StageFailure, decode_job, load_backbones, run_backbones
from avvp.pipeline.jobs import VideoJob


class ExtractionError(RuntimeError):
    """A video could not be decoded or a backbone failed on it; the message says which stage."""


@lru_cache(maxsize=4)
def _backbones(cfg: ExtractionConfig):
    return tuple(load_backbones(cfg))


def extract(video_path: str, backbones: Sequence[str] = ("clip",), **config: Any) -> dict[str, np.ndarray]:
    """Extract the given backbones' arrays for one video. `config` fields: see ExtractionConfig
    (weights, weights_dir, device, start, window, decoder, backbone_options)."""
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
