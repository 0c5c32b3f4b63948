"""The Python API of extraction: `extract(video_path, backbones)` and `network_inputs(video_path, backbone)`.

`extract` runs exactly the code the CLI runs (decode_job + run_backbones of avvp.pipeline.core), for one
video. Keys are store paths ("features/clip", "zeroshot/clip", ...) plus "videos/duration" and
"videos/has_audio". Built backbones are cached per configuration, so calling it in a loop is cheap.

`network_inputs` returns the exact arrays a backbone's network receives for one video (docs/backbones.md),
through the same decode and preprocessing functions as extraction, without any network or weights:

    resnet152 -> {"pixels": (80, 3, 224, 224)}     r2plus1d -> {"pixels": (10, 3, 8, 112, 112)}
    clip      -> {"pixels": (10, 3, 224, 224)}     vggish   -> {"log_mel": (10, 96, 64)}
    clap      -> {"clap_segments": (10, L // 10), "clap_tokens": (480000,)}

`dump_network_inputs` writes them as one .npz per video (`avvp-extract --dump-inputs DIR`).
"""
from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path
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


def _inputs_config(backbones: Sequence[str], config: dict[str, Any]) -> ExtractionConfig:
    # the preprocessing needs no weights: build the backbones with weights="none" unless told otherwise
    config = {"weights": "none", "device": "cpu", **config}
    return ExtractionConfig(backbones=tuple(backbones), **config)


def network_inputs(video_path: str | os.PathLike, backbone: str, **config: Any) -> dict[str, np.ndarray]:
    """The exact float32 arrays `backbone`'s network receives for one video (keys: module docstring).
    `config` fields: see ExtractionConfig (profile, start, window, decoder, backbone_options, ...)."""
    cfg = _inputs_config((backbone,), config)
    (model,) = _backbones(cfg)
    job = VideoJob(id=str(video_path), path=str(video_path))
    decoded = decode_job(job, cfg)
    if isinstance(decoded, StageFailure):
        raise ExtractionError(f"{video_path}: {decoded.stage}: {decoded.message}")
    return model.network_inputs(decoded)


def dump_network_inputs(jobs: Sequence[VideoJob], cfg: ExtractionConfig, out_dir: str | os.PathLike) -> tuple[int, list[tuple[str, str]]]:
    """Write `<out_dir>/<job id>.npz` with every backbone's network inputs, keys "<backbone>/<name>"
    (e.g. "clip/pixels"), plus "profile". One decode per video serves all backbones. Returns (videos
    written, [(job id, error message)])."""
    cfg = _inputs_config(cfg.backbones, {k: v for k, v in dataclasses.asdict(cfg).items()
                                         if k not in ("backbones", "weights", "weights_dir")})
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
