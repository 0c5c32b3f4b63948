"""The download manifest: one JSON line per id beside the clips (`<out>/manifest.jsonl`).

A line is appended, flushed and fsynced as each id ends, so a kill loses at most the ids in flight; a
torn last line (a kill mid-write) is ignored on reading. A re-run appends again; the last line of an id
wins, and a run that completes rewrites the file with one line per id (atomic rename).

Fields (docs/download.md): id (the LLP filename), ytid, start, status (ok | unavailable | failed), reason
(removed, private, geo-blocked, age-gated, network, ffmpeg, invalid-id; empty when ok), message, url,
format_id, resolution, source_duration, duration (of the clip), bytes, sha256, trim (official | range),
attempts, seconds, tools (yt-dlp, ffmpeg, avvp versions), finished (UTC).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

MANIFEST_NAME = "manifest.jsonl"
# where a download keeps its full videos and unfinished trims; never read as clips (avvp-extract skips it)
WORK_DIR_NAME = ".avvp-download"

OK, UNAVAILABLE, FAILED = "ok", "unavailable", "failed"
STATUSES = (OK, UNAVAILABLE, FAILED)
# reason classes: the first four mean the video is gone for this user (status unavailable), the rest
# are failures a retry may cure
UNAVAILABLE_REASONS = ("removed", "private", "geo-blocked", "age-gated")
FAILED_REASONS = ("network", "ffmpeg", "invalid-id")


@dataclass
class ManifestRecord:
    id: str
    ytid: str
    start: float
    status: str
    reason: str = ""
    message: str = ""
    url: str = ""
    format_id: str = ""
    resolution: str = ""
    source_duration: float | None = None
    duration: float | None = None
    bytes: int | None = None
    sha256: str = ""
    trim: str = ""
    attempts: int = 0
    seconds: float = 0.0
    tools: dict[str, str] = field(default_factory=dict)
    finished: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"manifest status must be one of {STATUSES}, got {self.status!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ManifestRecord":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def source_info(self) -> dict[str, Any]:
        """What the store keeps of this record for the clip's row (`/videos/source`, docs/store.md)."""
        keys = ("url", "format_id", "resolution", "source_duration", "sha256", "trim", "tools", "finished")
        return {k: getattr(self, k) for k in keys}


def read_manifest(path: str | os.PathLike) -> dict[str, ManifestRecord]:
    """The last record of every id; lines that do not parse (a torn last line) are skipped."""
    records: dict[str, ManifestRecord] = {}
    path = Path(path)
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = ManifestRecord.from_dict(json.loads(line))
            except (ValueError, TypeError):
                continue
            records[rec.id] = rec
    return records


def records_by_ytid(folder: str | os.PathLike) -> dict[str, ManifestRecord]:
    """The ok records of the manifest in `folder`, by YouTube id (empty without a manifest)."""
    return {r.ytid: r for r in read_manifest(Path(folder) / MANIFEST_NAME).values() if r.status == OK}


class ManifestWriter:
    """Appends records as they come (thread-safe; every line fsynced before append() returns)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: ManifestRecord) -> None:
        with self._lock:
            self._file.write(record.to_json() + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def compact(self, keep_order: Iterable[str] = ()) -> None:
        """Rewrite the manifest with the last record of each id (ids of `keep_order` first, in order)."""
        self.close()
        records = read_manifest(self.path)
        order = [i for i in keep_order if i in records] + sorted(set(records) - set(keep_order))
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for i in order:
                f.write(records[i].to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
