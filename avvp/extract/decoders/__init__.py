"""Decoding backends, one module each, registered in `DECODERS` (avvp.extract.decode.backend).

* `ffmpeg`  (`ffmpeg_pipe.py`): one ffmpeg process per window, `-r 8` rawvideo + f32le audio pipes
  (clean profile); `ffmpeg_reference.py`: mjpeg image2pipe + moviepy/librosa audio (reference profile).
* `decord`  (`decord_reader.py`): decord `VideoReader.get_batch` on the frame indices that the port
  of ffmpeg's rate conversion computes; audio through ffmpeg (same code as the ffmpeg backend).
  Clean profile only (there is no JPEG round trip without ffmpeg's encoder).

The backends import the decode package's modules; the decode package never imports this package at
module level. `DECODERS` calls `register_backends()` before its first lookup.
"""


def register_backends() -> None:
    """Import every backend module; each one's `@DECODERS.register` runs on import. A new backend
    adds its module here."""
    from avvp.extract.decoders import decord_reader, ffmpeg_pipe  # noqa: F401  (registration)
