"""Training curves: `curves.png` beside metrics.jsonl, and optional TensorBoard event files.

Both are views of the lines the trainer appends to metrics.jsonl (one per epoch: lr, train losses,
validation metrics), so they can be redrawn from a run directory at any time (`plot_curves`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avvp.registry import Registry

LOGGERS: Registry[type] = Registry("logger")
VAL_CURVES = (("segment", "type", "seg Type@AV"), ("segment", "event", "seg Event@AV"),
              ("event", "type", "evt Type@AV"), ("event", "event", "evt Event@AV"))


def read_metrics(metrics_path: str | Path) -> list[dict[str, Any]]:
    path = Path(metrics_path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def plot_curves(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Loss terms (left) and validation metrics (right) per epoch; the selected epochs are marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for name in sorted({k for r in records for k in r.get("train", {})}):
        ax_loss.plot(epochs, [r["train"].get(name, float("nan")) for r in records], marker=".",
                     lw=2.2 if name == "total" else 1.0, label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for level, key, label in VAL_CURVES:
        ax_val.plot(epochs, [r["val"][level][key] for r in records], marker=".", label=label)
    chosen = [r for r in records if r.get("selected")]
    if chosen:
        ax_val.scatter([r["epoch"] for r in chosen], [r["val"]["segment"]["type"] for r in chosen], s=40,
                       facecolors="none", edgecolors="k", zorder=3, label="selected (best.pt)")
    ax_val.set(xlabel="epoch", ylabel="%", title="validation")
    for ax in (ax_loss, ax_val):
        if records:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


class EpochLogger:
    """Receives each metrics.jsonl record as it is written."""

    def __init__(self, out: Path):
        self.out = out

    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@LOGGERS.register("none")
class NoLogger(EpochLogger):
    """curves.png and metrics.jsonl only."""


@LOGGERS.register("tensorboard")
class TensorBoardLogger(EpochLogger):
    """Event files under <run>/tensorboard: lr, each loss term, the ten validation numbers."""

    def __init__(self, out: Path):
        super().__init__(out)
        self._writer = tensorboard_writer_class()(log_dir=str(out / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        step = record["epoch"]
        self._writer.add_scalar("lr", record["lr"], step)
        for name, value in record.get("train", {}).items():
            self._writer.add_scalar(f"train/{name}", value, step)
        for level in ("segment", "event"):
            for key, value in record["val"][level].items():
                self._writer.add_scalar(f"val/{level}/{key}", value, step)
        self._writer.add_scalar("val/avg", record["val"]["avg"], step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def tensorboard_writer_class():
    """torch's SummaryWriter; a clear error when the optional `tensorboard` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError("train.logger 'tensorboard' needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter
