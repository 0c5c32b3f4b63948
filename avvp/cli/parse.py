"""`avvp-parse`: any video(s) → an audio-visual event timeline (JSON), a picture (PNG), optionally HTML.

    avvp-parse VIDEO... --checkpoint runs/NAME/best.pt [--out DIR] [--html [--embed-video]]
               [--weights pretrained|random] [--weights-dir DIR] [--device auto]
               [--gate global|modality|mmcse|none] [--no-gate] [--threshold 0.5]
               [--backbone-opt BACKBONE.OPTION=VALUE ...] [--accept-feature-mismatch]

The checkpoint says which features the model was trained on and how they were made (weights, options,
profile, precision); only those backbones run, built that way, with the code of `avvp-extract`, on
consecutive 10 s windows covering the whole video. A setting given here that makes the features differ
stops the parse with one line naming each difference, unless --accept-feature-mismatch (then recorded in
the timeline's meta). Per video DIR gets
`<stem>.timeline.json`, `<stem>.png` and, with --html, `<stem>.html` (a self-contained page that plays the
video with a cursor over the timeline). Exit codes: 0 = all parsed, 3 = some videos failed (listed),
2 = could not start (bad arguments, checkpoint or weights unavailable).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from avvp import faults
from avvp._env import apply_defaults
from avvp.cli import reports_missing_extras
from avvp.cli.backbone_options import add_backbone_option_args
from avvp.extract.backbones.weights import PRECISIONS, WEIGHT_MODES
from avvp.extract.decode import PROFILES
from avvp.metrics import GATES

EXIT_OK, EXIT_START, EXIT_SOME_FAILED = faults.EXIT_OK, faults.EXIT_USAGE, faults.EXIT_PARTIAL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avvp-parse", description=__doc__.split("\n\n")[0], epilog=faults.EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", type=Path, help="video files (any length, any container ffmpeg reads)")
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt of an avvp-train run")
    p.add_argument("--out", type=Path, default=Path("parse_out"), help="output folder (default parse_out)")
    p.add_argument("--html", action="store_true", help="also write a self-contained HTML page per video")
    p.add_argument("--embed-video", action="store_true",
                   help="embed the video in the HTML page (base64) when it is at most --max-embed-mb")
    p.add_argument("--max-embed-mb", type=float, default=20.0)
    p.add_argument("--weights", choices=[m for m in WEIGHT_MODES if m != "none"], default=None,
                   help="default: what the checkpoint's features were made with; 'random' runs the backbones "
                        "with random weights (meaningful only for a checkpoint trained on the same random features)")
    p.add_argument("--weights-dir", type=Path, help="folder with offline backbone weight files")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="default: the checkpoint's features' precision (fp32 for released features); bf16/fp16 "
                        "autocast is faster on GPUs but differs from fp32 features")
    p.add_argument("--decoder", default=None, help="decoding backend (default: the measured default)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="network-input profile (default: the checkpoint's features' profile; docs/decoding.md)")
    p.add_argument("--gate", choices=GATES.names(), default=None,
                   help="video-level gate (default: the one the checkpoint was evaluated with)")
    p.add_argument("--no-gate", action="store_true", help="same as --gate none: segment probabilities alone")
    p.add_argument("--threshold", type=float, default=0.5, help="segment/video probability threshold (default 0.5)")
    add_backbone_option_args(p)  # options the checkpoint recorded (e.g. clip.model) are its default
    p.add_argument("--accept-feature-mismatch", action="store_true",
                   help="parse even when the features would differ from the training ones (recorded in the timeline)")
    p.add_argument("--no-thumbnails", action="store_true", help="no frame strip in the PNG")
    return p


def config_from_args(args: argparse.Namespace):
    from avvp.cli.backbone_options import backbone_options_from_args
    from avvp.parse.run import ParseConfig

    if args.no_gate and args.gate not in (None, "none"):
        raise ValueError(f"--no-gate contradicts --gate {args.gate}")
    return ParseConfig(
        checkpoint=str(args.checkpoint), out=str(args.out), html=args.html, embed_video=args.embed_video,
        max_embed_bytes=int(args.max_embed_mb * 1024 * 1024), weights=args.weights,
        weights_dir=str(args.weights_dir) if args.weights_dir else None, device=args.device,
        precision=args.precision, decoder=args.decoder, gate="none" if args.no_gate else args.gate,
        threshold=args.threshold, backbone_options=backbone_options_from_args(args, "avvp-parse"),
        thumbnails=not args.no_thumbnails,
        profile=args.profile, accept_feature_mismatch=args.accept_feature_mismatch,
    )


@reports_missing_extras
def main(argv: Sequence[str] | None = None) -> int:
    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    args = build_parser().parse_args(argv)
    from avvp.extract.backbones import WeightsUnavailable
    from avvp.parse.run import ParseFailure, parse_videos

    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"avvp-parse: error: {err}", file=sys.stderr)
        return EXIT_START
    if not args.checkpoint.is_file():
        print(f"avvp-parse: error: checkpoint {args.checkpoint} not found", file=sys.stderr)
        return EXIT_START
    if cfg.weights == "random":
        print("avvp-parse: NOTICE: --weights random: the backbones run with RANDOM weights, so the timeline shows "
              "meaningful events only for a checkpoint trained on features of the same random backbones "
              "(as `make demo` does)", file=sys.stderr)
    try:
        results = parse_videos([str(v) for v in args.videos], cfg)
    except (WeightsUnavailable, ValueError, KeyError, FileNotFoundError, faults.OneLineError) as err:
        print(f"avvp-parse: error: {err}", file=sys.stderr)
        return EXIT_START
    failed = 0
    for r in results:
        if isinstance(r, ParseFailure):
            failed += 1
            print(f"avvp-parse: FAILED {r.video}: {r.stage}: {r.message}", file=sys.stderr)
            continue
        t = r.timeline
        print(f"{r.video}: {t.duration:.2f} s, {len(t.window_starts)} window(s), {len(t.events)} event(s)")
        for e in t.events:
            print(f"  {e.start:7.2f} - {e.end:7.2f} s  {e.modality:12s} {e.label:24s} peak {e.peak:.2f}")
        print(f"  timeline: {r.json_path}")
        print(f"  figure:   {r.png_path}")
        if r.html_path:
            print(f"  page:     {r.html_path}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
