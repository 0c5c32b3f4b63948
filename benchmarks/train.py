"""Trainer overhead benchmark: samples/s of `Trainer.train_epoch` vs a plain loop on pre-built tensors.

The plain loop does the same forward/backward/clip/step on the same batches, already materialised as
`Batch`es in a Python list, so the ratio isolates what the trainer's data path (tensor indexing of the
in-memory split, target gathering, loss-part bookkeeping, progress bar off) costs. A ratio near 1.0
means the loader is not the bottleneck.

    .venv/bin/python benchmarks/train.py [--models han,mmpyr,ma,valor++] [--train 64] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from avvp.data.store import Store, StoreWriter
from avvp.data.synthetic import SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs
from avvp.pseudolabels.valor import MODALITIES, TEACHERS, default_thresholds, teacher_labels
from avvp.train.config import preset
from avvp.train.loop import Trainer, shuffle_generator

# model name -> (preset, model option overrides)
CASES = {"han": ("han", {}), "mmpyr": ("mmpyr", {}), "ma": ("ma", {"stage": 1}), "valor++": ("valor++", {})}


def make_store(path: Path, num_train: int) -> None:
    syn = SyntheticConfig(num_train=num_train, num_val=8, num_test=8,
                          features=("vggish", "resnet152", "r2plus1d", "clip", "clap_tokens"))
    generate_synthetic(path, syn, feature_specs(syn.features))
    # VALOR's pseudo-labels as avvp-pseudolabel computes them (the rule with VALOR's thresholds)
    with Store(path) as s:
        labels = [teacher_labels(s, TEACHERS.get(m), default_thresholds(TEACHERS.get(m))) for m in MODALITIES]
    with StoreWriter(path) as w:
        for teacher in labels:
            w.set_rows(teacher.teacher.pseudo_path, list(teacher.ids), teacher.labels)


def plain_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, grad_clip: float | None) -> None:
    model.train()
    for b in batches:
        out = model(b)
        loss, _ = model.loss(out, b, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()


def bench(store: Path, name: str, repeats: int) -> dict[str, float]:
    preset_name, options = CASES[name]
    cfg = preset(preset_name)
    cfg.data.store, cfg.train.out, cfg.train.progress = str(store), "/nonexistent", False
    cfg.model.options.update(options)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    load_s = time.perf_counter() - t0
    model, optimizer = trainer._build()
    train = trainer.data["train"]
    n = len(train)
    batches = list(train.batches(cfg.optim.batch_size, shuffle=True, generator=shuffle_generator(cfg.train.seed, 1)))
    trainer.train_epoch(model, optimizer, 1)  # warm-up
    t_trainer, t_plain = [], []
    for _ in range(repeats):  # interleaved, so machine load affects both alike
        t = time.perf_counter()
        trainer.train_epoch(model, optimizer, 1)
        t_trainer.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain_epoch(model, optimizer, batches, cfg.optim.grad_clip)
        t_plain.append(time.perf_counter() - t)
    tr, pl = statistics.median(t_trainer), statistics.median(t_plain)
    return {"trainer_sps": n / tr, "plain_sps": n / pl, "ratio": pl / tr, "load_s": load_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="han,mmpyr,ma,valor++")
    p.add_argument("--train", type=int, default=64, help="training videos in the synthetic store")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.h5"
        make_store(store, args.train)
        print(f"{'model':10s}{'trainer samples/s':>20s}{'plain samples/s':>18s}{'ratio':>8s}{'load s':>8s}")
        for name in args.models.split(","):
            r = bench(store, name, args.repeats)
            print(f"{name:10s}{r['trainer_sps']:20.1f}{r['plain_sps']:18.1f}{r['ratio']:8.3f}{r['load_s']:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
