"""Generated stand-ins for a few LLP videos (real LLP ids, so splits, weak labels and the eval annotations
apply): the 'full videos' a loopback server serves in place of YouTube, for the README's "Reproduce LLP
from scratch" run (tools/serve_llp_clips.py) and the clean-vs-reference measurement of docs/compare.md.

Each source is `start + 12` s of a lavfi test picture (320x240, 25 fps) with pink noise at its own sample
rate (YouTube's usual 44.1 / 48 kHz and a 22.05 kHz one, so the profiles' resamplers differ).
"""
from __future__ import annotations

from pathlib import Path

from avvp.data import llp
from tests.helpers.media import make_clip

# (LLP filename, picture, audio rate): three train videos, one val, two test
LLP_CLIPS = (
    ("JSK3UrDHnUI_2_12", "testsrc2", 44100), ("13tD0A5hnCU_3_13", "smptebars", 48000),
    ("MVWVECUju4w_0_10", "rgbtestsrc", 22050), ("9ggKWjpQPeQ_0_10", "testsrc", 44100),
    ("ESkZHYcqs5g_0_10", "smptehdbars", 48000), ("NaSGRWCzZYM_0_10", "yuvtestsrc", 44100),
)


def make_sources(folder: Path) -> dict[str, bytes]:
    """The full videos, by YouTube id (written to `folder/<ytid>.mp4` and returned as bytes)."""
    out = {}
    for vid, pattern, rate in LLP_CLIPS:
        start = llp.parse_clip_name(vid).start
        path = make_clip(folder / f"{vid[:11]}.mp4", seconds=start + 12, fps=25, size=(320, 240), pattern=pattern,
                         audio_pattern="noise", sample_rate=rate)
        out[vid[:11]] = path.read_bytes()
    return out


def write_csv(path: Path) -> Path:
    """The LLP rows of these videos (filename, weak labels), as AVVP_dataset_full.csv has them."""
    weak = llp.read_weak_labels("full")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("filename\tevent_labels\n" + "".join(
        f"{v}\t{','.join(sorted(weak.classes_of(v)))}\n" for v, *_ in LLP_CLIPS))
    return path
