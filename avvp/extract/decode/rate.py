"""A port of ffmpeg 5.1's constant-frame-rate output logic (`-r 8`): which source frame each output frame
shows (`cfr_frame_sources`) and when it was shown (`frame_times_of`). It gives every backend its
`frame_times` and the decord backend its frame indices; tests check it against ffmpeg's own output.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from avvp.extract.decode.probe import MediaInfo


def _rescale(a: int, b: Fraction, c: Fraction) -> int:
    """av_rescale_q(a, b, c) with ffmpeg's default rounding (to nearest, halves away from zero)."""
    num = a * b.numerator * c.denominator
    den = b.denominator * c.numerator
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def _lrintf(x: float) -> int:
    # C lrintf: the double is first narrowed to float, then rounded half-to-even (FE_TONEAREST)
    return int(round(float(np.float32(x))))


def cfr_frame_sources(
    info: MediaInfo, *, fps: int = 8, start: float = 0.0, duration: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Which source frame each output frame of `ffmpeg [-ss start] -t duration -i f -r fps` shows.

    A port of ffmpeg 5.1's `do_video_out` in constant-frame-rate mode ("vsync cfr"; "vscfr" for
    single-stream inputs), with the input trim that `-ss`/`-t` insert, evaluated on the packet
    timestamps. Returns int64 indices into the presentation-ordered frames of the whole file
    (the numbering decord uses). The rules, in output-frame units (1/fps s):
      * sync_ipts = frame pts rescaled with 16 extra bits, nudged by 2^-17 away from exact halves;
      * duration = min(1/(stream fps), 1 frame), or the packet duration when it rounds to >= 1;
      * delta0 = sync_ipts - frames_out, delta = delta0 + duration; a frame is dropped when
        delta < -1.1, emitted lrintf(delta) times when delta > 1.1 (the first lrintf(delta0-0.6) of
        those are copies of the previous frame), else once; when delta0 < 0 < delta the frame is
        clipped to the current output time;
      * at the end the last frame is repeated median(last three "previous-frame copy" counts) times.
    Tests compare it with ffmpeg's own output on CFR, VFR, low-fps, delayed-start and windowed
    inputs. ffmpeg ≥ 6.1 moved this code; if it changes behaviour there the tests will say so.
    """
    if info.video is None or info.timeline is None:
        raise ValueError("cfr_frame_sources needs probe(..., with_timeline=True) of a video file")
    tl = info.timeline
    tb = tl.time_base
    enc_tb = Fraction(1, fps)
    seek_us = int(round(start * 1_000_000)) if start > 0 else None
    # ffmpeg shifts input timestamps so that the container start (+ the seek point) becomes 0
    offset = _rescale(-(info.start_time_us + (seek_us or 0)), Fraction(1, 1_000_000), tb)
    extra_bits = max(0, min(16, 29 - (fps.bit_length() - 1)))
    precise_tb = Fraction(1, fps << extra_bits)
    frame_rate = Fraction(info.video.fps).limit_denominator(1_000_000)
    base_duration = 1.0 / (float(frame_rate) * float(enc_tb)) if frame_rate > 0 else 0.0
    if info.video.start_time is not None:
        base_duration = min(base_duration, 1.0 / (fps * float(enc_tb)))
    vscfr = info.num_streams == 1
    trim_duration = _rescale(int(round(duration * 1_000_000)), Fraction(1, 1_000_000), tb) if duration else None

    out: list[int] = []
    sync_opts = 0
    last: int | None = None
    last_nb0 = [0, 0, 0]
    first_kept: int | None = None
    limit = max_frames if max_frames is not None else 1 << 62
    for i, (p, d) in enumerate(zip(tl.pts.tolist(), tl.durations.tolist())):
        rel = p + offset
        if seek_us is not None and rel < 0:  # trim after an accurate seek drops earlier frames
            continue
        if first_kept is None:
            first_kept = rel
        if trim_duration is not None and rel - first_kept >= trim_duration:
            break
        sync_ipts = _rescale(rel, tb, precise_tb) / (1 << extra_bits)
        sync_ipts += (1 if sync_ipts > 0 else -1 if sync_ipts < 0 else 0) / (1 << 17)
        dur = base_duration
        pkt_frames = _lrintf(d * float(tb) / float(enc_tb)) if d else 0
        if pkt_frames > 0:
            dur = float(pkt_frames)
        delta0 = sync_ipts - sync_opts
        delta = delta0 + dur
        nb0, nb = 0, 1
        if delta0 < 0 and delta > 0:
            sync_ipts = float(sync_opts)
            dur += delta0
            delta0 = 0.0
        if vscfr and not out and delta0 >= 0.5:  # "not duplicating initial frames"
            delta = dur
            delta0 = 0.0
            sync_opts = int(round(sync_ipts))
        if delta < -1.1:
            nb = 0
        elif delta > 1.1:
            nb = _lrintf(delta)
            if delta0 > 1.1:
                nb0 = _lrintf(delta0 - 0.6)
        nb = min(nb, limit - len(out))
        nb0 = min(nb0, nb)
        last_nb0 = [nb0] + last_nb0[:2]
        for k in range(nb):
            out.append(last if (k < nb0 and last is not None) else i)
            sync_opts += 1
        last = i
    if last is not None:
        for _ in range(min(sorted(last_nb0)[1], limit - len(out))):
            out.append(last)
    return np.asarray(out, np.int64)


def frame_times_of(info: MediaInfo, sources: np.ndarray) -> np.ndarray:
    """Source timestamps (seconds on the file's timeline, 0 = container start) of frames by index."""
    tl = info.timeline
    assert tl is not None
    pts = tl.pts[sources].astype(np.float64) * float(tl.time_base)
    return pts - info.start_time
