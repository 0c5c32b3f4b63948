"""Quality of segment pseudo-labels measured with the official LLP metric.

The pseudo-labels are scored as if they were a model's predictions: segment probabilities = the 0/1
pseudo-labels, video-level probability = the weak label (the standard 'global' gate, so the gate changes
nothing: the VALOR rule already zeroes classes outside the weak label). Output per split: the ten official
numbers (segment and event level: audio, visual, audio-visual, Type@AV, Event@AV), a per-class table
(official per-class F: mean over the videos where the class is not skipped, plus the pooled F used by the
calibration objective), and a PNG bar chart of the per-class segment F (audio and visual).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from avvp import metrics
from avvp.pseudolabels.calibrate import SplitGroundTruth, pooled_class_f


@dataclass(frozen=True)
class SplitQuality:
    """Official metric of pseudo-labels on one split, plus per-class tables."""

    split: str
    videos: int
    result: metrics.MetricResult
    per_class: metrics.PerClassResult
    pooled_f: dict[str, np.ndarray]  # modality -> (K,) pooled per-class segment F in [0, 1], NaN: no GT/prediction
    gt_source: str

    @property
    def segment_f(self) -> dict[str, float]:
        return {"audio": self.result.segment.audio, "visual": self.result.segment.visual}


def pseudo_label_quality(
    pseudo_audio: np.ndarray,
    pseudo_visual: np.ndarray,
    weak: np.ndarray,
    gt: SplitGroundTruth,
    classes: Sequence[str],
) -> SplitQuality:
    """Score (n,10,K) pseudo-labels of the videos of `gt` (same order) with the official metric."""
    so_a, so_v = metrics.binarize(pseudo_audio, pseudo_visual, weak, gate="global")
    scores = metrics.score_videos(gt.audio, gt.visual, so_a, so_v, ids=[str(i) for i in gt.ids])
    return SplitQuality(
        split=gt.split,
        videos=len(gt.ids),
        result=metrics.summarize(scores),
        per_class=metrics.per_class_table(scores, classes),
        pooled_f={"audio": pooled_class_f(so_a, gt.audio, np.nan), "visual": pooled_class_f(so_v, gt.visual, np.nan)},
        gt_source=gt.source,
    )


def format_quality(q: SplitQuality) -> str:
    seg, ev = q.result.segment, q.result.event
    lines = [
        f"{q.split}: {q.videos} videos, GT {q.gt_source}",
        "  level    audio  visual     av  type@AV  event@AV",
    ]
    for name, lv in (("segment", seg), ("event", ev)):
        lines.append(
            f"  {name:<7} {lv.audio:6.2f}  {lv.visual:6.2f} {lv.audio_visual:6.2f}   {lv.type:6.2f}    {lv.event:6.2f}"
        )
    return "\n".join(lines)


def format_class_table(q: SplitQuality) -> str:
    """Per-class segment F: official per-class (mean over videos with GT or prediction) and pooled."""
    seg = q.per_class.scores["segment"]
    vids = q.per_class.videos["segment"]

    def pct(x: float) -> str:
        return "   -  " if np.isnan(x) else f"{x:6.2f}"

    lines = [f"{q.split} per-class segment F (official per-class mean / pooled over videos), videos counted",
             f"  {'class':<24} {'audio':>6} {'pooled':>6} {'n':>4}   {'visual':>6} {'pooled':>6} {'n':>4}"]
    for c, name in enumerate(q.per_class.classes):
        lines.append(
            f"  {name:<24} {pct(seg['audio'][c])} {pct(100 * q.pooled_f['audio'][c])} {vids['audio'][c]:4d}"
            f"   {pct(seg['visual'][c])} {pct(100 * q.pooled_f['visual'][c])} {vids['visual'][c]:4d}"
        )
    return "\n".join(lines)


def write_class_chart(q: SplitQuality, path: str | Path, title: str = "") -> Path:
    """A grouped bar chart of the official per-class segment F (audio, visual) of one split."""
    import matplotlib

    matplotlib.use("Agg")  # no display; selecting it here keeps importing this module side-effect free
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg = q.per_class.scores["segment"]
    classes = q.per_class.classes
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.45 * len(classes)), 4.5))
    for offset, modality, color in ((-0.2, "audio", "#1f77b4"), (0.2, "visual", "#ff7f0e")):
        ax.bar(x + offset, np.nan_to_num(seg[modality], nan=0.0), width=0.4, label=f"{modality} (seg F {q.segment_f[modality]:.1f})",
               color=color)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("segment-level F (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"pseudo-label quality per class, {q.split} ({q.videos} videos)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
