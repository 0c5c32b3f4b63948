"""Which videos to extract: discovery of video files, their store ids, splits and weak labels.

Two inputs:
- a folder of videos: every file with a video/audio container extension, recursively. The store id is
  the path relative to the folder without its extension (`sub/clip`), so equal stems in two folders
  never collide; if two files differ only by extension (`a.mp4`, `a.mkv`) both keep their extension in
  the id.
- an LLP CSV plus a folder: one job per CSV row (id = the LLP filename, e.g. `BjCEufrlXm4_20_30`), the
  file found as `<filename>.<ext>` or `<ytid>.<ext>` (the official download script's naming) anywhere in
  the folder; rows without a file become `missing` failures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv", ".wmv"}
)


@dataclass(frozen=True)
class VideoJob:
    id: str
    path: str
    split: str = ""
    weak: np.ndarray | None = None  # (K,) uint8 when the input was an LLP CSV


@dataclass(frozen=True)
class MissingVideo:
    id: str
    message: str


def _video_files(root: Path) -> list[Path]:
    files = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                files.append(p)
    return sorted(files)


def discover_folder(root: str | Path) -> list[VideoJob]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--videos {root} is not a directory")
    files = _video_files(root)
    stems: dict[str, list[Path]] = {}
    for f in files:
        stems.setdefault(f.relative_to(root).with_suffix("").as_posix(), []).append(f)
    jobs = []
    for stem, paths in stems.items():
        for p in paths:
            vid = stem if len(paths) == 1 else p.relative_to(root).as_posix()
            jobs.append(VideoJob(id=vid, path=str(p)))
    return sorted(jobs, key=lambda j: j.id)


def discover_llp(root: str | Path, csv: str | Path) -> tuple[list[VideoJob], list[MissingVideo]]:
    from avvp.data import llp

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--videos {root} is not a directory")
    weak = llp.read_weak_labels(str(csv))
    by_stem: dict[str, Path] = {}
    for f in _video_files(root):
        by_stem.setdefault(f.stem, f)
    jobs, missing = [], []
    for i, filename in enumerate(weak.ids):
        path = by_stem.get(filename) or by_stem.get(llp.ytid(filename))
        if path is None:
            missing.append(MissingVideo(filename, f"no video file named {filename}.* or {llp.ytid(filename)}.* under {root}"))
            continue
        try:
            split = llp.split_of(filename)
        except KeyError:
            split = ""
        jobs.append(VideoJob(id=filename, path=str(path), split=split, weak=weak.labels[i]))
    return jobs, missing
