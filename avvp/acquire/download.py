"""Download LLP clips as the official scripts make them, resumably, with a manifest of every id.

The official AVVP / VALOR download scripts run, per CSV row `<ytid>_<start>_<end>`: yt-dlp (youtube-dl
in AVVP) of the whole video, then

    ffmpeg -ss <start> -i <full video> -t 10.0 -vcodec libx264 -acodec aac -strict -2 <ytid>.mp4 -y -loglevel -8

and delete the full video. `download_clips` does the same per id (the yt-dlp Python API, the same ffmpeg
arguments: `official_trim_args`; only the log level differs, so that a failure has a message), in
`workers` threads, and appends one manifest line per id as it ends (`avvp.acquire.manifest`). A re-run
skips ids whose clip is on disk with an ok line and retries the rest. Transient (network) errors are
retried with exponential backoff. SIGINT/SIGTERM stop the run after the ids in flight are abandoned (no
line: they are retried next time); the manifest holds everything that finished.

`trim="range"` fetches only the needed seconds: yt-dlp resolves the media URL and ffmpeg reads just the
window over HTTP with the same encode arguments. Faster, but not the official bytes (recorded as
`trim: range` in the manifest and in the store).

The source is a URL template (`{ytid}` filled in; default YouTube watch URLs), so a loopback server can
stand in for YouTube in tests.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

from avvp import __version__, faults
from avvp._files import ensure_writable_dir, sha256_file
from avvp._extras import require_extra
from avvp.acquire.manifest import (
    FAILED, MANIFEST_NAME, OK, UNAVAILABLE, UNAVAILABLE_REASONS, WORK_DIR_NAME, ManifestRecord, ManifestWriter,
    read_manifest,
)

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
CLIP_SECONDS = 10.0
TRIMS = ("official", "range")

# yt-dlp error text -> reason class (first match wins); anything else is a network failure (retried)
_REASON_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("private", ("private video", "video is private")),
    ("age-gated", ("confirm your age", "age-restricted", "age restricted", "inappropriate for some users")),
    ("geo-blocked", ("available in your country", "geo restrict", "geo-restrict", "blocked it in your country",
                     "http error 451")),
    ("removed", ("video unavailable", "has been removed", "no longer available", "account associated with this video",
                 "does not exist", "http error 404", "http error 410")),
)


def classify_error(message: str) -> str:
    """The reason class of a yt-dlp error message: removed, private, geo-blocked, age-gated or network."""
    text = message.lower()
    for reason, needles in _REASON_PATTERNS:
        if any(n in text for n in needles):
            return reason
    return "network"


def status_of(reason: str) -> str:
    return UNAVAILABLE if reason in UNAVAILABLE_REASONS else FAILED


# the official scripts' encode of a clip (both trims use it)
ENCODE_ARGS = ("-vcodec", "libx264", "-acodec", "aac", "-strict", "-2")


def official_trim_args(ffmpeg: str, source: str, start: float, out: str, seconds: float = CLIP_SECONDS,
                       loglevel: str = "-8") -> list[str]:
    """The official scripts' trim command as an argument list (their `str(float)` number formatting)."""
    return [ffmpeg, "-ss", str(float(start)), "-i", str(source), "-t", str(float(seconds)), *ENCODE_ARGS,
            str(out), "-y", "-loglevel", loglevel]


@dataclass(frozen=True)
class ClipRequest:
    id: str  # the LLP filename, `<ytid>_<start>_<end>`
    ytid: str
    start: float


@dataclass(frozen=True)
class InvalidRow:
    line: int
    text: str
    message: str


def parse_clip_row(text: str) -> ClipRequest:
    """A CSV filename `<11-char ytid>_<start>_<end>` as the official scripts read it (start = the field
    after the id; `avvp.data.llp.parse_clip_name`), with a YouTube-id alphabet and a start >= 0; ValueError
    with the reason otherwise."""
    from avvp.data.llp import YOUTUBE_ID, parse_clip_name

    name = text.strip()
    if not YOUTUBE_ID.match(name[:11]):
        raise ValueError(f"{name!r}: the first 11 characters are not a YouTube id")
    clip = parse_clip_name(name)
    if clip.start < 0:
        raise ValueError(f"{name!r}: negative start")
    return ClipRequest(name, clip.ytid, clip.start)


def read_requests(csv: str | os.PathLike, *, split: str | None = None,
                  ids_file: str | os.PathLike | None = None) -> tuple[list[ClipRequest], list[InvalidRow]]:
    """Clip requests from an LLP CSV (tab-separated, header `filename ...`; the filename is the first
    column), optionally only one split's rows or the ids (YouTube ids or filenames) listed in a file.
    Malformed rows come back as InvalidRow (the caller records them); a repeated YouTube id keeps its first row."""
    path = Path(csv)
    if not path.is_file():
        raise FileNotFoundError(f"--csv {path} is not a file")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or lines[0].split("\t")[0].strip() != "filename":
        raise ValueError(f"{path}: the first line must be the header 'filename<TAB>...' (an LLP CSV)")
    wanted = None
    if ids_file is not None:
        ids_path = Path(ids_file)
        if not ids_path.is_file():
            raise FileNotFoundError(f"--ids {ids_path} is not a file")
        wanted = {w.strip() for w in ids_path.read_text(encoding="utf-8").split() if w.strip()}
    in_split = None
    if split is not None:
        from avvp.data import llp

        in_split = set(llp.split_ids(split))
    requests: list[ClipRequest] = []
    invalid: list[InvalidRow] = []
    seen: set[str] = set()
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        first = line.split("\t")[0]
        try:
            req = parse_clip_row(first)
        except ValueError as err:
            invalid.append(InvalidRow(n, first, f"{path.name}:{n}: {err}"))
            continue
        if in_split is not None and req.id not in in_split:
            continue
        if wanted is not None and req.id not in wanted and req.ytid not in wanted:
            continue
        if req.ytid in seen:
            invalid.append(InvalidRow(n, first, f"{path.name}:{n}: YouTube id {req.ytid} repeats an earlier row"))
            continue
        seen.add(req.ytid)
        requests.append(req)
    return requests, invalid


@dataclass(frozen=True)
class DownloadConfig:
    url_template: str = DEFAULT_URL_TEMPLATE
    format: str = "best"  # yt-dlp format selector: AVVP used `-f best`, VALOR `-f mp4`
    workers: int = 4
    retries: int = 3  # attempts after the first, for network errors only
    backoff: float = 2.0  # seconds before the first retry, doubled each time
    socket_timeout: float = 30.0
    trim: str = "official"  # "official" (whole video + official ffmpeg trim) | "range" (only the window)
    ffmpeg: str = "ffmpeg"
    clip_seconds: float = CLIP_SECONDS

    def __post_init__(self) -> None:
        if self.trim not in TRIMS:
            raise ValueError(f"trim must be one of {TRIMS}, got {self.trim!r}")
        if "{ytid}" not in self.url_template:
            raise ValueError(f"the URL template must contain {{ytid}}: {self.url_template!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def url(self, ytid: str) -> str:
        return self.url_template.replace("{ytid}", ytid)


@dataclass
class DownloadSummary:
    requested: int = 0
    already: int = 0  # ok in the manifest and on disk before this run
    new: int = 0
    invalid: int = 0
    by_reason: Counter = field(default_factory=Counter)  # not-ok ids of this run, by reason
    interrupted_by: int | None = None  # the signal number that stopped the run
    not_started: int = 0
    manifest: Path | None = None

    @property
    def available(self) -> int:
        return self.already + self.new

    @property
    def missing(self) -> int:
        return self.requested - self.available

    def count(self, rec: ManifestRecord) -> None:
        """One finished id of this run: downloaded, or counted under its reason."""
        if rec.status == OK:
            self.new += 1
        else:
            self.by_reason[rec.reason] += 1

    def line(self) -> str:
        unavailable = ", ".join(f"{r} {n}" for r, n in sorted(self.by_reason.items()) if r in UNAVAILABLE_REASONS)
        failed = ", ".join(f"{r} {n}" for r, n in sorted(self.by_reason.items()) if r not in UNAVAILABLE_REASONS)
        return (f"{self.available} of {self.requested} available ({self.new} downloaded now, {self.already} already "
                f"here); unavailable: {unavailable or '0'}; failed: {failed or '0'}"
                + (f"; {self.invalid} malformed CSV row(s) skipped" if self.invalid else "") + f"; manifest {self.manifest}")


class _Stopped(Exception):
    """Raised inside a worker when the run is being stopped (a signal)."""


class _QuietLogger:
    """yt-dlp logger that keeps messages off the terminal (the manifest records the errors)."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = debug

    def error(self, msg: str) -> None:
        pass


@lru_cache(maxsize=4)
def tool_versions(ffmpeg: str) -> tuple[tuple[str, str], ...]:
    import yt_dlp

    try:
        out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
        ff = out.split(" ")[2] if out.startswith("ffmpeg version") else out
    except (OSError, subprocess.SubprocessError):
        ff = "unavailable"
    return (("avvp", __version__), ("ffmpeg", ff), ("yt-dlp", yt_dlp.version.__version__))


def _probe(path: Path) -> tuple[float | None, str]:
    """(duration seconds, "WxH") of a media file via ffprobe; (None, "") when it cannot say."""
    ffprobe = shutil.which("ffprobe") or "ffprobe"
    try:
        out = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration:stream=codec_type,width,height",
                              "-of", "json", str(path)], capture_output=True, text=True, timeout=60)
        info = json.loads(out.stdout or "{}")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None, ""
    dur = info.get("format", {}).get("duration")
    video = [s for s in info.get("streams", []) if s.get("codec_type") == "video" and s.get("width")]
    res = f"{video[0]['width']}x{video[0]['height']}" if video else ""
    return (float(dur) if dur not in (None, "N/A") else None), res


def _run_ffmpeg(args: Sequence[str], stop: threading.Event) -> tuple[int, str]:
    """Run ffmpeg, killing it if the run is stopped; (return code, last stderr line)."""
    proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        try:
            _, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if stop.is_set():
                proc.kill()
                proc.communicate()
                raise _Stopped() from None
    lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    return proc.returncode, (lines[-1] if lines else "")


class _Fetcher:
    """Fetches and trims one clip; used by the worker threads."""

    def __init__(self, out: Path, cfg: DownloadConfig, stop: threading.Event):
        self.out = out
        self.work = out / WORK_DIR_NAME
        self.cfg = cfg
        self.stop = stop

    def _ydl(self, ytid: str):
        import yt_dlp

        def hook(_status: dict) -> None:
            if self.stop.is_set():
                raise _Stopped()

        opts = {
            "format": self.cfg.format, "outtmpl": str(self.work / f"{ytid}.full.%(ext)s"), "quiet": True,
            "no_warnings": True, "noprogress": True, "logger": _QuietLogger(), "retries": 0, "fragment_retries": 0,
            "extractor_retries": 0, "socket_timeout": self.cfg.socket_timeout, "progress_hooks": [hook],
            "noplaylist": True, "continuedl": False, "overwrites": True, "cachedir": False,
        }
        return yt_dlp.YoutubeDL(opts)

    def _cleanup(self, ytid: str) -> None:
        for leftover in self.work.glob(f"{ytid}.*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def fetch(self, req: ClipRequest) -> ManifestRecord | None:
        """The record of one id, or None if the run was stopped while it was in flight."""
        t0 = time.monotonic()
        url = self.cfg.url(req.ytid)
        tools = dict(tool_versions(self.cfg.ffmpeg))
        attempt = 0
        while True:
            attempt += 1
            try:
                rec = self._attempt(req, url)
            except _Stopped:
                self._cleanup(req.ytid)
                return None
            finally:
                self._cleanup(req.ytid)
            if self.stop.is_set() and rec.status != OK:
                return None  # a failure caused by the stop itself is no verdict on the video
            if rec.status == OK or rec.reason != "network" or attempt > self.cfg.retries:
                break
            delay = self.cfg.backoff * 2 ** (attempt - 1)
            if self.stop.wait(delay):
                return None
        rec.attempts = attempt
        rec.seconds = round(time.monotonic() - t0, 3)
        rec.tools = tools
        rec.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return rec

    def _attempt(self, req: ClipRequest, url: str) -> ManifestRecord:
        from yt_dlp.utils import DownloadError

        self.work.mkdir(parents=True, exist_ok=True)
        base = dict(id=req.id, ytid=req.ytid, start=req.start, url=url, trim=self.cfg.trim)
        try:
            with self._ydl(req.ytid) as ydl:
                info = ydl.extract_info(url, download=self.cfg.trim == "official")
        except _Stopped:
            raise
        except DownloadError as err:
            if isinstance(getattr(err, "exc_info", (None, None))[1], _Stopped) or self.stop.is_set():
                raise _Stopped() from None
            message = re.sub(r"\s+", " ", str(err).replace("ERROR: ", "")).strip()
            reason = classify_error(message)
            return ManifestRecord(**base, status=status_of(reason), reason=reason, message=message[:500])
        except Exception as err:  # noqa: BLE001 - yt-dlp raises many types; one id must not stop the run
            if self.stop.is_set():
                raise _Stopped() from None
            return ManifestRecord(**base, status=FAILED, reason="network", message=f"{type(err).__name__}: {err}"[:500])
        info = info or {}
        format_id = str(info.get("format_id") or "")
        tmp_clip = self.work / f"{req.ytid}.mp4"
        if self.cfg.trim == "official":
            downloads = info.get("requested_downloads") or [{}]
            full = Path(downloads[0].get("filepath") or "")
            if not full.is_file():
                return ManifestRecord(**base, status=FAILED, reason="network", message="yt-dlp reported no file")
            source_duration, resolution = info.get("duration"), str(info.get("resolution") or "")
            args = official_trim_args(self.cfg.ffmpeg, str(full), req.start, str(tmp_clip), self.cfg.clip_seconds,
                                      loglevel="error")
        else:
            formats = info.get("requested_formats") or [info]
            urls = [f.get("url") for f in formats if f.get("url")]
            if not urls:
                return ManifestRecord(**base, status=FAILED, reason="network", message="yt-dlp resolved no media URL")
            source_duration = info.get("duration")
            resolution = str(info.get("resolution") or "")
            args = [self.cfg.ffmpeg]
            for u in urls:
                args += ["-ss", str(float(req.start)), "-i", u]
            args += ["-t", str(float(self.cfg.clip_seconds))]
            if len(urls) > 1:  # separate video and audio formats (YouTube's adaptive streams)
                args += ["-map", "0:v:0", "-map", "1:a:0"]
            args += [*ENCODE_ARGS, str(tmp_clip), "-y", "-loglevel", "error"]
        code, last = _run_ffmpeg(args, self.stop)
        duration, clip_res = _probe(tmp_clip) if tmp_clip.exists() else (None, "")
        if code != 0 or not duration:
            why = last or f"exit code {code}"
            if code == 0:
                why = "the trim is empty (start beyond the end of the video?)"
            return ManifestRecord(**base, status=FAILED, reason="ffmpeg", message=f"ffmpeg trim failed: {why}"[:500],
                                  format_id=format_id, resolution=resolution, source_duration=source_duration)
        final = self.out / f"{req.ytid}.mp4"
        size = tmp_clip.stat().st_size
        digest = sha256_file(tmp_clip)
        os.replace(tmp_clip, final)
        return ManifestRecord(**base, status=OK, format_id=format_id, resolution=resolution or clip_res,
                              source_duration=source_duration, duration=duration, bytes=size, sha256=digest)


def check_writable(out: Path) -> None:
    """OSError with one line unless clips and the manifest can be written in `out`."""
    try:
        ensure_writable_dir(out / WORK_DIR_NAME)
    except OSError as err:
        raise OSError(f"--out {out} is not writable: {err.strerror or err}") from None


def download_clips(
    requests: Sequence[ClipRequest], out: str | os.PathLike, cfg: DownloadConfig, *,
    invalid: Iterable[InvalidRow] = (), progress: bool = True, echo: Callable[[str], None] | None = None,
) -> DownloadSummary:
    """Download every request into `out` (`<ytid>.mp4` + `manifest.jsonl`); see the module docstring."""
    require_extra("download", "avvp-download")
    echo = echo or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    check_writable(out)
    for leftover in (out / WORK_DIR_NAME).glob("*"):  # full videos / trims a killed run left behind
        with contextlib.suppress(OSError):
            leftover.unlink()
    manifest_path = out / MANIFEST_NAME
    done = read_manifest(manifest_path)
    summary = DownloadSummary(requested=len(requests), manifest=manifest_path)
    todo = []
    for req in requests:
        rec = done.get(req.id)
        if rec is not None and rec.status == OK and (out / f"{req.ytid}.mp4").is_file():
            summary.already += 1
        else:
            todo.append(req)
    writer = ManifestWriter(manifest_path)
    for row in invalid:
        summary.invalid += 1
        echo(f"avvp-download: skipped row: {row.message}")
        writer.append(ManifestRecord(id=row.text, ytid="", start=0.0, status=FAILED, reason="invalid-id",
                                     message=row.message))
    stop = threading.Event()
    caught: list[int] = []
    fetcher = _Fetcher(out, cfg, stop)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="clip", desc="avvp-download", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    def on_signal(signum: int) -> None:  # stop after the ids in flight instead of dying mid-write
        caught.append(signum)
        stop.set()

    with faults.stop_on_signals(on_signal=on_signal), ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        pending = {pool.submit(fetcher.fetch, req): req for req in todo}
        while pending:
            finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending.pop(fut)
                rec = fut.result()
                if rec is None:
                    continue
                writer.append(rec)
                bar.update(1)
                summary.count(rec)
            if stop.is_set():
                for fut in pending:
                    fut.cancel()
                summary.not_started = sum(1 for f in pending if f.cancelled())
                # the workers in flight notice the stop within ~0.2 s and return without a record
                for fut in list(pending):
                    if not fut.cancelled():
                        rec = fut.result()
                        if rec is not None:
                            writer.append(rec)
                            summary.count(rec)
                pending.clear()
    bar.close()
    if caught:
        summary.interrupted_by = caught[0]
        writer.close()
    else:
        writer.compact(keep_order=[r.id for r in requests])
        with contextlib.suppress(OSError):
            (out / WORK_DIR_NAME).rmdir()
    return summary
