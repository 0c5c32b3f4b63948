"""The trainer: one loop for every registered model, with the papers' optimisers and schedules.

Per epoch e = 1..E: set the learning rate of epoch e (`SCHEDULES`), train one pass over the shuffled
training split (permutation from a generator seeded by (seed, e), so the order does not depend on any
other RNG use), evaluate the validation split with the official metric, keep `best.pt` by val
segment-level Type@AV under the preset's rule (`train.select`: ">=", ">" or "last"; test is never
looked at during training), append a line to metrics.jsonl and write last.pt (the same `Checkpoint` as
best.pt plus its `resume` state: optimiser, RNG states, epoch, selection state) so that `--resume`
continues bit-exactly. Both are written by `Trainer.write_checkpoint` (avvp.train.checkpoint owns the format). At the end best.pt is
loaded, predictions_{val,test}.h5 and metrics_final.json are written and the ten numbers printed.

Schedules (lr of epoch e, epochs counted from 1):
    steplr          lr · gamma^((e−1) // step)   (HAN: `scheduler.step(epoch)` after each epoch → 3e-4 for
                    epochs 1-10, 3e-5 for 11-20, ...)
    warmup_cosine   e < W: e/W · lr_max;  else lr_min + ½(lr_max − lr_min)(1 + cos(π(e − W)/(E − W)))  (VALOR)
    constant        lr
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from avvp.metrics import MetricResult, evaluate, format_results
from avvp.models import build_model, required_inputs
from avvp.models.base import ParsingModel
from avvp.registry import Registry
from avvp.train.checkpoint import Checkpoint, FeatureProvenance, load_weights_into, resume_state
from avvp.train.config import ExperimentConfig, OptimConfig, dump_config
from avvp.train.curves import LOGGERS, plot_curves
from avvp.train.data import SplitData, TrainingData

log = logging.getLogger(__name__)
SELECT_KEY = ("segment", "type")  # val segment-level Type@AV
# curves.png is redrawn at most this often while epochs run, and always when the run ends (or stops): one
# matplotlib draw costs ~0.4 s, which on short epochs was most of the training time (12 of 14 s in the demo)
CURVES_REDRAW_SECONDS = 30.0

# ------------------------------------------------------------------------------------ schedules
ScheduleFn = Callable[[int, OptimConfig], float]
SCHEDULES: Registry[ScheduleFn] = Registry("lr schedule")


@SCHEDULES.register("steplr")
def steplr(epoch: int, o: OptimConfig) -> float:
    return o.lr * o.gamma ** ((epoch - 1) // o.step)


@SCHEDULES.register("warmup_cosine")
def warmup_cosine(epoch: int, o: OptimConfig) -> float:
    if epoch < o.warmup:
        return epoch / o.warmup * o.lr
    span = max(o.epochs - o.warmup, 1)
    return o.lr_min + 0.5 * (o.lr - o.lr_min) * (1 + math.cos(math.pi * (epoch - o.warmup) / span))


@SCHEDULES.register("constant")
def constant(epoch: int, o: OptimConfig) -> float:
    return o.lr


def lr_at(epoch: int, o: OptimConfig) -> float:
    return SCHEDULES.get(o.schedule)(epoch, o)


# ----------------------------------------------------------------------------------- optimisers
OptimizerFn = Callable[[Iterable[nn.Parameter], OptimConfig], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFn] = Registry("optimizer")
OPTIMIZERS.register("adam")(lambda params, o: torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                                               weight_decay=o.weight_decay))
OPTIMIZERS.register("adamw")(lambda params, o: torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                                                 weight_decay=o.weight_decay))


# ---------------------------------------------------------------------------------------- setup
def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        # warn_only: a few CUDA backward kernels (adaptive pooling) have no deterministic version
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def rng_states() -> dict[str, Any]:
    """Every RNG state as tensors and builtins (a checkpoint loads with weights_only)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(key.astype(np.int64)), int(pos),
                                                     int(has_gauss), float(gauss)),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, key, pos, has_gauss, gauss = states["numpy"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)  # version-1 last.pt: an ndarray
    np.random.set_state((kind, key.astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ParsingModel, Checkpoint]:
    """Rebuild a trained model from best.pt/last.pt: (model in eval mode on `device`, its Checkpoint)."""
    ckpt = Checkpoint.load(path)
    return ckpt.build_model(device), ckpt


def describe_last_checkpoint(out: str | os.PathLike) -> str:
    """What an interrupted run leaves: 'runs/x/last.pt holds epoch 3 of 10 (--resume continues with epoch 4)'."""
    path = Path(out) / "last.pt"
    if not path.exists():
        return f"nothing is saved yet ({path} not written)"
    ckpt = Checkpoint.load(path)
    epoch, epochs = int((ckpt.resume or {}).get("epoch", ckpt.epoch)), int(ckpt.config["optim"]["epochs"])
    then = f"continues with epoch {epoch + 1}" if epoch < epochs else "writes the predictions"
    return f"{path} holds epoch {epoch} of {epochs} (--resume {then})"


# -------------------------------------------------------------------------------------- results
@dataclass
class FitResult:
    best_epoch: int
    val: MetricResult
    test: MetricResult | None
    out: Path


# -------------------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: ExperimentConfig, data: TrainingData | None = None):
        cfg.validate()
        self.cfg = cfg
        if not cfg.train.out:
            raise ValueError("train.out is empty: pass --out <run dir>")
        self.out = Path(cfg.train.out)
        self.device = resolve_device(cfg.train.device)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        inputs = required_inputs(cfg.model.name, cfg.model.options)
        self.data = data if data is not None else TrainingData(cfg.data, inputs=inputs)
        missing = [name for name in inputs if name not in getattr(self.data, "inputs", ())]
        if missing:
            raise ValueError(f"model {cfg.model.name!r} reads the batch inputs {missing}, which the given "
                             f"TrainingData was built without: pass TrainingData(..., inputs={inputs!r})")
        self.dims = self.data.dims

    # -- building
    def _build(self) -> tuple[ParsingModel, torch.optim.Optimizer]:
        seed_everything(self.cfg.train.seed, self.cfg.train.deterministic)
        model = build_model(self.cfg.model.name, self.cfg.model.options, self.dims).to(self.device)
        if self.cfg.train.init_from:
            load_weights_into(model, self.cfg.model.name, self.cfg.train.init_from)
        optimizer = OPTIMIZERS.get(self.cfg.optim.optimizer)(model.parameters(), self.cfg.optim)
        return model, optimizer

    def write_checkpoint(self, path: Path, model: ParsingModel, epoch: int, val: dict | None,
                         resume: dict[str, Any] | None = None) -> Checkpoint:
        """best.pt (resume None) and last.pt (resume: optimiser, RNG, selection state): one shape. The
        feature provenance is what `TrainingData` read from the store's attributes."""
        from avvp import __version__

        ckpt = Checkpoint(
            model_name=self.cfg.model.name, model_options=model.options_dict(), config=self.cfg.to_dict(),
            classes=tuple(self.data.classes), input_dims=self.dims,
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
            provenance=tuple(getattr(self.data, "provenance", None) or (  # a TrainingData stand-in without
                FeatureProvenance(role, f"features/{name}", known=False)   # attributes: names only
                for role, name in self.data.features.items() if name)),
            label_text={k: v for k, v in getattr(self.data, "text", {}).items()},
            selection={"epoch": epoch, "val": val, "rule": self.cfg.train.select, "metric": "val segment Type@AV"},
            resume=resume, avvp_version=__version__,
        )
        ckpt.save(path)
        return ckpt

    # -- inference
    @torch.no_grad()
    def predict(self, model: ParsingModel, split: SplitData) -> dict[str, np.ndarray]:
        model.eval()
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("audio", "visual", "video", "audio_video", "visual_video")}
        for batch in split.batches(self.cfg.data.eval_batch_size):
            out = model(batch.to(self.device))
            parts["audio"].append(out.audio_seg.float().cpu().numpy())
            parts["visual"].append(out.visual_seg.float().cpu().numpy())
            parts["video"].append(out.video.float().cpu().numpy())
            if out.audio_video is not None:
                parts["audio_video"].append(out.audio_video.float().cpu().numpy())
            if out.visual_video is not None:
                parts["visual_video"].append(out.visual_video.float().cpu().numpy())
        # MMIL sums can exceed 1 by float rounding (1.0000001); the predictions file requires [0, 1]
        return {k: (np.clip(np.concatenate(v), 0.0, 1.0) if v else None) for k, v in parts.items()}

    def score(self, split: SplitData, pred: dict[str, np.ndarray]) -> MetricResult:
        if split.gt_audio is None:
            raise ValueError(f"no segment ground truth for the {split.name} split")
        return evaluate(split.gt_audio, split.gt_visual, pred["audio"], pred["visual"], pred["video"],
                        audio_video=pred["audio_video"], visual_video=pred["visual_video"], gate=self.cfg.train.gate)

    # -- training
    def train_epoch(self, model: ParsingModel, optimizer: torch.optim.Optimizer, epoch: int) -> dict[str, float]:
        o = self.cfg.optim
        model.train()
        train = self.data["train"]
        totals: dict[str, float] = {}
        seen = 0
        batches = train.batches(o.batch_size, shuffle=True, generator=shuffle_generator(self.cfg.train.seed, epoch))
        if self.cfg.train.progress:
            from tqdm import tqdm

            batches = tqdm(batches, total=train.num_batches(o.batch_size), desc=f"epoch {epoch}/{o.epochs}",
                           leave=False, dynamic_ncols=True)
        for batch in batches:
            batch = batch.to(self.device)
            out = model(batch)
            loss, parts = model.loss(out, batch, epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            optimizer.step()
            n = batch.size
            seen += n
            for k, v in {"total": loss.item(), **parts}.items():
                totals[k] = totals.get(k, 0.0) + v * n
        return {k: v / max(seen, 1) for k, v in totals.items()}

    def _improved(self, value: float, best: float | None) -> bool:
        rule = self.cfg.train.select
        if best is None or rule == "last":
            return True
        return value >= best if rule == ">=" else value > best

    def fit(self, resume: bool = False) -> FitResult:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        last_path, metrics_path = self.out / "last.pt", self.out / "metrics.jsonl"
        if last_path.exists() and not resume:
            raise FileExistsError(f"{self.out} already holds a run (last.pt); pass --resume or choose another --out")
        dump_config(cfg, self.out / "config.yaml")
        skipped = {s.name: s.skipped for s in self.data.splits.values() if s.skipped}
        if skipped:
            (self.out / "skipped_videos.json").write_text(json.dumps(skipped, indent=1))
        model, optimizer = self._build()
        start, best, best_epoch = 1, None, 0
        if resume and last_path.exists():
            state = resume_state(last_path, self.device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            set_rng_states(state["rng"])
            start, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
            # drop metrics lines of epochs that ran after this checkpoint (a kill between the two writes)
            if metrics_path.exists():
                lines = [ln for ln in metrics_path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= state["epoch"]]
                metrics_path.write_text("".join(ln + "\n" for ln in lines))
            log.info("resuming %s after epoch %d", self.out, state["epoch"])
        elif metrics_path.exists():
            metrics_path.unlink()
        if start == 1:
            # epoch 0: the state before training, so that a run interrupted in its first epoch (Ctrl-C,
            # SIGTERM) can --resume too, bit-exactly like the later epochs
            self._save_last(model, optimizer, 0, best, best_epoch)
        epoch_logger = LOGGERS.get(cfg.train.logger)(self.out)
        self._curves_drawn_at, self._curves_stale = None, metrics_path.exists()
        try:
            self._epochs(model, optimizer, range(start, cfg.optim.epochs + 1), best, best_epoch, epoch_logger)
        finally:
            epoch_logger.close()
            if self._curves_stale:  # the last epochs' lines (a run that ended or was stopped between redraws)
                self._draw_curves()
        return self.finish()

    def _draw_curves(self) -> None:
        """curves.png, redrawn from metrics.jsonl (so a resumed run's curves include the earlier epochs)."""
        plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")
        self._curves_drawn_at, self._curves_stale = time.monotonic(), False

    def _epochs(self, model, optimizer, epochs, best, best_epoch, epoch_logger) -> None:
        cfg = self.cfg
        best_path, metrics_path = self.out / "best.pt", self.out / "metrics.jsonl"
        val_split = self.data["val"]
        for epoch in epochs:
            t0 = time.perf_counter()
            lr = lr_at(epoch, cfg.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses = self.train_epoch(model, optimizer, epoch)
            val = self.score(val_split, self.predict(model, val_split))
            value = val.segment.type
            selected = self._improved(value, best)
            if selected:
                best, best_epoch = value, epoch
                self.write_checkpoint(best_path, model, epoch, val.as_dict())
            record = {"epoch": epoch, "lr": lr, "seconds": round(time.perf_counter() - t0, 3), "train": losses,
                      "val": val.as_dict(), "selected": selected}
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            epoch_logger.log(record)
            self._curves_stale = True
            if self._curves_drawn_at is None or time.monotonic() - self._curves_drawn_at >= CURVES_REDRAW_SECONDS:
                self._draw_curves()
            self._save_last(model, optimizer, epoch, best, best_epoch, val.as_dict())
            if cfg.train.progress:
                print(f"epoch {epoch:3d}  lr {lr:.3g}  loss {losses.get('total', float('nan')):.4f}  "
                      f"val seg Type@AV {value:6.2f}{'  *' if selected else ''}  ({record['seconds']:.1f} s)", flush=True)

    def _save_last(self, model, optimizer, epoch: int, best, best_epoch: int, val: dict | None = None) -> None:
        """last.pt: everything --resume needs to continue after `epoch` bit-exactly (epoch 0: before training)."""
        self.write_checkpoint(self.out / "last.pt", model, epoch, val, resume={
            "optimizer": optimizer.state_dict(), "epoch": epoch, "best": None if best is None else float(best),
            "best_epoch": best_epoch, "rng": rng_states()})

    def finish(self) -> FitResult:
        """Load best.pt, write predictions_{val,test}.h5 and metrics_final.json, print the table."""
        from avvp.data.predictions import write_predictions

        model, ckpt = load_model(self.out / "best.pt", self.device)
        results: dict[str, MetricResult] = {}
        for split_name in ("val", "test"):
            if split_name not in self.data.splits:
                continue
            split = self.data[split_name]
            pred = self.predict(model, split)
            write_predictions(
                self.out / f"predictions_{split_name}.h5", [str(v) for v in split.ids], pred["audio"], pred["visual"],
                pred["video"], pred["audio_video"], pred["visual_video"],
                attrs={"model": self.cfg.model.name, "preset": self.cfg.preset, "checkpoint": "best.pt",
                       "epoch": ckpt.epoch, "gate": self.cfg.train.gate},
                classes=self.data.classes,
            )
            if split.gt_audio is not None:
                results[split_name] = self.score(split, pred)
        final = {"preset": self.cfg.preset, "model": self.cfg.model.name, "best_epoch": ckpt.epoch,
                 "select": self.cfg.train.select, "gate": self.cfg.train.gate,
                 **{k: v.as_dict() for k, v in results.items()}}
        (self.out / "metrics_final.json").write_text(json.dumps(final, indent=1))
        if self.cfg.train.progress:
            print(f"best epoch {ckpt.epoch} (val segment Type@AV, rule {self.cfg.train.select!r})")
            print(format_results(results), flush=True)
        return FitResult(ckpt.epoch, results.get("val"), results.get("test"), self.out)
