"""Which videos to extract: discovery of video files, their store ids, splits and weak labels.

Two inputs:
- a folder of videos (`scan_folder`): every file is accounted for. Video containers become jobs,
  audio-only containers (.m4a, .mp3, .wav, ...) failure rows "no video stream (audio only)", anything
  else a "skipped" count by extension in the summary. The store id is
  the path relative to the folder without its extension (`sub/clip`), so equal stems in two folders
  never collide; if two files differ only by extension (`a.mp4`, `a.mkv`) both keep their extension in
  the id.
- an LLP CSV plus a folder: one job per CSV row (id = the LLP filename, e.g. `BjCEufrlXm4_20_30`), the
  file found as `<filename>.<ext>` or `<ytid>.<ext>` (the official download script's naming) anywhere in
  the folder; rows without a file become `missing` failures.

A folder that `avvp-download` filled has a `manifest.jsonl`: a clip it lists as ok gets the manifest's
source information (URL, yt-dlp format, resolution, sha256, trim, tool versions, and whether the file on
disk still has that sha256) as its store `source`, a JSON object (docs/store.md). The manifest and the
download's work folder are not videos: neither is a job nor a skipped file.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from avvp._files import sha256_file
from avvp.acquire.manifest import MANIFEST_NAME, WORK_DIR_NAME, ManifestRecord, records_by_ytid

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv", ".wmv"}
)

# containers that hold no video stream: a failure row each ("a row is a video"), never silently dropped
AUDIO_ONLY_EXTENSIONS = frozenset({".m4a", ".mp3", ".wav", ".flac", ".ogg", ".opus", ".aac"})
AUDIO_ONLY_MESSAGE = "no video stream (audio only)"


@dataclass(frozen=True)
class VideoJob:
    id: str
    path: str
    split: str = ""
    weak: np.ndarray | None = None  # (K,) uint8 when the input was an LLP CSV
    source: str = ""  # the store's /videos/source; empty = the path


@dataclass(frozen=True)
class MissingVideo:
    id: str
    message: str


@dataclass
class SkippedFiles:
    """Files under --videos that became neither a row nor a failure row, counted by extension."""

    by_extension: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    reason: str = "not a video container"

    def add(self, path: Path, root: Path) -> None:
        self.by_extension[path.suffix.lower() or "(none)"] += 1
        if len(self.examples) < 5:
            self.examples.append(path.relative_to(root).as_posix())

    @property
    def total(self) -> int:
        return sum(self.by_extension.values())

    def line(self) -> str:
        counts = ", ".join(f"{n} {ext}" for ext, n in sorted(self.by_extension.items()))
        return f"skipped {self.total} file(s) ({self.reason}): {counts}; e.g. {', '.join(self.examples)}"


@dataclass
class FolderScan:
    """Every file under a --videos folder, accounted for: jobs, failure rows (audio-only files), skipped."""

    jobs: list[VideoJob]
    failures: list[MissingVideo]
    skipped: SkippedFiles


def _walk(root: Path) -> list[Path]:
    found = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != WORK_DIR_NAME]  # a download's unfinished files are not clips
        found.extend(Path(dirpath) / n for n in names if not (n == MANIFEST_NAME and Path(dirpath) == root))
    return sorted(found)


def downloaded_source(path: Path, record: ManifestRecord | None) -> str:
    """The store `source` of a clip: its path, or with a manifest record a JSON object of the path plus the
    record's source information and whether the file still has the recorded sha256."""
    if record is None:
        return ""
    info = {"path": str(path), "ytid": record.ytid, **record.source_info()}
    info["sha256_matches"] = sha256_file(path) == record.sha256
    return json.dumps(info, sort_keys=True)


def _with_sources(jobs: list[VideoJob], root: Path) -> list[VideoJob]:
    records = records_by_ytid(root)
    if not records:
        return jobs
    out = []
    for job in jobs:
        path = Path(job.path)
        rec = records.get(path.stem) if path.parent == root else None
        out.append(replace(job, source=downloaded_source(path, rec)) if rec else job)
    return out


def _video_files(root: Path) -> list[Path]:
    return [p for p in _walk(root) if p.suffix.lower() in VIDEO_EXTENSIONS]


def _relative_ids(root: Path, files: list[Path]) -> list[tuple[str, Path]]:
    """Store ids: the relative path without extension, with it where two files share a stem."""
    stems: dict[str, list[Path]] = {}
    for f in files:
        stems.setdefault(f.relative_to(root).with_suffix("").as_posix(), []).append(f)
    return [(stem if len(paths) == 1 else p.relative_to(root).as_posix(), p) for stem, paths in stems.items() for p in paths]


def scan_folder(root: str | Path) -> FolderScan:
    """Jobs for the video files, failure rows for audio-only containers, and a count of the rest."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--videos {root} is not a directory")
    videos, audio_only, skipped = [], [], SkippedFiles()
    for p in _walk(root):
        ext = p.suffix.lower()
        if ext in VIDEO_EXTENSIONS:
            videos.append(p)
        elif ext in AUDIO_ONLY_EXTENSIONS:
            audio_only.append(p)
        else:
            skipped.add(p, root)
    # ids over videos and audio-only files together, so an audio file never takes a video's id
    ids = dict((p, vid) for vid, p in _relative_ids(root, videos + audio_only))
    jobs = sorted((VideoJob(id=ids[p], path=str(p)) for p in videos), key=lambda j: j.id)
    failures = [MissingVideo(ids[p], f"{AUDIO_ONLY_MESSAGE}: {p}") for p in audio_only]
    return FolderScan(_with_sources(jobs, root), failures, skipped)


def discover_folder(root: str | Path) -> list[VideoJob]:
    """The jobs of `scan_folder` (callers that also want failure rows and skipped files use it)."""
    return scan_folder(root).jobs


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
    return _with_sources(jobs, root), missing
