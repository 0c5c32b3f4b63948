"""The planted-clip experiment's pieces that are not a library stage: feature standardisation and its fold
into a checkpoint, the truth arrays, and the scores of parsed timelines against the planted truth with
two baselines.

Why standardise: backbones with random weights (PyTorch's default initialisation) shrink activations layer
by layer, so e.g. random VGGish embeddings vary by ~2e-4 around a common ~5e-3 offset. HAN's first layers are
plain linear maps (no normalisation), and a few hundred Adam steps cannot grow them by the 1e3-1e4 needed
to see such differences. The demo therefore trains on per-dimension z-scores (train-split statistics) and
then folds the z-scoring into the model's input layers (`fold_standardization`): W·((x-μ)/σ) + b =
(W/σ)·x + (b - W·μ/σ). The folded checkpoint reads raw backbone features, so `avvp-parse` (which extracts
raw features) computes exactly what the model computed during training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avvp.data.classes import NUM_CLASSES, NUM_SEGMENTS
from avvp.metrics import MetricResult, evaluate_binary, format_results

SIGMA_FLOOR = 1e-8  # a constant dimension keeps σ = this (its z-score is 0 ± float noise; W/σ·0 stays 0)


@dataclass(frozen=True)
class Standardization:
    """Per-dimension mean and std of one feature over the training split's segments."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)

    @classmethod
    def fit(cls, features: np.ndarray) -> "Standardization":
        flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
        return cls(flat.mean(0), np.maximum(flat.std(0), SIGMA_FLOOR))

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.mean) / self.std).astype(np.float32)


def fold_standardization(checkpoint: Any, stats: Mapping[str, Standardization]) -> Any:
    """The `Checkpoint` (avvp.train.checkpoint) of a model trained on z-scored features, turned into one that
    reads raw features: for each role in `stats` (audio/visual) its input layer absorbs the z-scoring,
    W <- W/sigma, b <- b - (W/sigma).mu (`avvp.train.checkpoint.fold_input_standardization`)."""
    from avvp.train.checkpoint import fold_input_standardization

    return fold_input_standardization(checkpoint, {role: (st.mean, st.std) for role, st in stats.items()})


@dataclass(frozen=True)
class HeldOutScores:
    """Segment/event F of the parsed held-out clips and of two baselines on the same clips."""

    parsed: MetricResult
    chance: MetricResult  # mean over `draws` random predictions (see chance_predictions)
    weak_everywhere: MetricResult
    draws: int


def weak_everywhere(gt_audio: np.ndarray, gt_visual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The oracle that knows each clip's weak labels but not when or in which modality: every class of
    the clip on in every segment of both modalities."""
    weak = (gt_audio.any(1) | gt_visual.any(1)).astype(np.uint8)  # (N, K)
    on = np.repeat(weak[:, None, :], NUM_SEGMENTS, axis=1)
    return on, on.copy()


def chance_predictions(gt_audio: np.ndarray, gt_visual: np.ndarray, classes: Sequence[int],
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random segment predictions over the demo's classes: each (segment, class) cell of a modality is on
    with that modality's positive rate in the truth (over the demo classes' cells)."""
    out = []
    for gt in (gt_audio, gt_visual):
        rate = float(gt[:, :, list(classes)].mean())
        pred = np.zeros_like(gt)
        pred[:, :, list(classes)] = rng.random((gt.shape[0], gt.shape[1], len(classes))) < rate
        out.append(pred)
    return out[0], out[1]


def _mean_result(results: Sequence[MetricResult]) -> MetricResult:
    from avvp.metrics import LevelResult

    def level(name: str) -> LevelResult:
        rows = [getattr(r, name) for r in results]
        return LevelResult(*(float(np.mean([getattr(x, f) for x in rows])) for f in ("audio", "visual", "audio_visual", "type", "event")))

    return MetricResult(level("segment"), level("event"), float(np.mean([r.avg for r in results])), results[0].num_videos)


def score_held_out(gt_audio: np.ndarray, gt_visual: np.ndarray, on_audio: np.ndarray, on_visual: np.ndarray,
                   classes: Sequence[int], seed: int = 0, draws: int = 20) -> HeldOutScores:
    """All inputs (N, 10, 25) binary. The official metric (avvp.metrics) of the parsed predictions, of the
    chance baseline (mean of `draws` seeded draws) and of the weak-labels-everywhere oracle."""
    rng = np.random.default_rng(seed)
    chance = _mean_result([evaluate_binary(gt_audio, gt_visual, *chance_predictions(gt_audio, gt_visual, classes, rng))
                           for _ in range(draws)])
    return HeldOutScores(
        parsed=evaluate_binary(gt_audio, gt_visual, on_audio, on_visual),
        chance=chance,
        weak_everywhere=evaluate_binary(gt_audio, gt_visual, *weak_everywhere(gt_audio, gt_visual)),
        draws=draws,
    )


def format_comparison(scores: HeldOutScores) -> str:
    """Segment-level F of the parsed clips next to the baselines (one row each)."""
    return format_results({"parsed (HAN)": scores.parsed, f"chance ({scores.draws} draws)": scores.chance,
                           "weak labels everywhere": scores.weak_everywhere}, levels=("segment",))


def stack_truth(clips: Sequence, names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 10, 25) audio and visual truth of `clips` (DemoClip), in order."""
    pairs = [c.truth() for c in clips]
    if not pairs:
        return np.zeros((0, NUM_SEGMENTS, NUM_CLASSES), np.uint8), np.zeros((0, NUM_SEGMENTS, NUM_CLASSES), np.uint8)
    return np.stack([a for a, _ in pairs]), np.stack([v for _, v in pairs])


def timeline_matrix(on: np.ndarray) -> np.ndarray:
    """A parsed timeline's (S, 25) on-matrix cut or padded to the ten segments of a 10 s clip."""
    out = np.zeros((NUM_SEGMENTS, on.shape[1]), np.uint8)
    n = min(NUM_SEGMENTS, on.shape[0])
    out[:n] = on[:n]
    return out


def write_standardized_store(src: str | Path, dst: str | Path, features: Sequence[str], stats: Mapping[str, Standardization]) -> None:
    """Copy the rows of store `src` (video records, labels, truth, the named features) to `dst` with the
    features replaced by their z-scores; the feature attributes are kept (weights, profile, CLIP model: the
    trainer records them as the checkpoint's feature provenance) plus `standardized`, which the provenance
    carries until `fold_standardization` removes it."""
    from avvp.data.store import Store, StoreWriter

    with Store(src) as s:
        records = s.videos()
        ids = [r.id for r in records]
        arrays = {f"features/{n}": stats[n].apply(s.read(f"features/{n}")) for n in features}
        for path in ("labels/weak", "gt/audio", "gt/visual"):
            arrays[path] = s.read(path)
        attrs = {f"features/{n}": dict(s.attrs(f"features/{n}"), standardized="z-score per dim, train split") for n in features}
        classes = s.classes
    with StoreWriter(dst, classes=classes, flush_every=1 << 20) as w:
        for i, record in enumerate(records):
            w.add_video(record, {p: a[i] for p, a in arrays.items()}, attrs)
    assert len(ids) == len(records)
