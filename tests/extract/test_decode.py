"""Decoding: frame sets against the reference `ffmpeg -r 8` dumps, windows, audio, bad input.

Expected values are computed independently of avvp: reference PNG/JPEG dumps written by the ffmpeg
binary (tests/helpers/media.py), every source frame decoded without rate conversion, spectra of the
synthetic sines, and librosa.load for the VALOR audio path.

These tests pin the `clean` profile (raw frames, exact window cuts, the time rule); the default
`reference` profile is checked against the official tools in test_reference_inputs.py.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.helpers import media
from avvp.extract.decode import (
    DECODERS,
    DEFAULT_DECODER,
    DecodeError,
    DecodeOptions,
    cfr_frame_sources,
    compact_in_place,
    fit_audio,
    probe,
    select_fps_frames,
)
from avvp.extract.decode import decode_video as _decode_video
from avvp.extract.decode import iter_windows as _iter_windows

decode_video = functools.partial(_decode_video, profile="clean")
iter_windows = functools.partial(_iter_windows, profile="clean")

BACKENDS = ["ffmpeg", "decord"]

# container/rate variety for the reference comparison (all 10 s, 160x120)
CLIP_SPECS = {
    "25fps.mp4": dict(fps=25),
    "29.97fps.mp4": dict(fps="30000/1001"),
    "30fps.mp4": dict(fps=30),
    "24fps.mp4": dict(fps=24),
    "60fps.mp4": dict(fps=60),
    "5fps.mp4": dict(fps=5),
    "vfr.mp4": dict(vfr=True),
    "vp9.webm": dict(fps=25),
    "h264.mkv": dict(fps=25),
    "mjpeg.avi": dict(fps=25),
    "h264.mov": dict(fps=30),
}


@pytest.fixture(scope="module")
def clips(media_dir):
    return {name: media.make_clip(media_dir / f"ref_{name}", seconds=10, **kw) for name, kw in CLIP_SPECS.items()}


@pytest.fixture(scope="module")
def png_refs(clips):
    return {name: media.reference_frames_png(path) for name, path in clips.items()}


def _expected(ref: np.ndarray) -> np.ndarray:
    """The AVVP rule on the reference dump: linspace over the N files."""
    return ref[media.reference_indices(len(ref))]


# --- the reference frame set -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLIP_SPECS))
def test_ffmpeg_backend_is_pixel_identical_to_png_reference(clips, png_refs, name):
    ref = png_refs[name]
    dec = decode_video(clips[name], decoder="ffmpeg")
    assert dec.num_fps_frames == len(ref)
    assert dec.frame_rule == "reference"
    np.testing.assert_array_equal(dec.frame_indices, media.reference_indices(len(ref)))
    assert dec.frames.shape == (80, 120, 160, 3) and dec.frames.dtype == np.uint8
    assert np.array_equal(dec.frames, _expected(ref))


@pytest.mark.parametrize("name", [n for n in CLIP_SPECS if not n.endswith(".webm")])
def test_decord_backend_is_pixel_identical_to_png_reference(clips, png_refs, name):
    ref = png_refs[name]
    dec = decode_video(clips[name], decoder="decord")
    assert dec.num_fps_frames == len(ref)
    np.testing.assert_array_equal(dec.frame_indices, media.reference_indices(len(ref)))
    assert np.array_equal(dec.frames, _expected(ref))


def test_decord_fails_cleanly_on_vp9_webm(clips):
    # decord 0.6.0 cannot decode our VP9 webm ("Error sending packet"); it must surface as DecodeError.
    # If a decord release fixes this, update docs/decoding.md and turn this into an identity test.
    with pytest.raises(DecodeError, match="decord failed"):
        decode_video(clips["vp9.webm"], decoder="decord")


def test_ten_second_clips_give_82_frames_with_this_ffmpeg(png_refs):
    # The count the reference rule has to accept (docs/decoding.md): ffmpeg 5.1's -r 8 emits 82 frames
    # for a 10 s clip at 24-60 fps (two start-up duplicates) and 80 at 5 fps.
    counts = {name: len(ref) for name, ref in png_refs.items()}
    assert counts["5fps.mp4"] == 80
    assert all(c == 82 for name, c in counts.items() if name != "5fps.mp4"), counts


@pytest.mark.parametrize("name", ["25fps.mp4", "vfr.mp4", "vp9.webm", "mjpeg.avi"])
def test_frame_count_and_content_match_jpeg_reference(clips, name):
    jpeg = media.reference_frames_jpeg(clips[name])  # the literal AVVP command
    dec = decode_video(clips[name])
    assert dec.num_fps_frames == len(jpeg)
    expected = _expected(jpeg).astype(np.int16)
    diff = np.abs(dec.frames.astype(np.int16) - expected).mean(axis=(1, 2, 3))
    assert diff.max() < 6.0  # JPEG noise only (q=2..31 default quality on testsrc)
    # and every frame is nearer to its own JPEG than to the neighbouring 8 fps frames
    for k in range(1, 79):
        own = diff[k]
        for j in (k - 1, k + 1):
            other = np.abs(dec.frames[k].astype(np.int16) - expected[j]).mean()
            assert own <= other or np.array_equal(expected[j], expected[k])


def test_frame_times_are_source_timestamps(clips):
    dec = decode_video(clips["25fps.mp4"])
    # the CFR start-up of ffmpeg 5.1: output frames 0,1,2 show source frames 0,1,2 (0, 40, 80 ms),
    # output frame 3 shows the frame at 0.2 s; linspace(0, 81, 80) picks outputs 0,1,2,3,...
    np.testing.assert_allclose(dec.frame_times[:4], [0.0, 0.04, 0.08, 0.2], atol=1e-9)
    allf = media.all_frames_rgb(clips["25fps.mp4"])
    source = np.round(dec.frame_times * 25).astype(int)
    assert np.array_equal(allf[source], dec.frames)


CFR_CASES = [
    ("25fps.mp4", []), ("5fps.mp4", []), ("vfr.mp4", []), ("vp9.webm", []), ("h264.mkv", []),
    ("25fps.mp4", ["-t", "3.3"]), ("vfr.mp4", ["-ss", "2.7", "-t", "5"]), ("60fps.mp4", ["-ss", "0.01", "-t", "10"]),
]


@pytest.mark.parametrize("name,pre", CFR_CASES)
def test_rate_conversion_port_matches_ffmpeg(clips, name, pre):
    """cfr_frame_sources (used for frame_times and by decord) picks exactly the frames ffmpeg emits."""
    path = clips[name]
    emitted = media.rate_converted_rgb(path, pre)
    allf = media.all_frames_rgb(path)
    info = probe(path, with_timeline=True)
    opts = dict(zip(pre[::2], pre[1::2]))
    sources = cfr_frame_sources(info, fps=8, start=float(opts.get("-ss", 0)),
                                duration=float(opts["-t"]) if "-t" in opts else None)
    assert len(sources) == len(emitted)
    assert np.array_equal(allf[sources], emitted)


def test_rate_conversion_port_on_late_video_start(media_dir):
    # video starts 1.3 s after the audio: ffmpeg fills the gap with copies of the first frame
    path = media_dir / "late_video.mkv"  # mkv keeps the offset in the timestamps (mp4 uses an edit list)
    media._run([media.FFMPEG, "-loglevel", "error", "-y", "-itsoffset", "1.3", "-f", "lavfi", "-i",
                "testsrc=size=160x120:rate=25:duration=8", "-f", "lavfi", "-i", "sine=d=10",
                "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)])
    emitted = media.rate_converted_rgb(path)
    sources = cfr_frame_sources(probe(path, with_timeline=True))
    assert len(sources) == len(emitted) and (sources[:10] == 0).all()
    assert np.array_equal(media.all_frames_rgb(path)[sources], emitted)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("degrees", [90, 180])
def test_rotation_metadata_is_applied_like_ffmpeg(clips, media_dir, backend, degrees):
    path = media.with_rotation(clips["25fps.mp4"], media_dir / f"rot{degrees}.mp4", degrees)
    ref = media.reference_frames_png(path)
    dec = decode_video(path, decoder=backend)
    assert dec.frames.shape[1:3] == ref.shape[1:3] == ((160, 120) if degrees == 90 else (120, 160))
    assert np.array_equal(dec.frames, _expected(ref))


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_side_caps_the_longer_side(clips, backend):
    dec = decode_video(clips["25fps.mp4"], decoder=backend, max_side=80)
    assert dec.frames.shape == (80, 60, 80, 3)
    if backend == "ffmpeg":  # the same -s scaling as the reference command with -s 80x60
        ref = media.reference_frames_png(clips["25fps.mp4"], size="80x60")
        assert np.array_equal(dec.frames, _expected(ref))


# --- selection rules ---------------------------------------------------------------------------


def test_select_fps_frames_rules():
    idx, rule = select_fps_frames(82)
    assert rule == "reference" and idx[0] == 0 and idx[-1] == 81 and len(idx) == 80
    assert list(idx[:6]) == [0, 1, 2, 3, 4, 5] and idx[40] == 41  # round(40*81/79) = round(41.01)
    idx, rule = select_fps_frames(80)
    assert rule == "reference" and (idx == np.arange(80)).all()
    idx, rule = select_fps_frames(79)
    assert rule == "reference" and idx[-1] == 78 and len(np.unique(idx)) == 79
    idx, rule = select_fps_frames(78)  # two frames short: time rule, tail repeats the last frame
    assert rule == "time" and (idx[:78] == np.arange(78)).all() and (idx[78:] == 77).all()
    idx, rule = select_fps_frames(5)
    assert list(idx[:6]) == [0, 1, 2, 3, 4, 4] and (idx[5:] == 4).all()


@pytest.mark.parametrize("n", [5, 78, 79, 80, 83])
def test_compact_in_place_equals_fancy_indexing(n):
    rng = np.random.default_rng(n)
    buf = rng.integers(0, 255, size=(max(n, 80), 3, 2, 3), dtype=np.uint8)
    idx, _ = select_fps_frames(n)
    expected = buf[idx].copy()
    assert np.array_equal(compact_in_place(buf, idx), expected)


def test_fit_audio_pads_trims_and_leads():
    x = np.arange(1, 6, dtype=np.float32)
    assert fit_audio(x, 3).tolist() == [1, 2, 3]
    assert fit_audio(x, 7).tolist() == [1, 2, 3, 4, 5, 0, 0]
    assert fit_audio(x, 7, lead=2).tolist() == [0, 0, 1, 2, 3, 4, 5]
    assert fit_audio(x, 4, lead=9).tolist() == [0, 0, 0, 0]


# --- short clips, windows, long videos ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_clip_is_padded_not_stretched(clip_short, backend):
    ref = media.reference_frames_png(clip_short)  # 0.5 s -> 6 frames
    dec = decode_video(clip_short, decoder=backend)
    n = len(ref)
    assert dec.num_fps_frames == n and dec.frame_rule == "time"
    assert np.array_equal(dec.frames[:n], ref)
    assert all(np.array_equal(dec.frames[k], ref[-1]) for k in range(n, 80))
    assert dec.padded_seconds == pytest.approx(10 - dec.duration, abs=1e-6) and dec.padded_seconds > 9
    for audio, sr in ((dec.audio_16k, 16000), (dec.audio_48k, 48000)):
        assert audio.shape == (10 * sr,) and audio.dtype == np.float32
        assert np.abs(audio[: sr // 4]).max() > 0.05  # the sine is there
        assert not audio[int(0.6 * sr):].any()  # zeros after the end of the source


def test_window_seek_equals_reference_on_a_cut(clip_long, media_dir):
    # the AVVP clips were cut with `ffmpeg -ss t0 -i full -t 10`; a lossless cut + reference dump
    # gives the same frames as decoding the window straight from the long file
    cut = media.lossless_cut(clip_long, media_dir / "cut_10_20.mp4", 10, 10)
    ref = media.reference_frames_png(cut)
    dec = decode_video(clip_long, start=10)
    assert dec.num_fps_frames == len(ref)
    assert np.array_equal(dec.frames, _expected(ref))
    assert dec.frame_times.min() >= 10.0 and dec.frame_times.max() < 20.0


def test_iter_windows_covers_the_file_and_equals_single_windows(clip_long):
    windows = list(iter_windows(clip_long, window=10))
    assert [w.window_start for w in windows] == [0.0, 10.0, 20.0]
    assert [w.padded_seconds for w in windows] == pytest.approx([0.0, 0.0, 5.0], abs=1e-3)
    assert windows[2].frame_rule == "time" and windows[0].frame_rule == "reference"
    single = decode_video(clip_long, start=10)
    assert np.array_equal(windows[1].frames, single.frames)
    assert np.array_equal(windows[1].audio_48k, single.audio_48k)
    # the audio of consecutive windows is contiguous: window 1 is samples 160000..320000 of the whole
    # file (soxr's block processing shifts with the start point: differences stay below 1 int16 step)
    whole = decode_video(clip_long, window=25, video=False, audio_rates=(16000,)).audio_16k
    assert np.abs(windows[1].audio_16k - whole[160000:320000]).max() < 1 / 32768
    # zeros after the source ends (25 s; the AAC decoder's last frame runs ~8 ms past it)
    assert not windows[2].audio_16k[int(5.05 * 16000):].any()


def test_window_past_the_end_is_an_error(clip_10s):
    with pytest.raises(DecodeError, match="past the end"):
        decode_video(clip_10s, start=12)


# --- audio -------------------------------------------------------------------------------------


def _amplitude(audio: np.ndarray, sr: int, freq: float) -> float:
    seg = audio[sr: 9 * sr]  # steady part
    spec = np.abs(np.fft.rfft(seg)) * 2 / len(seg)
    return float(spec[int(round(freq * len(seg) / sr))])


def test_stereo_8k_is_averaged_to_mono(clip_8k_stereo):
    dec = decode_video(clip_8k_stereo)
    assert (dec.audio_sample_rate_in, dec.audio_channels_in) == (8000, 2)
    for audio, sr in ((dec.audio_16k, 16000), (dec.audio_48k, 48000)):
        assert audio.shape == (10 * sr,)
        # left 220 Hz, right 440 Hz, each of amplitude 1/8: the mean halves each (ffmpeg's -ac 1
        # matrix would give 0.125/sqrt(2) = 0.088)
        assert _amplitude(audio, sr, 220) == pytest.approx(0.0625, rel=0.02)
        assert _amplitude(audio, sr, 440) == pytest.approx(0.0625, rel=0.02)


def test_six_channel_44k_is_averaged_to_mono(media_dir):
    path = media.make_clip(media_dir / "six.mp4", seconds=10, sample_rate=44100, channels=6)
    dec = decode_video(path, video=False)
    assert (dec.audio_sample_rate_in, dec.audio_channels_in) == (44100, 6)
    for k in (0, 1, 2, 4, 5):  # channel 3 is the LFE, which AAC low-passes (its 880 Hz sine is gone)
        assert _amplitude(dec.audio_48k, 48000, 220 * (k + 1)) == pytest.approx(0.125 / 6, rel=0.03)


def test_default_audio_is_librosa_load(clip_10s):
    """VALOR loads CLAP audio with librosa.load(mp4, sr=48000): int16 from ffmpeg, then soxr_hq."""
    import librosa

    dec = decode_video(clip_10s, video=False)
    for sr, ours in ((48000, dec.audio_48k), (16000, dec.audio_16k)):
        theirs, _ = librosa.load(str(clip_10s), sr=sr)
        n = min(len(theirs), len(ours))
        assert n >= 10 * sr - 1
        assert np.abs(ours[:n] - theirs[:n]).max() <= 1e-7
    swr = decode_video(clip_10s, video=False, resampler="swr").audio_48k
    assert 0 < np.abs(swr - dec.audio_48k).max() < 0.01  # ffmpeg's own resampler: close, not equal


def test_late_audio_is_preceded_by_zeros(media_dir):
    path = media.make_clip(media_dir / "late_audio.mp4", seconds=10, audio_delay=0.5)
    info = probe(path)
    dec = decode_video(path, video=False, audio_rates=(16000,))
    lead = int(round((info.audio.start_time - info.start_time) * 16000))
    assert 0.4 * 16000 < lead < 0.5 * 16000
    assert not dec.audio_16k[:lead].any()
    assert np.abs(dec.audio_16k[lead: lead + 800]).max() > 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_audio_stream_gives_zero_audio(clip_no_audio, backend):
    dec = decode_video(clip_no_audio, decoder=backend)
    assert not dec.has_audio and dec.has_video and dec.audio_channels_in == 0
    assert dec.audio_16k.shape == (160000,) and not dec.audio_16k.any()
    assert dec.audio_48k.shape == (480000,) and not dec.audio_48k.any()
    assert dec.frames.shape == (80, 120, 160, 3)


def test_backends_give_the_same_audio(clip_10s):
    a = decode_video(clip_10s, decoder="ffmpeg")
    b = decode_video(clip_10s, decoder="decord")
    assert np.array_equal(a.audio_16k, b.audio_16k) and np.array_equal(a.audio_48k, b.audio_48k)
    assert np.array_equal(a.frame_times, b.frame_times) and np.array_equal(a.frames, b.frames)


# --- bad input ---------------------------------------------------------------------------------


def test_audio_only_file_is_no_video_stream_error(clip_audio_only):
    with pytest.raises(DecodeError, match="no video stream"):
        decode_video(clip_audio_only)
    dec = decode_video(clip_audio_only, video=False)  # audio-only decoding is allowed
    assert dec.frames is None and not dec.has_video and dec.has_audio
    assert _amplitude(dec.audio_16k, 16000, 220) == pytest.approx(0.125, rel=0.02)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_byte_file(clip_zero_byte, backend):
    with pytest.raises(DecodeError, match="empty"):
        decode_video(clip_zero_byte, decoder=backend)


def test_truncated_file_reports_ffmpeg_stderr(clip_truncated):
    with pytest.raises(DecodeError) as err:
        decode_video(clip_truncated)
    assert "moov atom not found" in str(err.value) and "stderr" in str(err.value)


def test_not_a_video_and_missing_file(media_dir):
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(DecodeError, match="Invalid data found"):
        decode_video(text)
    with pytest.raises(DecodeError, match="no such file"):
        decode_video(media_dir / "does-not-exist.mp4")


@pytest.mark.parametrize("backend", BACKENDS)
def test_unicode_and_space_in_file_name(clip_unicode, clip_10s, backend):
    a = decode_video(clip_unicode, decoder=backend)
    b = decode_video(clip_10s, decoder=backend)  # same synthetic content
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio_16k, b.audio_16k)


def test_colon_in_file_name_is_not_a_protocol(clip_10s, media_dir):
    odd = media_dir / "clip:1.mp4"
    odd.write_bytes(clip_10s.read_bytes())
    assert decode_video(odd).num_fps_frames == 82


def test_options_are_validated_and_registry_lists_backends():
    assert DECODERS.names() == ["decord", "ffmpeg"] and DEFAULT_DECODER in DECODERS
    with pytest.raises(KeyError, match="known: decord, ffmpeg"):
        DECODERS.get("opencv")
    for bad in (dict(start=-1), dict(window=0), dict(max_side=0), dict(resampler="speex"),
                dict(video=False, audio_rates=()), dict(audio_rates=(22050,))):
        with pytest.raises(ValueError):
            DecodeOptions(**bad)


def test_vfr_fixture_and_probe(clip_vfr):
    info = probe(clip_vfr, with_timeline=True)
    steps = np.diff(info.timeline.pts) * float(info.timeline.time_base)
    assert steps.max() > 1.5 * steps.min()  # genuinely variable frame durations
    assert info.video.width == 160 and info.audio.sample_rate == 44100


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_only_request_on_a_file_without_audio_gives_zeros(clip_no_audio, backend):
    d = decode_video(clip_no_audio, decoder=backend, video=False, audio_rates=(16000,))
    assert d.frames is None and not d.has_audio and d.has_video
    assert d.audio_16k.shape == (160000,) and not d.audio_16k.any()
