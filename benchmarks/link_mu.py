"""LINK's S-LOSS μ: learnable (paper) vs frozen at mu_init (`freeze_mu`) vs uniform weights (plain MSE).

    .venv/bin/python benchmarks/link_mu.py [--seeds 1,2] [--epochs 8] [--out runs/link_mu]

Synthetic planted-event store (avvp.data.synthetic, generator seed 0, 200/50/50 videos, CLAP tokens at
width 32 / CLIP / R(2+1)D) + `avvp-pseudolabel`; LINK preset (T+S+P) at hidden 64, 2 layers, 4 heads,
ff 128, batch 8, warm-up 2; the three S-LOSS weightings on the same seeds. Prints test segment Type@AV per
seed, the paired differences vs the learnable-μ run, and μ after every epoch (metrics.jsonl).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = {"learned_mu": [], "freeze_mu": ["model.options.freeze_mu=true"],
            "uniform": ["model.options.avss_weighting=uniform"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("runs/link_mu"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    from avvp.pseudolabels.run import PseudoLabelRunConfig, run_pseudolabels
    from avvp.cli.train import main as train_main
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs

    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "syn.h5"
    if not store.exists():
        syn = SyntheticConfig(num_train=200, num_val=50, num_test=50, features=("clap_tokens", "clip", "r2plus1d"),
                              dims=(("clap_tokens", 32),), seed=0)
        generate_synthetic(store, syn, feature_specs(syn.features))
        run_pseudolabels(PseudoLabelRunConfig(store))
    results: dict[str, dict[int, float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, sets in VARIANTS.items():
            out = args.out / f"{name}_s{seed}"
            if not (out / "metrics_final.json").exists():
                cmd = ["--preset", "link", "--data", str(store), "--out", str(out), "--epochs", str(args.epochs),
                       "--batch-size", "8", "--seed", str(seed), "--no-progress", "--device", "cpu"]
                for s in ["optim.warmup=2", "model.options.hidden=64", "model.options.layers=2",
                          "model.options.heads=4", "model.options.ff=128", "train.threads=1", *sets]:
                    cmd += ["--set", s]
                assert train_main(cmd) == 0, name
            final = json.loads((out / "metrics_final.json").read_text())
            results.setdefault(name, {})[seed] = final["test"]["segment"]["type"]
            mus = [json.loads(line)["train"].get("mu") for line in (out / "metrics.jsonl").read_text().splitlines()]
            print(f"{name:10s} seed {seed}: test seg Type@AV {results[name][seed]:.2f}  mu per epoch "
                  f"{[round(m, 3) if m is not None else None for m in mus]}", flush=True)
    base = results["learned_mu"]
    for name, r in results.items():
        diffs = [r[s] - base[s] for s in r]
        print(f"{name:10s} mean {sum(r.values()) / len(r):.2f}  paired vs learned_mu {[round(d, 2) for d in diffs]}")


if __name__ == "__main__":
    main()
