"""Quality benchmark: every requested model preset × the ten official numbers, mean ± std over seeds.

    .venv/bin/python benchmarks/quality.py [--models han,valor,mmpyr,ma,leap,cvcms,mmcse,link]
        [--seeds 1,2,3] [--epochs N | --epochs valor=20,han=12] [--jobs 2] [--out DIR] [--json]

1. Generates the synthetic planted-event store (`avvp.data.synthetic`, generator seed 0, 400/100/100
   videos, the default features plus CLAP tokens at width 128 for the CLAP/CLIP presets) and runs
   `avvp-pseudolabel` on it (VALOR thresholds, /pseudo/audio, /pseudo/visual, /pseudo/eiou).
2. Trains each model with `avvp-train --preset <name> --seed S` for every seed, with the few-epoch
   overrides of `BUDGETS` (printed: the papers' epochs and batch sizes need hours on 2 CPUs; the train
   split is 25x smaller than LLP's, so presets with a low learning rate get a smaller batch for more
   updates per epoch). Every other preset constant (optimiser, lr, schedule shape, loss, selection rule,
   gate) is the paper's. A few large models are run at a reduced width (printed).
3. Scores best.pt's test predictions (model chosen on val segment Type@AV) with the official metric, with
   the run's own gate and, for models whose paper uses another gate, also with the standard global gate.
4. Prints a markdown table: rows × (segment A, V, AV, Type, Event; event-level the same; Avg = mean of the
   ten), mean ± sample std over seeds, plus the trivial baseline (video label on every segment, both
   modalities: needs no training, so no std), and the paired per-seed differences of every model vs the
   HAN-family model trained on the SAME labels (its "comparator").

Comparators (same labels, HAN architecture + MMIL head):
    leap  (pseudo)          vs valor   = HAN + VALOR loss on the same segment pseudo-labels
    mmcse, link (pseudo)    vs valor++ = the same on CLAP tokens / CLIP inputs (their presets' inputs)
    cvcms (MA refined)      vs MA stage 3 = HAN trained on the same refined labels (MA's own stage 3)
MA writes its refined labels into the store, so MA and CVCMS of seed S run on a per-seed copy of it.

Runs whose metrics_final.json exists in --out are reused (re-run with the same --out to add models).
Results: OUT/quality.md, OUT/quality.json (`--json` prints the JSON instead of the table).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COLUMNS = [(level, m) for level in ("segment", "event") for m in ("audio", "visual", "audio_visual", "type", "event")]
HEADER = ["seg A", "seg V", "seg AV", "seg Type", "seg Event", "evt A", "evt V", "evt AV", "evt Type", "evt Event", "Avg"]
ALL_MODELS = ("han", "valor", "mmpyr", "ma", "leap", "cvcms", "mmcse", "link")
DEFAULT_MODELS = ALL_MODELS

STORE_CONFIG = dict(num_train=400, num_val=100, num_test=100,
                    features=("vggish", "resnet152", "r2plus1d", "clip", "clap", "clap_tokens"),
                    dims=(("clap_tokens", 128),), seed=0)


def _set(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


# few-epoch overrides per run (avvp-train flags); "epochs" is separate so --epochs can replace it
@dataclass(frozen=True)
class Budget:
    epochs: int
    flags: tuple[str, ...] = ()
    note: str = ""


BUDGETS: dict[str, Budget] = {
    "han": Budget(10, (), "paper size; batch 16 (paper)"),
    "valor": Budget(15, ("--batch-size", "8", *_set("optim.warmup=2")),
                    "paper size and lr 1e-4 -> 1e-6; batch 8 (paper 64), warm-up 2 (paper 10 of 60)"),
    "mmpyr": Budget(10, tuple(_set("model.options.hidden=256", "model.options.ffn=256")),
                    "hidden/ffn 256 (paper 512) for time; batch 16 (paper)"),
    "ma": Budget(6, (), "paper size; 6 epochs per stage (paper 12), batch 16 (paper)"),
    "leap": Budget(12, ("--batch-size", "8", *_set("model.options.hidden=256", "model.options.ffn=256",
                                                    "model.options.han_ff=256")),
                   "MM-Pyramid encoder, hidden/ffn 256 (paper 512); batch 8 (paper 32), lr 1e-4 StepLR(10, 0.1) "
                   "(paper); label rows: the preset's packaged GloVe rows (the label_scale 100 of the earlier CLIP-row "
                   "default is not needed for them)"),
    "valor++": Budget(10, ("--batch-size", "8", *_set("optim.warmup=2")),
                      "paper size; batch 8 (paper 64), warm-up 2 (paper 10 of 60)"),
    "link": Budget(10, ("--batch-size", "8", *_set("optim.warmup=2")),
                   "paper size (= valor++ + T, S, P); batch 8 (paper 64), warm-up 2 (paper 10 of 60)"),
    "mmcse": Budget(10, ("--batch-size", "8", *_set("optim.warmup=2", "model.options.hidden=128",
                                                     "model.options.token_dim=64", "model.options.heads=4",
                                                     "model.options.ff=256", "model.options.layers=2")),
                    "d1 128, d2 64, 4 heads, ff 256, 2 FGSE layers (paper 256/128/8/512/4) for time; "
                    "batch 8 (paper 64), warm-up 2 (paper 5 of 60)"),
    "cvcms": Budget(10, ("--batch-size", "8", *_set("model.options.hidden=256", "model.options.ff=256")),
                    "hidden/ff 256 (paper 512); batch 8 (paper 64), lr 7e-5 StepLR(7, 0.5) (paper)"),
}


@dataclass(frozen=True)
class Row:
    """One table row: which run (preset, sub-directory) and which gate scores it."""

    key: str  # row id
    label: str
    run: str  # run name = BUDGETS key = preset
    subdir: str = ""  # MA: stage1 / stage3
    gate: str | None = None  # None: the run's own gate (config)
    comparator: str | None = None  # row key of the same-labels HAN-family model


# model (--models name) -> rows it produces, in table order
MODEL_ROWS: dict[str, list[Row]] = {
    "han": [Row("han", "han (weak)", "han")],
    "valor": [Row("valor", "valor (pseudo) = han + VALOR loss", "valor")],
    "mmpyr": [Row("mmpyr", "mmpyr (weak)", "mmpyr")],
    "ma": [Row("ma1", "ma stage 1 (weak), gate modality", "ma", "stage1"),
           Row("ma3", "ma stage 3 (refined), gate modality", "ma", "stage3"),
           Row("ma3g", "ma stage 3 (refined), gate global = han on refined", "ma", "stage3", gate="global")],
    "leap": [Row("leap", "leap (pseudo)", "leap", comparator="valor")],
    "mmcse": [Row("mmcse", "mmcse (pseudo), gate mmcse", "mmcse", comparator="valor++"),
              Row("mmcseg", "mmcse (pseudo), gate global", "mmcse", gate="global", comparator="valor++")],
    "link": [Row("link", "link (pseudo + teacher, T+S+P)", "link", comparator="valor++")],
    "cvcms": [Row("cvcms", "cvcms (refined)", "cvcms", comparator="ma3g")],
}
COMPARATOR_ROWS: dict[str, tuple[str, Row]] = {  # comparator row key -> (model that provides it, row)
    "valor": ("valor", MODEL_ROWS["valor"][0]),
    "valor++": ("valor++", Row("valor++", "valor++ (pseudo) = han + VALOR loss, CLAP tokens / CLIP", "valor++")),
    "ma3g": ("ma", MODEL_ROWS["ma"][2]),
}


# ------------------------------------------------------------------------------------------------ store
def make_store(out: Path) -> Path:
    from avvp.pseudolabels.run import PseudoLabelRunConfig, run_pseudolabels
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs

    store = out / "synthetic.h5"
    done = out / "synthetic.done"
    if store.exists() and done.exists():
        return store
    for p in (store, done):
        p.unlink(missing_ok=True)
    syn = SyntheticConfig(**STORE_CONFIG)
    generate_synthetic(store, syn, feature_specs(syn.features))
    run_pseudolabels(PseudoLabelRunConfig(store))
    done.write_text("ok\n")
    return store


def store_for(out: Path, store: Path, run: str, seed: int) -> Path:
    """MA writes /labels/refined_* into its store: MA and CVCMS of one seed share a private copy."""
    if run not in ("ma", "cvcms"):
        return store
    copy = out / "stores" / f"ma_seed{seed}.h5"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(store, copy.with_suffix(".tmp"))
        os.replace(copy.with_suffix(".tmp"), copy)
    return copy


# -------------------------------------------------------------------------------------------------- runs
def run_dir(out: Path, run: str, seed: int) -> Path:
    return out / "runs" / f"{run}_seed{seed}"


def train_argv(run: str, seed: int, store: Path, out_dir: Path, epochs: int) -> list[str]:
    b = BUDGETS[run]
    return ["--preset", run, "--data", str(store), "--out", str(out_dir), "--seed", str(seed), "--epochs", str(epochs),
            *b.flags, "--no-progress", "--set", "train.threads=1"]


def shown_flags(run: str, epochs: int) -> list[str]:
    """The flags of a run as printed: `--preset P --seed S --epochs N ...` without the paths."""
    argv = train_argv(run, 0, Path("STORE"), Path("OUT"), epochs)
    return ["--preset", run, "--seed", "S", *argv[8:]]


def finished(run: str, d: Path, flags: list[str]) -> bool:
    """A finished run with the same flags (a run trained with other overrides is trained again)."""
    done = (d / ("stage3" if run == "ma" else "") / "metrics_final.json").exists()
    recorded = d / "benchmark_flags.json"
    return done and recorded.exists() and json.loads(recorded.read_text()) == flags


def train(run: str, seed: int, store: Path, out: Path, epochs: int, log) -> float:
    d = run_dir(out, run, seed)
    flags = shown_flags(run, epochs)
    if finished(run, d, flags):
        log(f"  reuse {d}")
        return 0.0
    if d.exists():
        shutil.rmtree(d)
    argv = train_argv(run, seed, store_for(out, store, run, seed), d, epochs)
    d.mkdir(parents=True)
    (d / "benchmark_flags.json").write_text(json.dumps(flags))
    t0 = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    with open(d.with_suffix(".log"), "w") as f:
        rc = subprocess.call([sys.executable, "-m", "avvp.cli.train", *argv], stdout=f, stderr=subprocess.STDOUT,
                             cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"avvp-train {run} seed {seed} failed (exit {rc}); see {d.with_suffix('.log')}")
    log(f"  done {run} seed {seed} in {seconds:.0f} s")
    return seconds


# ---------------------------------------------------------------------------------------------- scoring
def ground_truth(store: Path, ids: Sequence[str]):
    from avvp.data.store import Store

    with Store(store) as s:
        return s.read("gt/audio", list(ids)), s.read("gt/visual", list(ids)), s.read("labels/weak", list(ids))


def numbers(result) -> list[float]:
    vals = [float(getattr(getattr(result, level), m)) for level, m in COLUMNS]
    return vals + [float(np.mean(vals))]


def score_row(row: Row, out: Path, store: Path, seed: int) -> dict:
    from avvp.data.predictions import read_predictions
    from avvp.metrics import evaluate

    d = run_dir(out, row.run, seed) / row.subdir
    final = json.loads((d / "metrics_final.json").read_text())
    gate = row.gate or final["gate"]
    p = read_predictions(d / "predictions_test.h5")
    ga, gv, _ = ground_truth(store, [str(i) for i in p.ids])
    r = evaluate(ga, gv, p.audio, p.visual, p.video, audio_video=p.audio_video, visual_video=p.visual_video, gate=gate)
    return {"test": numbers(r), "gate": gate, "best_epoch": final["best_epoch"],
            "val_seg_type_own_gate": final["val"]["segment"]["type"]}


def trivial(store: Path) -> list[float]:
    from avvp.data.store import Store
    from avvp.metrics import evaluate

    with Store(store) as s:
        ids = list(s.split_ids("test"))
    ga, gv, weak = ground_truth(store, ids)
    seg = np.repeat(weak[:, None, :], 10, axis=1).astype(np.float32)
    return numbers(evaluate(ga, gv, seg, seg, weak.astype(np.float32), gate="global"))


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


def fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


# ------------------------------------------------------------------------------------------------- main
def parse_epochs(spec: str | None, runs: Sequence[str]) -> dict[str, int]:
    epochs = {r: BUDGETS[r].epochs for r in runs}
    if not spec:
        return epochs
    if "=" not in spec:
        return {r: int(spec) for r in runs}
    for part in spec.split(","):
        name, value = part.split("=")
        if name.strip() not in BUDGETS:
            raise SystemExit(f"--epochs: unknown run {name!r}; known: {', '.join(BUDGETS)}")
        epochs[name.strip()] = int(value)
    return epochs


def plan(models: Sequence[str]) -> tuple[list[Row], list[str]]:
    """Rows in table order (requested models, then comparators they need) and the runs to train."""
    requested = [r for m in models for r in MODEL_ROWS[m]]
    keys = {r.key for r in requested}
    rows: list[Row] = []
    for r in requested:  # a comparator that was not requested goes just before the first row needing it
        if r.comparator and r.comparator not in keys:
            rows.append(COMPARATOR_ROWS[r.comparator][1])
            keys.add(r.comparator)
        rows.append(r)
    runs: list[str] = []
    for r in rows:
        if r.run not in runs:
            runs.append(r.run)
    return rows, runs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma list of {', '.join(ALL_MODELS)}")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", help="N for every run, or run=N,... (runs: " + ", ".join(BUDGETS) + ")")
    p.add_argument("--jobs", type=int, default=1, help="trainings in parallel (each uses one thread)")
    p.add_argument("--out", type=Path, default=Path("quality_out"))
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the markdown table")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_ROWS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {', '.join(ALL_MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, runs = plan(models)
    epochs = parse_epochs(args.epochs, runs)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else (lambda msg: print(msg, flush=True))

    t0 = time.perf_counter()
    store = make_store(out)
    log(f"store {store}: generate_synthetic(SyntheticConfig({', '.join(f'{k}={v!r}' for k, v in STORE_CONFIG.items())}))"
        " + avvp-pseudolabel (VALOR thresholds)")
    log("runs (avvp-train flags; every other setting is the preset's):")
    for run in runs:
        log(f"  {run:8s} {' '.join(shown_flags(run, epochs[run]))}  # {BUDGETS[run].note}")

    # MA before CVCMS of the same seed (CVCMS reads MA's refined labels); everything else independent
    groups: list[list[tuple[str, int]]] = []
    for seed in seeds:
        chain = [r for r in ("ma", "cvcms") if r in runs]
        if chain:
            groups.append([(r, seed) for r in chain])
        groups += [[(r, seed)] for r in runs if r not in ("ma", "cvcms")]
    groups.sort(key=lambda g: -sum(BUDGETS[r].epochs for r, _ in g))  # long chains first
    timings: dict[str, list[float]] = {}

    def work(group):
        for run, seed in group:
            timings.setdefault(run, []).append(train(run, seed, store, out, epochs[run], log))

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for f in [pool.submit(work, g) for g in groups]:
            f.result()

    results: dict[str, dict] = {"trivial": {"label": "trivial: video label on every segment, both modalities",
                                            "test": [trivial(store)]}}
    for row in rows:
        per_seed = [score_row(row, out, store, s) for s in seeds]
        results[row.key] = {"label": row.label, "run": row.run, "gate": per_seed[0]["gate"], "comparator": row.comparator,
                            "test": [x["test"] for x in per_seed], "best_epoch": [x["best_epoch"] for x in per_seed],
                            "val_seg_type": [x["val_seg_type_own_gate"] for x in per_seed]}
    comparisons = {}
    for row in rows:
        if row.comparator:
            mine, theirs = results[row.key]["test"], results[row.comparator]["test"]
            comparisons[row.key] = {
                "vs": row.comparator,
                "seg_type_diff": [a[3] - b[3] for a, b in zip(mine, theirs)],
                "avg_diff": [a[10] - b[10] for a, b in zip(mine, theirs)],
            }
    report = {"store": STORE_CONFIG, "seeds": seeds, "columns": HEADER,
              "runs": {r: {"argv": shown_flags(r, epochs[r]), "note": BUDGETS[r].note,
                           "train_seconds": timings.get(r, [])} for r in runs},
              "rows": results, "comparisons": comparisons, "wall_seconds": round(time.perf_counter() - t0, 1)}
    (out / "quality.json").write_text(json.dumps(report, indent=1, default=list))

    lines = [f"Test split, model chosen on val segment Type@AV; mean ± sample std over seeds {args.seeds}; "
             "Avg = mean of the ten numbers.", "",
             "| run | gate | " + " | ".join(HEADER) + " |", "|---|---|" + "---|" * len(HEADER)]
    for key, r in results.items():
        cols = [fmt([t[i] for t in r["test"]]) for i in range(len(HEADER))]
        lines.append(f"| {r['label']} | {r.get('gate', 'global')} | " + " | ".join(cols) + " |")
    if comparisons:
        lines += ["", "Same labels, paired per seed (model − comparator):", "",
                  "| model | comparator | Δ seg Type@AV | Δ Avg | per seed Δ seg Type@AV |", "|---|---|---|---|---|"]
        for key, c in comparisons.items():
            lines.append(f"| {results[key]['label']} | {results[c['vs']]['label']} | {fmt(c['seg_type_diff'])} | "
                         f"{fmt(c['avg_diff'])} | {' / '.join(f'{v:+.2f}' for v in c['seg_type_diff'])} |")
    lines += ["", "Best epochs: " + "; ".join(f"{r['label']}: {r['best_epoch']}" for k, r in results.items() if k != "trivial")]
    table = "\n".join(lines)
    (out / "quality.md").write_text(table + "\n")
    if args.json:
        print(json.dumps(report, indent=1, default=list))
    else:
        print(table)
        print(f"\n(wall {report['wall_seconds']:.0f} s; {out / 'quality.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
