"""Inputs shared by tests that run the extraction executors: a few clips with a decode failure among them."""
from __future__ import annotations

from pathlib import Path

from avvp.pipeline.jobs import VideoJob
from tests.helpers.media import make_clip


def jobs_with_a_decode_failure(root: Path) -> list[VideoJob]:
    """Three 10 s clips (noise and sine audio) and, second in the list, a zero-byte file: a decode failure in
    the middle of the batches."""
    paths = [make_clip(root / f"c{i}.mp4", seconds=10, audio_pattern=("noise", "sine")[i % 2]) for i in range(3)]
    (root / "zero.mp4").write_bytes(b"")
    paths.insert(1, root / "zero.mp4")
    return [VideoJob(id=p.stem, path=str(p)) for p in paths]
