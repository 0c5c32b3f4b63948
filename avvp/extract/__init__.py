"""Extraction: video files → decoded windows → backbone features.

Decoding (`avvp.extract.decode`) turns a file into a `DecodedVideo`: 80 uint8 RGB frames at native
resolution, selected exactly like the AVVP reference (`ffmpeg -r 8` + linspace), and mono float32
audio at 16 and 48 kHz (48 kHz bit-identical to VALOR's `librosa.load`). Backends (ffmpeg, decord)
register in `DECODERS`. Backbones (`avvp.extract.backbones`) and the `extract()` API (`avvp.extract.api`)
build on it. `avvp.extract.extract(...)` and `avvp.extract.network_inputs(...)` (the exact arrays each
network receives) come from `avvp.extract.api`, imported on first use.
"""
from avvp.extract.decode import (
    DECODERS,
    DEFAULT_DECODER,
    DecodedVideo,
    DecodeError,
    DecodeOptions,
    Decoder,
    MediaInfo,
    decode_video,
    iter_windows,
    probe,
)

__all__ = [
    "DECODERS",
    "DEFAULT_DECODER",
    "DecodedVideo",
    "DecodeError",
    "DecodeOptions",
    "Decoder",
    "MediaInfo",
    "decode_video",
    "iter_windows",
    "probe",
    "extract",
    "network_inputs",
]


def __getattr__(name: str):
    # the API pulls in the pipeline and the backbones; importing avvp.extract alone stays light
    if name in ("extract", "network_inputs", "dump_network_inputs", "ExtractionError"):
        from avvp.extract import api

        return getattr(api, name)
    raise AttributeError(f"module 'avvp.extract' has no attribute {name!r}")
