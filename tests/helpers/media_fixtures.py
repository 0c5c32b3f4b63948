"""Pytest plugin (`pytest_plugins` in tests/conftest.py): session-wide tiny synthetic media files made with
ffmpeg by `tests.helpers.media`, one fixture per kind of clip."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import media


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
