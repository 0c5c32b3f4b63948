"""Shared pytest fixtures: a session-wide set of tiny synthetic media files made with ffmpeg.

The test session is a program like the console scripts: it applies the same environment defaults
(avvp._env: offline hub, loopback-only Ray) before anything imports transformers, laion_clap or ray
(huggingface_hub reads HF_HUB_OFFLINE when it is imported; a Ray imported without
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 maps 127.0.0.1 to the machine's address).
"""
from avvp._env import apply_defaults

apply_defaults()

import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so tests can `import media`

import media  # noqa: E402


def pytest_configure(config):
    # No silent skips: media fixtures need the ffmpeg binaries, so their absence is an error.
    missing = [b for b in ("ffmpeg", "ffprobe") if shutil.which(b) is None]
    if missing:
        raise pytest.UsageError(f"tests need {', '.join(missing)} on PATH (apt-get install ffmpeg)")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip_10s(media_dir) -> Path:
    """10 s mp4, h264 25 fps 160x120 + AAC 44.1 kHz mono sine (the shape of an AVVP clip)."""
    return media.make_clip(media_dir / "clip_10s.mp4", seconds=10, fps=25)


@pytest.fixture(scope="session")
def clip_no_audio(media_dir) -> Path:
    return media.make_clip(media_dir / "clip_no_audio.mp4", seconds=10, fps=25, audio=False)


@pytest.fixture(scope="session")
def clip_short(media_dir) -> Path:
    """0.5 s clip: shorter than a window, decoded with tail padding."""
    return media.make_clip(media_dir / "clip_short.mp4", seconds=0.5, fps=25)


@pytest.fixture(scope="session")
def clip_long(media_dir) -> Path:
    """25 s clip: three 10 s windows, the last one half padded."""
    return media.make_clip(media_dir / "clip_long.mp4", seconds=25, fps=25)


@pytest.fixture(scope="session")
def clip_vfr(media_dir) -> Path:
    """Variable frame rate mp4: 30, 12 and 25 fps segments."""
    return media.make_clip(media_dir / "clip_vfr.mp4", seconds=10, vfr=True)


@pytest.fixture(scope="session")
def clip_8k_stereo(media_dir) -> Path:
    """AAC 8 kHz stereo (220 Hz left, 440 Hz right)."""
    return media.make_clip(media_dir / "clip_8k_stereo.mp4", seconds=10, sample_rate=8000, channels=2)


@pytest.fixture(scope="session")
def clip_zero_byte(media_dir) -> Path:
    path = media_dir / "clip_zero_byte.mp4"
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def clip_truncated(media_dir, clip_10s) -> Path:
    """The first 30 % of an mp4 whose index (moov) is at the end: unreadable."""
    return media.make_truncated(clip_10s, media_dir / "clip_truncated.mp4", keep_fraction=0.3)


@pytest.fixture(scope="session")
def clip_unicode(media_dir) -> Path:
    return media.make_clip(media_dir / "vidéo 音.mp4", seconds=10, fps=25)


@pytest.fixture(scope="session")
def clip_audio_only(media_dir) -> Path:
    """AAC in m4a, no video stream."""
    return media.make_clip(media_dir / "clip_audio_only.m4a", seconds=10)


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models run fastest on one thread; intra-op threads only contend on a loaded 2-core box.
    A module opts in with `pytestmark = pytest.mark.usefixtures("single_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
