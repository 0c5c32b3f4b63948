"""Extraction: video files → decoded windows → backbone features.

Decoding (`avvp.extract.decode`) turns a file into a `DecodedVideo`: 80 uint8 RGB frames at native
resolution, selected exactly like the AVVP reference (`ffmpeg -r 8` + linspace), and mono float32
audio at 16 and 48 kHz (48 kHz bit-identical to VALOR's `librosa.load`). Backends (ffmpeg, decord)
register in `DECODERS`. Backbones (`avvp.extract.backbones`) build on it, and
`avvp.extract.network_inputs(...)` (`avvp.extract.inputs`, imported on first use) returns the exact arrays
each network receives. Extracting features is `avvp.pipeline.extract` (it runs the executor core, a later
stage of the flow).
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
    "network_inputs",
    "ExtractionError",
]

# names that moved to avvp.pipeline (they run the executor core): a clear error instead of an upward import
MOVED_TO_PIPELINE = ("extract", "dump_network_inputs")


def __getattr__(name: str):
    # the inputs pull in the backbones; importing avvp.extract alone stays light
    if name in ("network_inputs", "ExtractionError"):
        from avvp.extract import inputs

        return getattr(inputs, name)
    if name in MOVED_TO_PIPELINE:
        # ImportError, not AttributeError: `from avvp.extract import extract` would replace an
        # AttributeError's message with a generic "cannot import name"
        raise ImportError(f"avvp.extract.{name} moved: use avvp.pipeline.{name} "
                          f"(`from avvp.pipeline import {name}`)", name="avvp.extract")
    raise AttributeError(f"module 'avvp.extract' has no attribute {name!r}")
