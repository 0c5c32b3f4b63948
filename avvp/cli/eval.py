"""`avvp-eval`: score a predictions file with the official LLP metric.

    avvp-eval --pred preds.h5 --split test [--annotations 2024|2020] [--gate global|modality|mmcse|none]
              [--data STORE] [--json] [--per-class] [--overlap]

The gate is the one the predictions file records (attribute `gate`, written by avvp-train from its preset,
e.g. `mmcse`), so that avvp-eval prints the number the trainer printed; the header line says which gate and
where it came from. `--gate` overrides it. When the gate used is not the standard protocol's (`global`),
the standard-protocol table is printed beside it (and is `"standard_protocol"` in `--json`).

Ground truth comes from the bundled LLP eval CSVs (`--annotations`, default the 2024 files), or, with
`--data STORE`, from the store's /gt/{audio,visual} for the videos whose /videos/split is `--split`
(synthetic data). Every video of the split must be in the predictions file (exit code 2 otherwise,
naming the first 10); extra videos in the file are ignored. `--json` prints exactly one JSON object:
`{"segment": {...}, "event": {...}, "avg": x}` in percent, plus "per_class" / "overlap" when asked.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence

from avvp import faults
from avvp._env import apply_defaults
from avvp import metrics
from avvp.data import llp
from avvp.data.predictions import MissingVideosError, PredictionsError, read_predictions
# the Python entry points behind this command, re-exported for callers that think of it as "avvp-eval"
from avvp.metrics import evaluate_arrays, evaluate_predictions  # noqa: F401

EXIT_OK = faults.EXIT_OK
EXIT_INPUT_ERROR = faults.EXIT_USAGE  # same code argparse uses for usage errors
STANDARD_GATE = "global"  # the official protocol's gating (metrics.GATES)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avvp-eval",
        description="Official LLP segment/event-level F-scores of a predictions file (see docs/metrics.md).",
        epilog=faults.EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pred", required=True, help="predictions HDF5 file (docs/predictions.md)")
    p.add_argument("--split", default="test", help="split to score: val or test (LLP), or a split of --data")
    p.add_argument("--annotations", default="2024", choices=list(llp.EVAL_ANNOTATIONS),
                   help="LLP eval annotation version (2020 = the file all pre-2024 papers used)")
    p.add_argument("--data", metavar="STORE", default=None,
                   help="take ground truth from this store's /gt/{audio,visual} (rows of --split) instead of the LLP "
                        "CSVs; --annotations is then ignored")
    p.add_argument("--gate", default=None, choices=metrics.GATES.names(),
                   help="video-level gating (default: the gate the predictions file records, else global): " + "; ".join(f"{g}: {metrics.GATES.get(g).description}"
                                                           for g in metrics.GATES.names()))
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--per-class", action="store_true", help="also report per-class F")
    p.add_argument("--overlap", action="store_true",
                   help="also report LEAP's non-overlapping / overlapping video subsets")
    return p


def _fmt(x: float | None) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.2f}"


def format_per_class(table: metrics.PerClassResult) -> str:
    keys = ("audio", "visual", "audio_visual", "event")
    short = {"audio": "A", "visual": "V", "audio_visual": "AV", "event": "Ev@AV"}
    head = f"{'class':24s}" + "".join(
        f"{('seg ' if level == 'segment' else 'evt ') + short[k]:>10s}" for level in metrics.LEVELS for k in keys
    ) + f"{'videos A/V':>12s}"
    lines = ["per-class F (mean over the videos where the class is not skipped; videos = how many, segment level)",
             head]
    for c, name in enumerate(table.classes):
        row = f"{name:24s}"
        for level in metrics.LEVELS:
            row += "".join(f"{_fmt(table.scores[level][k][c]):>10s}" for k in keys)
        row += f"{table.videos['segment']['audio'][c]:>7d}/{table.videos['segment']['visual'][c]:<4d}"
        lines.append(row)
    return "\n".join(lines)


def resolve_gate(requested: str | None, pred) -> tuple[str, str]:
    """(gate, where it came from): --gate, else the file's recorded gate, else the standard protocol's."""
    if requested:
        return requested, "--gate"
    recorded = pred.attrs.get("gate")
    if recorded is not None and str(recorded):
        recorded = recorded.decode() if isinstance(recorded, bytes) else str(recorded)
        if recorded not in metrics.GATES.names():
            raise ValueError(f"{pred_name(pred)} records gate {recorded!r}, which this avvp does not know "
                             f"(known: {', '.join(metrics.GATES.names())}); pass --gate")
        return recorded, "recorded in the predictions file"
    return STANDARD_GATE, "standard protocol; the file records no gate"


def pred_name(pred) -> str:
    return f"the predictions of {pred.model!r}" if pred.model else "the predictions file"


def run(args: argparse.Namespace) -> tuple[dict, str]:
    """Evaluate; returns (JSON object, human-readable text)."""
    pred = read_predictions(args.pred)
    gate, gate_source = resolve_gate(args.gate, pred)
    gt = metrics.load_ground_truth(args.split, args.annotations, args.data)
    scores = metrics.score_predictions(pred, gt, gate=gate)
    result = metrics.summarize(scores)
    out = result.as_dict() | {"gate": gate, "gate_source": gate_source}
    source = gt.source
    text = [metrics.format_results(result, f"avvp-eval  {args.pred}  {source}  gate={gate} ({gate_source})  "
                                  f"model={pred.model or '?'}")]
    if gate != STANDARD_GATE:
        standard = metrics.summarize(metrics.score_predictions(pred, gt, gate=STANDARD_GATE))
        out["standard_protocol"] = standard.as_dict() | {"gate": STANDARD_GATE}
        text.append(metrics.format_results(standard, f"standard protocol, for comparison with papers: gate={STANDARD_GATE} "
                                            f"(segment Type@AV {standard.segment.type:.2f} vs {result.segment.type:.2f} "
                                            f"with gate={gate})"))
    if args.per_class:
        table = metrics.per_class_table(scores, pred.classes)
        out["per_class"] = table.as_dict()
        text.append(format_per_class(table))
    if args.overlap:
        mask = metrics.overlapping_videos(gt.audio, gt.visual)
        split = metrics.overlap_split(scores, mask)
        out["overlap"] = {name: (None if r is None else r.as_dict() | {"num_videos": r.num_videos})
                          for name, r in split.items()}
        for name, r in split.items():
            text.append(f"{name}: no videos" if r is None else metrics.format_results(r, f"{name} videos (LEAP Table 3 split)"))
    return out, "\n\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    apply_defaults()  # offline hub, loopback-only Ray: before any heavy import
    args = build_parser().parse_args(argv)
    try:
        out, text = run(args)
    except MissingVideosError as exc:
        print(f"avvp-eval: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (FileNotFoundError, PredictionsError, llp.LLPFormatError, ValueError, KeyError, faults.OneLineError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"avvp-eval: error: {msg}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    if args.json:
        # NaN is not JSON; per-class values without any video are already None
        print(json.dumps(out, allow_nan=False))
    else:
        print(text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
