"""`avvp-download`: the LLP clips of a CSV, made as the official scripts make them, with a manifest.

Exit codes (avvp.faults, shared by every avvp command): 0 = every requested clip is available; 3 = some are
unavailable or failed (the manifest says which and why); 2 = the command could not start (bad arguments,
unreadable CSV, output not writable); 4 = disk full (the manifest keeps what was saved); 130 / 143 =
interrupted by SIGINT / SIGTERM after the manifest was flushed (run the same command again).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from avvp import faults
from avvp._env import apply_defaults
from avvp.acquire.download import DEFAULT_URL_TEMPLATE, TRIMS, DownloadConfig, download_clips, read_requests
from avvp.cli import reports_missing_extras


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-download", description=__doc__, epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, required=True, help="LLP CSV (e.g. AVVP_dataset_full.csv): filename <ytid>_<start>_<end>")
    p.add_argument("--out", type=Path, required=True, help="folder for <ytid>.mp4 and manifest.jsonl")
    p.add_argument("--split", choices=("train", "val", "test"), help="only this LLP split's rows")
    p.add_argument("--ids", type=Path, help="only the ids listed in this file (YouTube ids or LLP filenames)")
    p.add_argument("--workers", type=int, default=4, help="clips downloaded in parallel (default 4)")
    p.add_argument("--format", default="best",
                   help="yt-dlp format: best (AVVP's -f best, default), mp4 (VALOR's -f mp4) or any yt-dlp selector")
    p.add_argument("--trim", choices=TRIMS, default="official",
                   help="official: whole video, then the official ffmpeg trim (default); range: fetch only the "
                        "10 s window (faster, NOT the official bytes; recorded)")
    p.add_argument("--url-template", default=DEFAULT_URL_TEMPLATE, help="source URL with {ytid} (default YouTube)")
    p.add_argument("--retries", type=int, default=3, help="retries of network errors, with exponential backoff")
    p.add_argument("--backoff", type=float, default=2.0, help="seconds before the first retry (doubled each time)")
    p.add_argument("--socket-timeout", type=float, default=30.0, help="seconds without data before a read fails")
    p.add_argument("--no-progress", action="store_true")
    return p


@reports_missing_extras
def main(argv: list[str] | None = None) -> int:
    apply_defaults()
    args = build_parser().parse_args(argv)
    # download_clips turns SIGINT/SIGTERM into a clean stop itself (below); the guard gives disk full and a
    # signal outside that window the shared one-line message and exit code
    with faults.guard("avvp-download", saved=lambda: _saved(args.out)) as fault:
        return run(args)
    return fault.exit_code


def _saved(out: Path) -> str:
    manifest = out / "manifest.jsonl"
    return f"the manifest {manifest} records every finished clip" if manifest.exists() else ""


def run(args: argparse.Namespace) -> int:
    try:
        cfg = DownloadConfig(url_template=args.url_template, format=args.format, workers=args.workers,
                             retries=args.retries, backoff=args.backoff, socket_timeout=args.socket_timeout,
                             trim=args.trim)
        requests, invalid = read_requests(args.csv, split=args.split, ids_file=args.ids)
        summary = download_clips(requests, args.out, cfg, invalid=invalid, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, OSError) as err:
        if isinstance(err, OSError) and faults.is_disk_full(err):
            raise
        print(f"avvp-download: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    if summary.interrupted_by is not None:
        name = signal.Signals(summary.interrupted_by).name
        print(f"avvp-download: interrupted by {name}: {summary.available} of {summary.requested} clips saved, "
              f"recorded in {summary.manifest}; run the same command again to download the rest", file=sys.stderr)
        return 128 + summary.interrupted_by
    print(f"avvp-download: {summary.line()}", file=sys.stderr)
    return faults.EXIT_OK if summary.missing == 0 and not summary.invalid else faults.EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(main())
