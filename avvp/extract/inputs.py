"""The exact arrays each backbone's network receives: `network_inputs(video_path, backbone)`.

Same decode and preprocessing functions as extraction (avvp.pipeline runs them too), without any network
or weights (docs/backbones.md):

    resnet152 -> {"pixels": (80, 3, 224, 224)}     r2plus1d -> {"pixels": (10, 3, 8, 112, 112)}
    clip      -> {"pixels": (10, 3, 224, 224)}     vggish   -> {"log_mel": (10, 96, 64)}
    clap      -> {"clap_segments": (10, L // 10), "clap_tokens": (480000,)}

Also the two rules extraction and the inputs share: which streams a set of backbones reads
(`streams_for`) and which decoders a profile admits (`check_profile`). Extracting features over a video is
`avvp.pipeline.extract` (it runs the executor core).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Iterable

import numpy as np


class ExtractionError(RuntimeError):
    """A video could not be decoded or a backbone failed on it; the message says which stage."""


def check_profile(profile: str, decoder: str | None) -> None:
    """Raise ValueError unless `profile` is known and `decoder` can produce its inputs."""
    from avvp.extract.decode import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if profile == "reference" and decoder not in (None, "ffmpeg"):
        raise ValueError(f"the reference profile needs the ffmpeg decoder (got decoder={decoder!r}); "
                         "use profile='clean' for other decoders")


def streams_for(backbone_names: Iterable[str]) -> tuple[bool, tuple[int, ...]]:
    """(decode video?, audio rates) that the named backbones read: a vggish-only run never decodes frames
    (measured: decode+preprocess 1.6x faster for vggish, benchmarks/extract.py)."""
    from avvp.extract.backbones import BACKBONES

    classes = [BACKBONES.get(name) for name in backbone_names]
    rates = tuple(rate for rate, flag in ((16000, "needs_audio_16k"), (48000, "needs_audio_48k"))
                  if any(getattr(c, flag) for c in classes))
    return any(c.needs_frames for c in classes), rates


@lru_cache(maxsize=4)
def _preprocessing(name: str, config):
    from avvp._extras import require_extra
    from avvp.extract.backbones import BACKBONES

    require_extra("extract", "network_inputs")
    return BACKBONES.get(name)(config)


def network_inputs(
    video_path: str | os.PathLike,
    backbone: str,
    *,
    profile: str = "reference",
    start: float = 0.0,
    window: float = 10.0,
    decoder: str | None = None,
    backbone_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (),
    weights: str = "none",
    weights_dir: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """The exact float32 arrays `backbone`'s network receives for one video (keys: module docstring).
    The keywords mean what the ExtractionConfig fields of the same name mean; the preprocessing needs no
    weights, so the backbone is built with weights="none" unless told otherwise."""
    from avvp.extract.backbones import BackboneConfig
    from avvp.extract.decode import DEFAULT_DECODER, DecodeError, decode_video

    check_profile(profile, decoder)
    device = "cpu" if device == "auto" else device  # no network runs: "auto" needs no accelerator
    config = BackboneConfig(weights=weights, weights_dir=weights_dir, device=device, precision=precision,
                            options=dict(backbone_options).get(backbone, ()), profile=profile)
    model = _preprocessing(backbone, config)
    video, rates = streams_for((backbone,))
    try:
        decoded = decode_video(str(video_path), start=start, window=window, decoder=decoder or DEFAULT_DECODER,
                               video=video, require_video=True, audio_rates=rates, profile=profile)
    except DecodeError as err:
        raise ExtractionError(f"{video_path}: decode: {err}") from err
    except FileNotFoundError as err:
        raise ExtractionError(f"{video_path}: decode: file not found: {err}") from err
    return model.network_inputs(decoded)
