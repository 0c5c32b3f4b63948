"""The reference profile against the official tools themselves, run here on the same files.

* VGGish: moviepy 1.0.3 `VideoFileClip(v).audio.write_audiofile(wav, fps=16000)` (AVVP
  `scripts/extract_audio.py`), the wav read back and put through the VGGish frontend, vs
  `network_inputs(v, "vggish")["log_mel"]`.
* ResNet-152 / R(2+1)D / CLIP: `ffmpeg -i v -r 8 dir/%06d.jpg` on disk, PIL `Image.open().convert('RGB')`
  and the torchvision transforms of pretrainedmodels' TransformImage, AVVP `scripts/utils.py` and VALOR's
  `clip_preprocess.py`, vs `network_inputs(...)["pixels"]`.
* CLAP: `librosa.load(v, sr=48000)` and VALOR's slicing vs `clap_segments` / `clap_tokens`.

Clips: 29.97 fps + 48 kHz stereo AAC, 25 fps + 44.1 kHz mono AAC, 24 fps 9.7 s, VFR, VP9/Vorbis webm.
"""
from __future__ import annotations

import glob
import os
import subprocess
import tempfile
import warnings

import numpy as np
import pytest

from tests.helpers import media

os.environ.setdefault("FFMPEG_BINARY", "ffmpeg")  # moviepy: the system ffmpeg, not imageio's download

from avvp.extract import network_inputs  # noqa: E402
from avvp.extract import reference_inputs as ref  # noqa: E402
from avvp.extract.backbones import vggish_frontend  # noqa: E402

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@pytest.fixture(scope="module")
def ref_clips(media_dir):
    """name -> path of the five kinds of clip the issue lists (small, noise audio so every sample counts),
    plus one a little longer than 10 s."""
    d = media_dir / "reference_profile"
    return {
        "ntsc_stereo48k": media.make_clip(d / "ntsc.mp4", seconds=10, fps="30000/1001", sample_rate=48000,
                                          channels=2, audio_pattern="noise", pattern="testsrc2"),
        "pal_mono44k": media.make_clip(d / "pal.mp4", seconds=10, fps=25, sample_rate=44100, channels=1,
                                       audio_pattern="noise", pattern="testsrc2"),
        "film_9s7": media.make_clip(d / "film.mp4", seconds=9.7, fps=24, sample_rate=44100, channels=2,
                                    audio_pattern="noise", pattern="testsrc2"),
        "vfr": media.make_clip(d / "vfr.mp4", seconds=10, vfr=True, sample_rate=32000, audio_pattern="noise"),
        "webm": media.make_clip(d / "clip.webm", seconds=10, fps=30, sample_rate=48000, channels=2,
                                audio_pattern="noise", pattern="testsrc2"),
        # an LLP-like file a little longer than the window (container 10.12 s, 83 JPEGs): the window runs
        # to the end of the file, so the frame-time port must too (used by the frame-set test only)
        "pal_10s1": media.make_clip(d / "pal_10s1.mp4", seconds=10.1, fps=25, sample_rate=44100, channels=1,
                                    audio_pattern="noise", pattern="testsrc2"),
    }


def official_jpegs(path) -> list[str]:
    """`ffmpeg -i video -y -r 8 dir/%06d.jpg` (AVVP scripts/extract_frames.py), file paths in order."""
    d = tempfile.mkdtemp(prefix="avvp_official_jpg_")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-y", "-r", "8",
                    f"{d}/%06d.jpg"], check=True)
    return sorted(glob.glob(os.path.join(d, "*.jpg")))


def pil_load(path):
    from PIL import Image

    with open(path, "rb") as f:  # pretrainedmodels / AVVP utils LoadImage
        with Image.open(f) as img:
            return img.convert("RGB")


# ------------------------------------------------------------------------------------------ VGGish
@pytest.mark.parametrize("name", ["ntsc_stereo48k", "pal_mono44k", "film_9s7", "vfr", "webm"])
def test_vggish_log_mel_equals_moviepy_wav_through_the_frontend(ref_clips, name, tmp_path):
    import soundfile
    from moviepy.video.io.VideoFileClip import VideoFileClip

    path = ref_clips[name]
    wav = tmp_path / "official.wav"
    clip = VideoFileClip(str(path))
    try:
        clip.audio.write_audiofile(str(wav), fps=16000, logger=None)
    finally:
        clip.close()
    data, sr = soundfile.read(str(wav), dtype="int16")  # vggish_input.wavfile_to_examples
    assert sr == 16000 and data.ndim == 2
    official = vggish_frontend.waveform_to_examples(np.mean(data / 32768.0, axis=1))
    got = network_inputs(path, "vggish")["log_mel"]
    assert got.shape == official.shape == (10, 96, 64)
    np.testing.assert_allclose(got, official.astype(np.float32), rtol=0, atol=1e-5)
    # the wav itself is reproduced sample for sample (the decoder's port of write_audiofile)
    from avvp.extract.decode import decode_video

    decoded = decode_video(path, video=False, audio_rates=(16000,))
    np.testing.assert_array_equal(decoded.audio_16k, (np.mean(data / 32768.0, axis=1)).astype(np.float32))


def test_moviepy_buffer_refill_lag_is_what_moviepy_does(ref_clips, tmp_path):
    """The port keeps moviepy's off-by-one buffer refill; without it (plain index picking) the wav
    differs from moviepy's after the first refill (~4.5 s), so the comparison above can fail."""
    import soundfile
    from moviepy.video.io.VideoFileClip import VideoFileClip

    path = ref_clips["ntsc_stereo48k"]
    clip = VideoFileClip(str(path))
    try:
        clip.audio.write_audiofile(str(tmp_path / "o.wav"), fps=16000, logger=None)
    finally:
        clip.close()
    official, _ = soundfile.read(str(tmp_path / "o.wav"), dtype="int16")
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-vn", "-f", "s16le", "-ar", "44100",
                          "-ac", "2", "-"], check=True, capture_output=True).stdout
    stream = np.frombuffer(raw, np.int16).reshape(-1, 2)
    k = np.arange(len(official))
    pick = np.minimum(np.round(44100 * ((1.0 / 16000) * k)).astype(int), len(stream) - 1)  # moviepy's float steps
    naive = stream[pick].astype(np.float64) / 32768
    naive = (32768 * np.clip(naive, -0.99, 0.99)).astype(np.int16)
    # the buffer holds reader samples [0, 200000) = output samples < 72562; it is refilled at the start
    # of the 2000-sample chunk that crosses that point
    first_refill = 200000 * 16000 // 44100
    np.testing.assert_array_equal(naive[:first_refill - 2000], official[:first_refill - 2000])
    assert np.mean(naive[first_refill:] != official[first_refill:]) > 0.5
    np.testing.assert_array_equal(ref.moviepy_wav(stream, _moviepy_duration(path)), official)


def _moviepy_duration(path) -> float:
    from avvp.extract.decode import probe

    return ref.ffmpeg_printed_duration(int(round(probe(path).duration * 1_000_000)))


# ------------------------------------------------------------------------------------------ visual
@pytest.mark.parametrize("name", ["ntsc_stereo48k", "film_9s7", "vfr", "webm"])
def test_visual_inputs_equal_official_jpeg_pil_torchvision(ref_clips, name):
    import torch
    from torchvision import transforms as T

    path = ref_clips[name]
    files = official_jpegs(path)
    n = len(files)
    picks = [files[int(i)] for i in np.round(np.linspace(0, n - 1, 80))]

    # ResNet-152: pretrainedmodels LoadTransformImage (scale 0.875 -> Resize(256), CenterCrop(224))
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    official = torch.stack([tf(pil_load(p)) for p in picks]).numpy()
    np.testing.assert_array_equal(network_inputs(path, "resnet152")["pixels"], official)

    # R(2+1)D: AVVP scripts/utils.py TransformImage, images[i // 8, :, i % 8] = frame i
    tf = T.Compose([T.Resize((112, 112)), T.ToTensor(),
                    T.Normalize(mean=[0.43216, 0.394666, 0.37645], std=[0.22803, 0.22145, 0.216989])])
    clips = torch.zeros((10, 3, 8, 112, 112))
    for i, p in enumerate(picks):
        clips[i // 8, :, i % 8] = tf(pil_load(p))
    np.testing.assert_array_equal(network_inputs(path, "r2plus1d")["pixels"], clips.numpy())

    # CLIP: VALOR clip_preprocess.py (10 frames over all N JPEGs; tensor Resize without antialias,
    # torchvision 0.13's default)
    from PIL import Image

    tf = T.Compose([T.ToTensor(), T.Resize((224, 224), antialias=False), T.Normalize(CLIP_MEAN, CLIP_STD)])
    ten = [files[int(i)] for i in np.round(np.linspace(0, n - 1, 10))]
    official = torch.stack([tf(Image.open(p).convert("RGB")) for p in ten]).numpy()
    got = network_inputs(path, "clip", backbone_options=(("clip", (("model", "ViT-B-32"),)),))["pixels"]
    np.testing.assert_allclose(got, official, rtol=0, atol=1e-6)


def test_in_memory_jpegs_are_the_official_files(ref_clips):
    """image2pipe's mjpeg bytes equal the image2 muxer's files (same encoder, same defaults)."""
    path = ref_clips["pal_mono44k"]
    files = official_jpegs(path)
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-r", "8", "-f", "image2pipe",
                          "-c:v", "mjpeg", "pipe:1"], check=True, capture_output=True).stdout
    jpegs = ref.split_jpeg_stream(raw)
    assert len(jpegs) == len(files)
    for data, f in zip(jpegs, files):
        with open(f, "rb") as fh:
            assert data == fh.read()


@pytest.mark.parametrize("name", ["ntsc_stereo48k", "pal_mono44k", "film_9s7", "vfr", "webm", "pal_10s1"])
def test_reference_decode_is_the_official_jpeg_set_with_source_times(ref_clips, name):
    """The reference DecodedVideo itself: its 80 frames and VALOR's 10 CLIP frames are the PIL images of
    the on-disk `ffmpeg -r 8` JPEGs at round(linspace(0, N-1, 80 | 10)), and its frame times come from the
    rate-conversion port (no grid-time fallback: the port counts the same N frames as ffmpeg). For the
    constant-rate clips each frame is closest to the source frame its timestamp names."""
    from avvp.extract.decode import decode_video

    path = ref_clips[name]
    dec = decode_video(path, profile="reference")
    files = official_jpegs(path)
    n = len(files)
    assert dec.profile == "reference" and dec.frame_rule == "reference" and dec.num_fps_frames == n
    np.testing.assert_array_equal(dec.frame_indices, ref.linspace_indices(n, 80))
    np.testing.assert_array_equal(dec.segment_frame_indices, ref.linspace_indices(n, 10))
    np.testing.assert_array_equal(dec.frames, np.stack([np.asarray(pil_load(files[i])) for i in dec.frame_indices]))
    np.testing.assert_array_equal(dec.segment_frames,
                                  np.stack([np.asarray(pil_load(files[i])) for i in dec.segment_frame_indices]))
    assert not [w for w in dec.warnings if w.startswith("frame_times:")], dec.warnings
    assert dec.frame_times.shape == (80,) and np.all(np.diff(dec.frame_times) >= 0)
    source_fps = {"ntsc_stereo48k": 30000 / 1001, "pal_mono44k": 25, "film_9s7": 24, "webm": 30, "pal_10s1": 25}.get(name)
    if source_fps is not None:
        every = media.all_frames_rgb(path).astype(np.int16)
        named = np.round(dec.frame_times * source_fps).astype(int)
        for frame, k in zip(dec.frames, named):
            distance = np.abs(every - frame).mean(axis=(1, 2, 3))
            assert distance[k] <= distance.min() + 1e-9, (k, int(np.argmin(distance)))


# ------------------------------------------------------------------------------------------ CLAP
@pytest.mark.parametrize("name", ["ntsc_stereo48k", "pal_mono44k", "film_9s7", "vfr", "webm"])
def test_clap_inputs_equal_librosa_load_and_valor_slicing(ref_clips, name):
    import librosa

    path = ref_clips[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "PySoundFile failed. Trying audioread instead."
        y, _ = librosa.load(str(path), sr=48000)
    samples = np.round(np.linspace(0, y.shape[0], 11)).astype(np.int32)  # VALOR clap_preprocess.py
    step = y.shape[0] // 10
    pieces = np.stack([y[samples[i]:samples[i] + step] for i in range(10)])
    tokens = y[np.round(np.linspace(0, len(y) - 1, 480000)).astype(np.int32)]  # VALOR's resampling
    got = network_inputs(path, "clap")
    assert got["clap_segments"].shape == pieces.shape
    np.testing.assert_allclose(got["clap_segments"], pieces, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["clap_tokens"], tokens, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ port units
def test_split_jpeg_stream_walks_segments_not_byte_pairs():
    """A quantisation table holding FF D9 must not end the image early."""
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, format="JPEG", quality=1)
    jpeg = buf.getvalue()
    # plant FF D9 inside the DQT payload (a table entry of 255 followed by 217 is valid JPEG data)
    dqt = jpeg.index(b"\xff\xdb")
    planted = jpeg[:dqt + 5] + b"\xff\xd9" + jpeg[dqt + 7:]
    parts = ref.split_jpeg_stream(planted + jpeg)
    assert [len(p) for p in parts] == [len(planted), len(jpeg)]
    with pytest.raises(ValueError, match="SOI"):
        ref.split_jpeg_stream(b"junk" + jpeg)


def test_ffmpeg_printed_duration_rounds_like_ffmpeg():
    assert ref.ffmpeg_printed_duration(10_022_000) == 10.02
    assert ref.ffmpeg_printed_duration(10_025_000) == 10.03  # +5000 us then truncation
    assert ref.ffmpeg_printed_duration(9_994_999) == 9.99
    assert ref.ffmpeg_printed_duration(3_725_500_000) == 3725.5
