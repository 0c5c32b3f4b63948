"""`make demo`: the whole pipeline from video files on a CPU laptop, and a parse whose answer is known.

    python -m avvp.demo --out demo_out [--weights-dir DIR]

Part A, planted clips (the parse means something, offline):
1. clips: ~150 generated 10 s videos with planted events (`avvp.demo.clips`: six stand-in classes with
   LLP names, each a sound and a coloured box; audio-only, visual-only and audio-visual events, overlaps);
   split into train / val / held-out test;
2. `avvp-extract` of all clips with the random-weight (or, with --weights-dir, pretrained) VGGish and CLIP
   ViT-B/32 backbones, `--profile clean` (no JPEG round trip: cheaper, and nothing to reproduce here);
   the clips' weak labels, splits and segment truth go into the store;
3. `avvp-train`: a small HAN on the weak labels (z-scored features, folded back into the checkpoint:
   `avvp.demo.planted`);
4. `avvp-parse` of the held-out clips with that checkpoint (features re-extracted from the files), and the
   official segment/event F of the parsed timelines against the planted truth, next to two baselines of
   the same clips (chance at the truth's positive rate; each clip's weak labels on every segment).

Part B, the synthetic planted-feature store (`avvp.data.synthetic`, feature widths equal to part A's):
5. `avvp-pseudolabel` (VALOR rule, report), 6. `avvp-train` of HAN (weak) and a VALOR-style HAN (pseudo),
7. `avvp-eval`: the ten official numbers of each on the synthetic test split.

Every step is printed as the command a user would type (or the Python call, for what has no command) and
runs in-process through the library function behind that command. Step timings are printed at the end.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from avvp.demo.clips import DEMO_CLASSES, DemoClip, make_clips, plan_clips
from avvp.demo.commands import extract_argv, parse_argv, shown, train_argv
from avvp.demo.planted import HeldOutScores, Standardization, fold_standardization, format_comparison, \
    score_held_out, stack_truth, timeline_matrix, write_standardized_store
from avvp.metrics import format_results

CLIP_MODEL = "ViT-B-32"
PLANTED_FEATURES = {"audio": "vggish", "visual": "clip"}  # role → backbone; no 3D stream (cost)


@dataclass(frozen=True)
class PlantedConfig:
    """Part A. Defaults: the `make demo` run (measured in docs/parse.md); tests use fewer clips/epochs."""

    num_train: int = 100
    num_val: int = 20
    num_test: int = 30  # held out: parsed, never trained or selected on
    seed: int = 0
    epochs: int = 15  # the trainer keeps the best epoch on val (measured: epochs 3-8 at lr 1e-3)
    hidden: int = 64  # measured on held-out Type@AV over 3-4 training seeds: 48-62 (hidden 64), 56-61 (128)
    lr: float = 1e-3
    batch_size: int = 16
    clip_workers: int = 2
    html: bool = True


@dataclass(frozen=True)
class SyntheticPartConfig:
    """Part B, as the earlier demo had it."""

    num_train: int = 240
    num_val: int = 60
    num_test: int = 60
    epochs: int = 6  # HAN
    valor_epochs: int = 12  # the VALOR loss needs more steps before any probability crosses 0.5
    hidden: int = 128
    lr: float = 1e-3


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    weights_dir: str | None = None
    planted: PlantedConfig = PlantedConfig()
    synthetic: SyntheticPartConfig | None = SyntheticPartConfig()  # None: part A only (tests)


@dataclass
class PlantedResult:
    scores: HeldOutScores
    parsed: dict[str, Any]  # clip name → ParseOutput
    clips: dict[str, DemoClip]  # held-out clips by name
    checkpoint: Path
    train_test: Any  # the trainer's own test-split MetricResult (store features)
    extraction_clips_per_s: float


@dataclass
class DemoResult:
    planted: PlantedResult
    timings: list[tuple[str, float]]
    total_seconds: float
    synthetic: dict[str, Any] = field(default_factory=dict)


class Steps:
    """Prints each step as the command a user would type and times the library call behind it."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @staticmethod
    def title(text: str) -> None:
        print(f"\n=== {text} ===", flush=True)

    @contextmanager
    def command(self, name: str, shown: str) -> Iterator[None]:
        print(shown, flush=True)
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        self.timings.append((name, seconds))
        print(f"  -> {seconds:.1f} s", flush=True)


def _cmd(prog: str, argv: Sequence[str]) -> str:
    return shown(prog, argv)


def _weights(weights_dir: str | None) -> tuple[str, str | None]:
    """("pretrained", dir) when a weights folder is given, else ("random", None), announced."""
    weights_dir = weights_dir or os.environ.get("AVVP_WEIGHTS_DIR")
    if weights_dir:
        return "pretrained", weights_dir
    print("  NOTICE: no --weights-dir / $AVVP_WEIGHTS_DIR: the backbones run with RANDOM weights (recorded as "
          "random_weights in the store). Random convolutional features still tell the planted signals apart.")
    return "random", None


def _extraction_config(weights: str, weights_dir: str | None):
    from avvp.pipeline.core import ExtractionConfig

    return ExtractionConfig(backbones=tuple(PLANTED_FEATURES.values()), weights=weights, weights_dir=weights_dir,
                            device="cpu", profile="clean", backbone_options=(("clip", (("model", CLIP_MODEL),)),))


def _han_config(store: Path, out: Path, cfg: PlantedConfig):
    from avvp.train import apply_override, preset

    exp = preset("han")
    exp.data.store, exp.train.out = str(store), str(out)
    exp.data.audio, exp.data.visual, exp.data.motion = PLANTED_FEATURES["audio"], PLANTED_FEATURES["visual"], None
    exp.optim.epochs, exp.optim.batch_size = cfg.epochs, cfg.batch_size
    exp.train.progress, exp.train.device = False, "cpu"
    for override in planted_overrides(cfg):
        exp = apply_override(exp, override)
    exp.validate()
    return exp


def planted_overrides(cfg: PlantedConfig) -> list[str]:
    # small model; a constant learning rate (HAN's step schedule divides it by 10 every 10 epochs, which
    # stops a short run before it has learned)
    return [f"model.options.hidden={cfg.hidden}", f"model.options.ff={2 * cfg.hidden}", f"optim.lr={cfg.lr}",
            "optim.schedule=constant"]


def run_planted(cfg: PlantedConfig, out: Path, weights_dir: str | None, steps: Steps) -> PlantedResult:
    """Part A (module docstring): clips → store → HAN → parse of the held-out clips → scores."""
    from avvp.data.store import StoreWriter
    from avvp.parse.run import ParseConfig, ParseFailure, parse_videos
    from avvp.pipeline.core import announce_random
    from avvp.pipeline.jobs import VideoJob
    from avvp.pipeline.local import run_local
    from avvp.train import train
    from avvp.train.checkpoint import Checkpoint

    videos = out / "planted"
    store, train_store = out / "planted.h5", out / "planted_train.h5"
    run_dir, parse_dir = out / "runs" / "planted_han", out / "parse"
    splits = ["train"] * cfg.num_train + ["val"] * cfg.num_val + ["test"] * cfg.num_test
    clips = plan_clips(len(splits), seed=cfg.seed, prefix="planted")

    steps.title("A1 planted clips (numpy + ffmpeg)")
    with steps.command("clips", f">>> make_clips(plan_clips({len(splits)}, seed={cfg.seed}), {str(videos)!r})"):
        paths = make_clips(clips, videos, seed=cfg.seed, workers=cfg.clip_workers)
    for clip, split in list(zip(clips, splits))[:: max(1, len(clips) // 4)]:
        print(f"  {clip.name} ({split}): " + "; ".join(e.describe() for e in clip.events))
    print(f"  {len(clips)} clips: {cfg.num_train} train, {cfg.num_val} val, {cfg.num_test} held out. Classes: "
          + ", ".join(f"{c.llp_name} = {c.sound_what} + rgb{c.color} box" for c in DEMO_CLASSES))

    steps.title("A2 features (avvp-extract) + the planted truth")
    weights, weights_dir = _weights(weights_dir)
    extraction = _extraction_config(weights, weights_dir)
    jobs = [VideoJob(id=c.name, path=str(p), split=s, weak=c.weak()) for c, p, s in zip(clips, paths, splits)]
    argv = extract_argv(extraction, videos, store)
    print("  (in-process: run_local(jobs, ExtractionConfig(...)); the jobs also carry each clip's split and weak "
          "labels, as --csv does for LLP)")
    announce_random(extraction)
    with steps.command("avvp-extract", _cmd("avvp-extract", argv)):
        summary = run_local(jobs, extraction, str(store), progress=False)
    summary.print(file=sys.stdout)
    clips_per_s = len(jobs) / max(1e-9, steps.timings[-1][1])
    with steps.command("truth", f">>> StoreWriter({str(store)!r}).set_rows('gt/audio' | 'gt/visual', ...)  # planted truth"):
        gt_a, gt_v = stack_truth(clips)
        with StoreWriter(store) as w:
            w.set_rows("gt/audio", [c.name for c in clips], gt_a)
            w.set_rows("gt/visual", [c.name for c in clips], gt_v)

    steps.title("A3 training (avvp-train): HAN on the clips' weak labels")
    from avvp.data.store import Store

    with Store(store) as s:
        train_ids = [str(i) for i in s.split_ids("train")]
        stats = {n: Standardization.fit(s.read(f"features/{n}", train_ids)) for n in PLANTED_FEATURES.values()}
    with steps.command("standardize", f">>> write_standardized_store({str(store)!r}, {str(train_store)!r}, ...)  "
                                      "# z-scores, train-split statistics"):
        write_standardized_store(store, train_store, list(PLANTED_FEATURES.values()), stats)
    exp = _han_config(train_store, run_dir, cfg)
    with steps.command("avvp-train", _cmd("avvp-train", train_argv(exp))):
        fit = train(exp)
    print(f"  best epoch {fit.best_epoch}; the trainer's own scores on the store's test split (= the held-out "
          f"clips): segment Type@AV {fit.test.segment.type:.1f}" if fit.test else "")
    checkpoint = run_dir / "raw_features.pt"
    with steps.command("fold", f">>> fold_standardization(Checkpoint.load({str(run_dir / 'best.pt')!r}), stats)"
                               f".save({str(checkpoint)!r})  # reads raw features"):
        best = Checkpoint.load(run_dir / "best.pt")
        fold_standardization(best, {role: stats[name] for role, name in PLANTED_FEATURES.items()}).save(checkpoint)

    steps.title("A4 parsing the held-out clips (avvp-parse) and scoring them against the planted truth")
    held_out = [(c, p) for c, p, s in zip(clips, paths, splits) if s == "test"]
    # weights, profile, CLIP model: the checkpoint's provenance says how its features were made
    parse_cfg = ParseConfig(checkpoint=str(checkpoint), out=str(parse_dir), html=cfg.html, weights_dir=weights_dir,
                            device="cpu")
    argv = parse_argv(parse_cfg, [*[p for _, p in held_out[:2]], "..."])
    with steps.command("avvp-parse", _cmd("avvp-parse", argv)):
        results = parse_videos([str(p) for _, p in held_out], parse_cfg)
    failures = [r for r in results if isinstance(r, ParseFailure)]
    if failures:
        raise RuntimeError("demo: avvp-parse failed on " + "; ".join(f"{f.video}: {f.stage}: {f.message}" for f in failures))
    parsed = {c.name: r for (c, _), r in zip(held_out, results)}
    on_a = np.stack([timeline_matrix(r.timeline.audio_on) for r in results])
    on_v = np.stack([timeline_matrix(r.timeline.visual_on) for r in results])
    truth_a, truth_v = stack_truth([c for c, _ in held_out])
    scores = score_held_out(truth_a, truth_v, on_a, on_v, [c.index for c in DEMO_CLASSES], seed=cfg.seed)
    return PlantedResult(scores, parsed, {c.name: c for c, _ in held_out}, checkpoint, fit.test, clips_per_s)


def print_planted(result: PlantedResult, show: int = 2) -> None:
    for name in list(result.parsed)[:show]:
        r, clip = result.parsed[name], result.clips[name]
        print(f"\n  {name}: planted  " + "; ".join(e.describe() for e in clip.events))
        print(f"  {' ' * len(name)}  parsed:")
        for e in r.timeline.events:
            print(f"      {e.start:5.1f} - {e.end:5.1f} s  {e.modality:12s} {e.label:24s} peak {e.peak:.2f}")
        print(f"  {' ' * len(name)}  files: {r.png_path}" + (f", {r.html_path}" if r.html_path else ""))
    print(f"\n  held-out clips ({result.scores.parsed.num_videos}), parsed timelines vs the planted truth "
          "(official metric, avvp.metrics):")
    print("  " + format_comparison(result.scores).replace("\n", "\n  "))
    print("\n  " + format_results(result.scores.parsed, "parsed held-out clips, all ten numbers:").replace("\n", "\n  "))


def run_synthetic(cfg: SyntheticPartConfig, out: Path, widths: dict[str, int], steps: Steps) -> dict[str, Any]:
    """Part B (module docstring): unchanged from the earlier demo, through the library calls."""
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs
    from avvp.metrics import evaluate_predictions
    from avvp.pseudolabels.run import PseudoLabelRunConfig, run_pseudolabels
    from avvp.train import apply_override, preset, train

    store = out / "synthetic.h5"
    features = ("vggish", "r2plus1d", "clip")
    steps.title("B1 synthetic store with part A's feature widths + pseudo-labels (avvp-pseudolabel)")
    syn = SyntheticConfig(num_train=cfg.num_train, num_val=cfg.num_val, num_test=cfg.num_test,
                          features=features, dims=tuple(sorted(widths.items())))
    with steps.command("generate_synthetic", f">>> generate_synthetic({str(store)!r}, SyntheticConfig(num_train="
                       f"{syn.num_train}, num_val={syn.num_val}, num_test={syn.num_test}, features={syn.features}, "
                       f"dims={syn.dims}), feature_specs({syn.features}))"):
        generate_synthetic(store, syn, feature_specs(syn.features))
    with steps.command("avvp-pseudolabel", _cmd("avvp-pseudolabel", ["--data", store, "--report"])):
        run_pseudolabels(PseudoLabelRunConfig(data=store, report=True))

    steps.title("B2 training (avvp-train): HAN with weak labels, VALOR-style HAN with pseudo-labels")
    # small models and a higher learning rate than the papers' (3e-4 / 1e-4 over 40-60 epochs), so that a
    # few epochs on a few hundred videos already learn (measured: val segment Type@AV about 75 after 5)
    small = [f"model.options.hidden={cfg.hidden}", f"model.options.ff={2 * cfg.hidden}", f"optim.lr={cfg.lr}"]
    runs = {"han": out / "runs" / "han", "valor": out / "runs" / "valor"}
    plans = {
        "han": (["--model", "han", "--epochs", cfg.epochs], "han", {"epochs": cfg.epochs}, small),
        "valor": (["--preset", "valor", "--labels", "pseudo", "--epochs", cfg.valor_epochs, "--batch-size", 16],
                  "valor", {"epochs": cfg.valor_epochs, "labels": "pseudo", "batch_size": 16},
                  small + ["model.options.heads=4", "optim.warmup=1", f"optim.lr_min={cfg.lr / 100}"]),
    }
    for name, (flags, preset_name, settings, overrides) in plans.items():
        exp = preset(preset_name)
        exp.data.store, exp.train.out = str(store), str(runs[name])
        exp.data.audio, exp.data.visual, exp.data.motion = "vggish", "clip", "r2plus1d"
        exp.optim.epochs = settings["epochs"]
        exp.optim.batch_size = settings.get("batch_size", exp.optim.batch_size)
        exp.data.labels = settings.get("labels", exp.data.labels)
        exp.train.progress = False
        for o in overrides:
            exp = apply_override(exp, o)
        exp.validate()
        with steps.command("avvp-train", _cmd("avvp-train", train_argv(exp))):
            train(exp)

    steps.title("B3 evaluation (avvp-eval): the ten official numbers on the synthetic test split")
    results = {}
    for name, run in runs.items():
        pred = run / "predictions_test.h5"
        with steps.command("avvp-eval", _cmd("avvp-eval", ["--pred", pred, "--split", "test", "--data", store])):
            results[name] = evaluate_predictions(pred, split="test", store=store)
        print(format_results(results[name], f"[{name}] {pred}"))
    return results


def _fresh(out: Path) -> None:
    # the demo owns these paths; a re-run starts them fresh (the trainer refuses to overwrite a run)
    for sub in ("planted", "planted.h5", "planted_train.h5", "synthetic.h5", "synthetic.valor_thresholds.json",
                "synthetic_pseudolabel_report", "runs", "parse"):
        p = out / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def feature_widths(store: Path, names: Sequence[str]) -> dict[str, int]:
    """Width (last axis) of each extracted feature, so the synthetic store matches it exactly."""
    from avvp.data.store import Store

    with Store(store) as s:
        return {n: int(s.read(f"features/{n}", [s.ids[0]]).shape[-1]) for n in names}


def run_demo(cfg: DemoConfig) -> DemoResult:
    from avvp.extract.backbones import WeightsUnavailable

    steps = Steps()
    t_start = time.perf_counter()
    _fresh(cfg.out)
    try:
        planted = run_planted(cfg.planted, cfg.out, cfg.weights_dir, steps)
    except WeightsUnavailable as err:
        if not (cfg.weights_dir or os.environ.get("AVVP_WEIGHTS_DIR")):
            raise
        print(f"  NOTICE: pretrained weights were not usable ({err}); falling back to RANDOM weights")
        _fresh(cfg.out)
        os.environ.pop("AVVP_WEIGHTS_DIR", None)
        planted = run_planted(cfg.planted, cfg.out, None, steps)
    print_planted(planted)
    synthetic = {}
    if cfg.synthetic is not None:
        synthetic = run_synthetic(cfg.synthetic, cfg.out, feature_widths(cfg.out / "planted.h5", PLANTED_FEATURES.values()), steps)
    total = time.perf_counter() - t_start
    print("\n=== timings ===")
    for name, seconds in steps.timings:
        print(f"  {name:20s} {seconds:7.1f} s")
    print(f"  {'total':20s} {total:7.1f} s")
    print(f"  extraction: {planted.extraction_clips_per_s:.2f} clips/s")
    s = planted.scores
    print(f"\nheld-out segment-level F (Type@AV): parsed {s.parsed.segment.type:.1f}, chance {s.chance.segment.type:.1f}, "
          f"weak labels everywhere {s.weak_everywhere.segment.type:.1f}")
    return DemoResult(planted, steps.timings, total, synthetic)


def with_planted(cfg: DemoConfig, **changes: Any) -> DemoConfig:
    return replace(cfg, planted=replace(cfg.planted, **changes))
