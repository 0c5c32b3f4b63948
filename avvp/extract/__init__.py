"""Extraction: video files → decoded windows → backbone features.

Decoding (`avvp.extract.decode`) turns a file into a `DecodedVideo`: 80 uint8 RGB frames at native
resolution, selected exactly like the AVVP reference (`ffmpeg -r 8` + linspace), and mono float32
audio at 16 and 48 kHz (48 kHz bit-identical to VALOR's `librosa.load`). Backends (ffmpeg, decord)
register in `DECODERS`. Backbones (`avvp.extract.backbones`) and the `extract()` API (`avvp.extract.api`)
build on it.
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
]
