"""The decord backend: random access on the frames ffmpeg's `-r 8` would pick.

The 8 fps frame set is computed, not decoded: `cfr_frame_sources` (a port of ffmpeg's rate
conversion, run on the packet timestamps from ffprobe) says which source frame every output frame
shows; the reference linspace picks 80 of them and `VideoReader.get_batch` decodes those. Audio is
decoded by ffmpeg on a thread while decord works (measured faster and identical to the ffmpeg
backend's audio; decord's AudioReader decodes the whole file and downmixes with ffmpeg's matrix).

decord 0.6 applies the rotation metadata itself (checked for 90/180/270 against ffmpeg). Known decord
problems (docs/decoding.md): VP9/webm fails with "Error sending packet"; frame indices can be off
on files with messy timestamps. Failures surface as DecodeError.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np

from avvp.extract.decode.backend import DECODERS, Decoder
from avvp.extract.decode.probe import MediaInfo
from avvp.extract.decode.rate import cfr_frame_sources, frame_times_of
from avvp.extract.decode.rules import check_decodable, output_size, select_fps_frames
from avvp.extract.decode.video import DecodedVideo, DecodeError, DecodeOptions
from avvp.extract.decode.result import SelectedFrames, assemble, stderr_warnings
from avvp.extract.decoders.ffmpeg_pipe import decode_audio


@DECODERS.register("decord")
class DecordDecoder(Decoder):
    name = "decord"

    def decode(self, info: MediaInfo, options: DecodeOptions) -> DecodedVideo:
        if options.profile == "reference":
            raise ValueError("the reference profile needs the ffmpeg decoder (its frames go through ffmpeg's "
                             "mjpeg encoder, as the official scripts' JPEGs did); use decoder='ffmpeg' or profile='clean'")
        check_decodable(info, options)
        if not options.video and not info.audio:  # audio-only request, file without audio: zeros
            return assemble(info, options, decoder=self.name)
        audio_opts = dataclasses.replace(options, audio_rates=options.audio_rates if info.audio else ())
        audio_result: dict = {}

        def run_audio() -> None:
            try:
                audio_result["value"] = decode_audio(info, audio_opts)
            except BaseException as e:  # noqa: BLE001 — handed to the caller below
                audio_result["error"] = e

        audio_thread = threading.Thread(target=run_audio, daemon=True)
        audio_thread.start()
        try:
            video = self._frames(info, options) if options.video else None
        finally:
            audio_thread.join()
        if "error" in audio_result:
            raise audio_result["error"]
        audio, stderr = audio_result["value"]
        warnings = stderr_warnings(stderr)
        if video is None:
            return assemble(info, options, decoder=self.name, audio=audio, warnings=warnings)
        selected, video_warnings = video
        return assemble(info, options, decoder=self.name, video=selected, audio=audio,
                        warnings=warnings + video_warnings)

    def _frames(self, info: MediaInfo, options: DecodeOptions) -> tuple[SelectedFrames, list[str]]:
        import decord

        assert info.video is not None
        if info.timeline is None or not len(info.timeline.pts):
            raise DecodeError("decord backend needs packet timestamps (probe with_timeline)", path=info.path)
        sources = cfr_frame_sources(info, fps=options.fps, start=options.start, duration=options.window,
                                    max_frames=options.max_fps_frames)
        n = len(sources)
        if n == 0:
            raise DecodeError(f"no video frames in [{options.start}, {options.start + options.window}) s",
                              path=info.path)
        fps_indices, rule = select_fps_frames(n, options.num_frames)
        chosen = sources[fps_indices]
        unique, inverse = np.unique(chosen, return_inverse=True)
        w, h = output_size(info.video.width, info.video.height, options.max_side)
        size_kw = {} if options.max_side is None else {"width": w, "height": h}
        warnings: list[str] = []
        try:
            reader = decord.VideoReader(info.path, ctx=decord.cpu(0), **size_kw)
            if len(reader) != len(info.timeline.pts):
                warnings.append(f"decord counts {len(reader)} frames, ffprobe {len(info.timeline.pts)} packets")
            if unique[-1] >= len(reader):
                raise DecodeError(f"decord has {len(reader)} frames, frame {int(unique[-1])} needed", path=info.path)
            batch = reader.get_batch(unique.tolist()).asnumpy()
            del reader
        except decord.DECORDError as e:
            raise DecodeError(f"decord failed: {str(e).strip().splitlines()[-1][-300:]}", path=info.path) from None
        if batch.shape[1:3] != (h, w):
            raise DecodeError(f"decord frames are {batch.shape[2]}x{batch.shape[1]}, expected {w}x{h}",
                              path=info.path)
        frames = batch[inverse]
        selected = SelectedFrames(frames=frames, fps_indices=fps_indices, num_fps_frames=n, rule=rule,
                                  times=frame_times_of(info, chosen))
        return selected, warnings
