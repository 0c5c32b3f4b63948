"""`avvp-extract`: a folder of videos (or an LLP CSV + a folder) → features in the HDF5 store.

Exit codes (below): 3 = some videos failed (see /failures in the store); 4 = the disk filled up; 130/143 =
interrupted. In every case what was computed is saved (journaled store): re-run the same command to continue.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avvp import faults
from avvp._env import apply_defaults
from avvp.cli import reports_missing_extras
from avvp.cli.backbone_options import add_backbone_option_args, backbone_options_from_args
from avvp.data.store import StoreWriter, describe_saved
from avvp.extract.backbones import BACKBONES, WeightsUnavailable
from avvp.extract.backbones.weights import PRECISIONS, WEIGHT_MODES
from avvp.extract.decode import PROFILES
from avvp.pipeline.core import ExtractionConfig, announce_random
from avvp.pipeline.executors import EXECUTORS, ExecutorOptions
from avvp.pipeline.jobs import discover_llp, scan_folder

DEFAULT_STORE = "avvp_features.h5"  # written in the current directory when --out is not given


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-extract", description=__doc__, epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, required=True, help="folder of video files (searched recursively)")
    p.add_argument("--csv", type=Path, help="LLP CSV (filename, event_labels): ids, splits and weak labels come from it")
    p.add_argument("--backbone", action="append", required=True, choices=BACKBONES.names(), help="repeatable")
    p.add_argument("--out", type=Path, help=f"HDF5 store to create or complete (default ./{DEFAULT_STORE}; its path is printed)")
    p.add_argument("--profile", choices=PROFILES, default="reference",
                   help="network inputs: 'reference' = exactly what the official AVVP/VALOR pipelines fed each "
                        "network (default); 'clean' = no JPEG round trip, anti-aliased resampling (docs/decoding.md)")
    p.add_argument("--dump-inputs", type=Path, metavar="DIR",
                   help="write each video's network inputs to DIR/<id>.npz (keys '<backbone>/<name>') instead of "
                        "extracting; no weights needed (docs/backbones.md)")
    p.add_argument("--weights", choices=[m for m in WEIGHT_MODES if m != "none"], default="pretrained",
                   help="'random' runs the architectures with random weights (recorded, announced)")
    p.add_argument("--weights-dir", type=Path, help="folder with offline weight files (names in docs/backbones.md)")
    p.add_argument("--executor", choices=EXECUTORS.names(), default="ray")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (default, exact on every device; TF32 off on CUDA) or bf16/fp16 autocast "
                        "(faster on GPUs and on CPUs with AMX/AVX512-BF16; recorded in the store)")
    p.add_argument("--decoder", default=None, help="decoding backend (default: the measured default)")
    p.add_argument("--start", type=float, default=0.0, help="window start in seconds (default 0)")
    p.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10, as LLP)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per backbone forward")
    p.add_argument("--prefetch", type=int, default=1,
                   help="local executor: batches decoded ahead while the current one runs (0 = off; default 1)")
    p.add_argument("--decode-workers", type=int, default=1,
                   help="local executor: videos of a batch decoded in parallel (default 1; GPU machines: CPU cores)")
    add_backbone_option_args(p)
    p.add_argument("--address", default=None,
                   help="Ray: 'auto', host:6379 (GCS) or ray://host:10001 (client); default = embedded local Ray")
    p.add_argument("--connect-timeout", type=float, default=120.0,
                   help="Ray --address: seconds to retry connecting (a cluster starting with the job) and, with "
                        "--num-workers, to wait until the cluster can place them (default 120)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="Ray: model actors; with --address the job waits (--connect-timeout) until they fit")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="Ray: GPUs per model actor (default 1 if GPUs)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="Ray: CPUs reserved per model actor (shrunk when it would leave none for decoding)")
    p.add_argument("--flush-every", type=int, default=16,
                   help="journal a shard every N videos (or --flush-seconds, whichever first): what a kill can lose")
    p.add_argument("--flush-seconds", type=float, default=30.0)
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> ExtractionConfig:
    return ExtractionConfig(
        backbones=tuple(dict.fromkeys(args.backbone)),
        weights=args.weights,
        weights_dir=str(args.weights_dir) if args.weights_dir else None,
        device=args.device,
        precision=args.precision,
        decoder=args.decoder,
        start=args.start,
        window=args.window,
        batch_videos=args.batch_size,
        prefetch_batches=args.prefetch,
        decode_workers=args.decode_workers,
        backbone_options=backbone_options_from_args(args, "avvp-extract"),
        profile=args.profile,
        flush_every=args.flush_every,
        flush_seconds=args.flush_seconds,
    )


@reports_missing_extras
def main(argv: list[str] | None = None) -> int:
    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None and args.dump_inputs is None:
        args.out = Path(DEFAULT_STORE)
    saved = (lambda: describe_saved(args.out)) if args.out is not None else None
    with faults.guard("avvp-extract", saved=saved) as fault:
        return run(args)
    return fault.exit_code


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"avvp-extract: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    skipped = None
    try:
        if args.csv:
            jobs, missing = discover_llp(args.videos, args.csv)
            missing_stage = "missing"
        else:
            scan = scan_folder(args.videos)
            jobs, missing, skipped = scan.jobs, scan.failures, scan.skipped
            missing_stage = "decode"  # audio-only containers: a row is a video
    except (FileNotFoundError, ValueError) as err:
        print(f"avvp-extract: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    if args.dump_inputs is not None:
        from avvp.pipeline.api import dump_network_inputs

        written, failed = dump_network_inputs(jobs, cfg, args.dump_inputs)
        for vid, message in failed:
            print(f"avvp-extract: FAILED {vid}: {message}", file=sys.stderr)
        print(f"avvp-extract: network inputs of {written} video(s) written to {args.dump_inputs} "
              f"(profile {cfg.profile}); {len(failed) + len(missing)} failed or missing", file=sys.stderr)
        return faults.EXIT_PARTIAL if (failed or missing) else faults.EXIT_OK
    if missing:
        with StoreWriter(args.out) as writer:
            for m in missing:
                writer.add_failure(m.id, missing_stage, m.message)
        what = "CSV rows have no video file" if args.csv else "files have no video stream (audio only)"
        print(f"avvp-extract: {len(missing)} {what} (failure rows '{missing_stage}')", file=sys.stderr)
    if skipped is not None and skipped.total:
        print(f"avvp-extract: {skipped.line()}", file=sys.stderr)
    announce_random(cfg)
    options = ExecutorOptions(
        address=args.address, num_workers=args.num_workers,
        gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
        progress=not args.no_progress, connect_timeout=args.connect_timeout,
    )
    executor = EXECUTORS.get(args.executor)
    try:
        summary = executor(jobs, cfg, str(args.out), options)
    except WeightsUnavailable as err:
        print(f"avvp-extract: {err}", file=sys.stderr)
        return faults.EXIT_USAGE
    summary.print()
    print(f"avvp-extract: store {args.out.resolve()}", file=sys.stderr)
    return faults.EXIT_PARTIAL if (summary.failed or missing) else faults.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
