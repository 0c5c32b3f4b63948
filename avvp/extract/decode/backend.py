"""The backend contract: the `Decoder` base class and the `DECODERS` registry (with `DEFAULT_DECODER`).

The backends live in `avvp/extract/decoders/` and import this package's modules, so this module must not
import them at module level (that was an import circle). `DECODERS` imports them instead, once, right
before its first lookup (`avvp.extract.decoders.register_backends`); importing a backend module
directly registers it too.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Iterator

from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.rules import num_windows
from avvp.extract.decode.video import DecodedVideo, DecodeOptions
from avvp.registry import Registry


class Decoder(abc.ABC):
    """A decoding backend. Subclasses set `name`, implement `decode`, register in `DECODERS`."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def decode(self, info: MediaInfo, options: DecodeOptions) -> DecodedVideo:
        """Decode one window of a probed file (`info` from `probe(path, with_timeline=True)`)."""

    def iter_windows(self, info: MediaInfo, options: DecodeOptions) -> Iterator[DecodedVideo]:
        """Consecutive windows from options.start to the end. Each is decoded on its own with a seek,
        so memory stays at one window and window k equals decode(start=k*window)."""
        for k in range(num_windows(info.duration - options.start, options.window, options.fps)):
            yield self.decode(info, dataclasses.replace(options, start=options.start + k * options.window))


def _register_backends() -> None:
    # a function-level import: the backends import the decode package, which must not import them back
    from avvp.extract.decoders import register_backends

    register_backends()


DECODERS: Registry[type[Decoder]] = Registry("decoder", load=_register_backends)


# The default backend, chosen by benchmarks/decode.py (docs/decoding.md): ffmpeg is pixel-identical
# to the reference on every container tested, decord fails on VP9/webm.
DEFAULT_DECODER = "ffmpeg"
