"""Full-LLP scale benchmark: wall time and peak RSS of every stage of the released-features workflow.

Builds a planted-event simulation of N LLP videos written in the released folder layout (the official
AVVP `feats/{vggish,res152,r2plus1d_18}` and VALOR's `CLIP/`, `CLAP/` features and segment pseudo-labels,
one `<ytid>.npy` per video, the real LLP ids and splits), then runs each stage with the CLI's default
settings, each in its own child process so that its peak RSS (`wait4` ru_maxrss) is its own:

    import       avvp-import --feats --valor
    pseudolabel  avvp-pseudolabel (EIoU of the imported VALOR labels)
    train_memory avvp-train --preset valor --audio vggish --visual resnet152,r2plus1d, 1 epoch, data.mmap=false
    train_disk   the same with data.mmap=true, right after (the store is in the page cache)
    eval         avvp-eval of train_memory's test predictions
    parse        avvp-parse of one 10 s video with train_memory's best.pt (random backbone weights); the
                 bytes it holds are its networks' weights (VGGish, ResNet-152, R(2+1)D-18, the parser)

Each row: seconds, peak RSS, the float32 feature bytes the stage holds in memory, and the target
peak ≤ 1.15 × held + 1.5 GB. Also: import videos/s (target ≥ 100) and disk epoch ÷ memory epoch (target
≤ 1.5). `--code DIR` runs the stages with another checkout's avvp (e.g. the code before a change) for a
before/after. Planted events make the labels learnable; quality is not measured here.

    .venv/bin/python benchmarks/scale.py --n 600 --work /tmp/scale        # quick
    .venv/bin/python benchmarks/scale.py --work /tmp/scale --json scale.json   # full 11,849 (~22 GB disk)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avvp.data import llp  # noqa: E402
from avvp.data.classes import NUM_CLASSES, NUM_SEGMENTS  # noqa: E402
from avvp.data.importer import AVVP_FEATS, VALOR_RELEASE  # noqa: E402
# the targets are the trainer's own memory model (data.mmap=auto): peak <= factor x held + margin
from avvp.train.data import FEATURE_MEMORY_FACTOR as PEAK_FACTOR  # noqa: E402
from avvp.train.data import PROCESS_MARGIN_BYTES as PEAK_MARGIN  # noqa: E402

FULL_N = 11849
GB = 1e9
TRAIN_FEATURES = ("vggish", "resnet152", "r2plus1d")
STAGES = ("import", "pseudolabel", "train_memory", "train_disk", "eval", "parse")
AUDIO_FOLDERS = {"vggish", "CLAP/features"}
# which time rows of each released array one 1 s segment covers
ROWS_PER_SEGMENT = {(10,): 1, (80,): 8, (64,): 6}


# ------------------------------------------------------------------------------------------ simulation
def pick_videos(n: int) -> list[str]:
    """n LLP filenames: every val and test video (so avvp-eval can score the full test split) and n - 1,849
    train videos; below 1,850 the three splits in their LLP proportions (the eval stage is then skipped)."""
    splits = {s: sorted(llp.split_ids(s)) for s in ("train", "val", "test")}
    held_out = len(splits["val"]) + len(splits["test"])
    if n > held_out:
        counts = {"train": n - held_out, "val": len(splits["val"]), "test": len(splits["test"])}
    else:
        total = sum(len(v) for v in splits.values())
        counts = {s: max(1, round(n * len(v) / total)) for s, v in splits.items()}
        counts["train"] = max(1, n - counts["val"] - counts["test"])
    return sorted(f for s, ids in splits.items() for f in ids[: counts[s]])


def simulate(root: Path, n: int, seed: int = 0) -> dict:
    """Write the released layout for n videos: noise + a class pattern on the segments of planted events."""
    rng = np.random.default_rng(seed)
    weak = llp.read_weak_labels("full")
    specs = AVVP_FEATS + VALOR_RELEASE
    banks = {s.folder: rng.standard_normal((8,) + s.shape, dtype=np.float32) * 0.5 for s in specs if s.dtype != "uint8"}
    patterns = {s.folder: rng.standard_normal((NUM_CLASSES, s.shape[1]), dtype=np.float32) for s in specs if s.dtype != "uint8"}
    dirs = {s.folder: (root / ("feats" if s in AVVP_FEATS else "valor") / s.folder) for s in specs}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    videos = pick_videos(n)
    nbytes = 0
    for i, filename in enumerate(videos):
        classes = np.flatnonzero(weak.labels[weak.index_of(filename)])
        events = {"audio": np.zeros((NUM_SEGMENTS, NUM_CLASSES), np.uint8), "visual": np.zeros((NUM_SEGMENTS, NUM_CLASSES), np.uint8)}
        for c in classes:
            start = int(rng.integers(0, NUM_SEGMENTS))
            stop = int(rng.integers(start + 1, NUM_SEGMENTS + 1))
            for modality in [("audio",), ("visual",), ("audio", "visual")][int(rng.integers(0, 3))]:
                events[modality][start:stop, c] = 1
        key = llp.ytid(filename)
        for s in specs:
            if s.dtype == "uint8":
                value = events["audio" if s.folder.startswith("CLAP") else "visual"]
            else:
                value = banks[s.folder][i % len(banks[s.folder])].copy()
                mask = events["audio" if s.folder in AUDIO_FOLDERS else "visual"]
                per = ROWS_PER_SEGMENT[(s.shape[0],)]
                for t, c in zip(*np.nonzero(mask)):
                    value[t * per : (t + 1) * per] += patterns[s.folder][c]
            np.save(dirs[s.folder] / f"{key}.npy", value)
            nbytes += value.nbytes
    return {"videos": len(videos), "npy_bytes": nbytes}


def make_video(path: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=44100", "-t", "10", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(path)], check=True)


# ---------------------------------------------------------------------------------------------- stages
def run_stage(name: str, argv: list[str], work: Path, env: dict, code: Path = ROOT) -> dict:
    """Run one stage in a child process; its own wall time and peak RSS (ru_maxrss of wait4). The child runs
    in `code`: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH."""
    log = work / f"{name}.log"
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=code)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    tail = log.read_text().strip().splitlines()[-3:]
    if rc != 0:
        print(f"{name}: exit {rc}; last lines of {log}:\n  " + "\n  ".join(tail), file=sys.stderr)
    return {"stage": name, "seconds": round(seconds, 2), "peak_rss_bytes": int(usage.ru_maxrss) * 1024, "rc": rc,
            "log": str(log)}


def feature_bytes(store: Path, names: tuple[str, ...]) -> dict[str, int]:
    """float32 bytes of each /features/<name> over all rows (what an in-memory training run holds)."""
    import h5py

    with h5py.File(store, "r") as f:
        return {n: int(np.prod(f[f"features/{n}"].shape)) * 4 for n in names if f"features/{n}" in f}


def network_bytes(checkpoint: Path) -> int:
    """Bytes of the parameters and buffers avvp-parse holds for this checkpoint: its backbones (random
    weights, the same shapes as pretrained) and the parsing model. Parse holds no dataset features, but it
    holds these networks for as long as it runs, so they are its `held` bytes in the peak target."""
    import torch

    from avvp.parse.run import ParseConfig, load_parser

    parser = load_parser(ParseConfig(checkpoint=str(checkpoint), weights="random", device="cpu",
                                     accept_feature_mismatch=True))
    modules = [b.load_model() for b in parser.backbones] + [parser.model]
    total = 0
    for module in modules:
        if isinstance(module, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    return total


def epoch_seconds(run: Path) -> float | None:
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return None
    lines = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    return lines[0]["seconds"] if lines else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=FULL_N, help=f"videos (default {FULL_N}, all of LLP)")
    p.add_argument("--work", type=Path, required=True, help="work folder (simulation, store, runs, logs)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    p.add_argument("--code", type=Path, help="run the stages with the avvp of this checkout (before/after)")
    p.add_argument("--reuse", action="store_true", help="keep an existing simulation and store in --work")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the preset's)")
    args = p.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    code = (args.code or ROOT).resolve()
    env = dict(os.environ, PYTHONPATH=str(code), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    py = sys.executable
    sim, store, video = work / "released", work / "store.h5", work / "clip.mp4"
    result: dict = {"n": args.n, "code": str(code), "python": sys.version.split()[0], "stages": []}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))

    if not (args.reuse and sim.exists()):
        shutil.rmtree(sim, ignore_errors=True)
        t0 = time.perf_counter()
        result["simulation"] = simulate(sim, args.n)
        result["simulation"]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"simulation: {result['simulation']['videos']} videos, {result['simulation']['npy_bytes'] / GB:.2f} GB "
              f"of .npy in {result['simulation']['seconds']} s", flush=True)
    if "import" in stages or not store.exists():
        store.unlink(missing_ok=True)
    held_train = 0
    train_args = ["--preset", "valor", "--audio", "vggish", "--visual", "resnet152,r2plus1d", "--epochs", "1",
                  "--no-progress", "--data", str(store)]
    if args.batch_size:
        train_args += ["--batch-size", str(args.batch_size)]
    commands = {
        "import": [py, "-m", "avvp.cli.import_feats", "--feats", str(sim / "feats"), "--valor", str(sim / "valor"),
                   "--out", str(store)],
        "pseudolabel": [py, "-m", "avvp.cli.pseudolabel", "--data", str(store)],
        "train_memory": [py, "-m", "avvp.cli.train", *train_args, "--out", str(work / "run_memory"),
                         "--set", "data.mmap=false"],
        "train_disk": [py, "-m", "avvp.cli.train", *train_args, "--out", str(work / "run_disk"), "--set", "data.mmap=true"],
        "eval": [py, "-m", "avvp.cli.eval", "--pred", str(work / "run_memory" / "predictions_test.h5"), "--split", "test"],
        "parse": [py, "-m", "avvp.cli.parse", str(video), "--checkpoint", str(work / "run_memory" / "best.pt"),
                  "--weights", "random", "--accept-feature-mismatch", "--device", "cpu", "--out", str(work / "parse_out")],
    }
    for name in STAGES:
        if name not in stages:
            continue
        if name.startswith("train"):
            shutil.rmtree(work / f"run_{name.split('_')[1]}", ignore_errors=True)
        if name == "eval" and args.n <= len(llp.split_ids("val")) + len(llp.split_ids("test")):
            print("eval: skipped (the LLP test split is scored whole; needs --n > 1849)", flush=True)
            continue
        if name == "parse" and not video.exists():
            make_video(video)
        available = None
        if name == "train_memory":
            from avvp.train.data import available_memory_bytes

            available = available_memory_bytes()
            held_train = sum(feature_bytes(store, TRAIN_FEATURES).values())
            need = PEAK_FACTOR * held_train + PEAK_MARGIN
            if available is not None and need > available:  # forced in memory: the kernel may kill it
                print(f"train_memory: needs ~{need / GB:.1f} GB, {available / GB:.1f} GB available now "
                      "(data.mmap=auto would read from disk)", flush=True)
        row = run_stage(name, commands[name], work, env, code)
        if available is not None:
            row["available_bytes_before"] = available
        if name == "import" and store.exists():
            result["store_bytes"] = store.stat().st_size
            result["feature_bytes"] = feature_bytes(store, ("vggish", "resnet152", "r2plus1d", "clip", "clap_tokens"))
            row["videos_per_s"] = round(args.n / row["seconds"], 1)
        row["held_bytes"] = held_train if name == "train_memory" else 0
        if name == "parse" and row["rc"] == 0:
            row["held_bytes"] = network_bytes(work / "run_memory" / "best.pt")
            row["held"] = "backbone and model weights"
        if name.startswith("train"):
            row["epoch_seconds"] = epoch_seconds(work / f"run_{name.split('_')[1]}")
        row["peak_target_bytes"] = int(PEAK_FACTOR * row["held_bytes"] + PEAK_MARGIN)
        row["meets_peak_target"] = row["peak_rss_bytes"] <= row["peak_target_bytes"]
        result["stages"].append(row)
        print(f"{name}: {row['seconds']} s, peak RSS {row['peak_rss_bytes'] / GB:.2f} GB, rc {row['rc']}", flush=True)
        save()
    by = {r["stage"]: r for r in result["stages"]}
    if "train_memory" in by and "train_disk" in by and by["train_memory"].get("epoch_seconds"):
        result["disk_over_memory_epoch"] = round(by["train_disk"]["epoch_seconds"] / by["train_memory"]["epoch_seconds"], 3)
    save()
    print(table(result))
    return 0 if all(r["rc"] == 0 for r in result["stages"]) else 1


def table(result: dict) -> str:
    lines = [f"N = {result['n']} videos; store {result.get('store_bytes', 0) / GB:.2f} GB; features "
             + ", ".join(f"{k} {v / GB:.2f} GB" for k, v in result.get("feature_bytes", {}).items()),
             "| stage | seconds | epoch s | peak RSS GB | held GB | target GB | meets | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["stages"]:
        note = f"{r['videos_per_s']} videos/s" if "videos_per_s" in r else ("" if r["rc"] == 0 else f"exit {r['rc']}")
        lines.append(f"| {r['stage']} | {r['seconds']:.1f} | {r.get('epoch_seconds') or ''} | {r['peak_rss_bytes'] / GB:.2f} "
                     f"| {r['held_bytes'] / GB:.2f} | {r['peak_target_bytes'] / GB:.2f} | {'yes' if r['meets_peak_target'] else 'NO'} | {note} |")
    if "disk_over_memory_epoch" in result:
        lines.append(f"on-disk epoch ÷ in-memory epoch: {result['disk_over_memory_epoch']} (target ≤ 1.5)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
