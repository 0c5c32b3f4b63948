"""Planted-event synthetic datasets shaped like LLP, written through the store API.

Every video gets 1-3 classes. Each class is heard, seen, or both, with its own onset/offset per modality
(so audio and visual events are asynchronous), and some segments hold only background. Features are
built from class-specific directions: a segment's feature of a modality is the sum of the directions of
the classes active in that modality at that segment, plus a per-video nuisance vector and Gaussian noise.
A model can only find *which modality* carries a weakly-labelled class by learning those directions,
which is exactly the AVVP problem; the segment ground truth is stored in /gt/{audio,visual}, so models
are scored with the official metric on known truth.

Zero-shot teacher logits (/zeroshot/clip, /zeroshot/clap) are simulated as VALOR's per-class threshold
± a margin (above for active segments, below for inactive ones) plus Gaussian noise, so VALOR's rule
yields pseudo-labels with a controlled error rate (`teacher_noise`). /text/clip and /text/clap hold the
class directions of the clip/clap features (the "label text embeddings" LEAP and LINK consume).

The feature shapes and layouts are not known here (data is upstream of the backbones): the caller passes
them as a {feature name: FeatureSpec} mapping, normally built from the backbones' declarations:

    from avvp.extract.backbones import feature_specs
    cfg = SyntheticConfig(features=("vggish", "clip"))
    generate_synthetic(path, cfg, feature_specs(cfg.features))

These data prove that code learns and compare methods relative to each other. They say nothing about
accuracy on real LLP videos.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from avvp.data.classes import LLP_CLASSES, NUM_SEGMENTS
from avvp.data.layouts import SEGMENTS, FeatureSpec
from avvp.data.store import StoreWriter, VideoRecord
from avvp.data.valor_thresholds import VALOR_CLAP_THRESHOLDS, VALOR_CLIP_THRESHOLDS


@dataclass(frozen=True)
class SyntheticConfig:
    num_train: int = 400
    num_val: int = 100
    num_test: int = 100
    features: tuple[str, ...] = ("vggish", "resnet152", "r2plus1d", "clip", "clap")
    # optional override of feature widths, e.g. {"resnet152": 256} for fast tests
    dims: tuple[tuple[str, int], ...] = ()
    num_classes_used: int = 25  # events are drawn from the first n LLP classes
    signal: float = 1.0  # amplitude of a class direction
    noise: float = 0.6  # std of the noise projected on any unit direction (per coordinate: noise/sqrt(D))
    nuisance: float = 0.5  # amplitude of the per-video random vector shared by all segments
    p_audio_only: float = 0.35
    p_visual_only: float = 0.25  # the rest are audio-visual classes
    teacher_margin: float = 3.0
    teacher_noise: float = 2.0
    seed: int = 0
    classes: tuple[str, ...] = field(default=LLP_CLASSES)

    def dim(self, name: str, spec: FeatureSpec) -> int:
        """The width of feature `name`: the `dims` override, else the spec's."""
        return dict(self.dims).get(name, spec.shape[1])


@dataclass(frozen=True)
class SyntheticVideo:
    id: str
    split: str
    gt_audio: np.ndarray  # (10, K) uint8
    gt_visual: np.ndarray  # (10, K) uint8

    @property
    def weak(self) -> np.ndarray:
        return ((self.gt_audio.max(0) + self.gt_visual.max(0)) > 0).astype(np.uint8)


def _events(rng: np.random.Generator, cfg: SyntheticConfig, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the planted segment-level events of one video."""
    gt_a = np.zeros((NUM_SEGMENTS, k), np.uint8)
    gt_v = np.zeros((NUM_SEGMENTS, k), np.uint8)
    n_classes = rng.choice([1, 2, 3], p=[0.35, 0.55, 0.10])
    classes = rng.choice(cfg.num_classes_used, size=n_classes, replace=False)
    for c in classes:
        u = rng.random()
        modalities = ["audio"] if u < cfg.p_audio_only else ["visual"] if u < cfg.p_audio_only + cfg.p_visual_only else ["audio", "visual"]
        for m in modalities:
            length = int(rng.integers(2, NUM_SEGMENTS + 1))
            onset = int(rng.integers(0, NUM_SEGMENTS - length + 1))
            (gt_a if m == "audio" else gt_v)[onset : onset + length, c] = 1
    return gt_a, gt_v


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _segment_features(rng, cfg, directions, gt, length, dim) -> np.ndarray:
    """(length, dim) features where position i belongs to segment floor(i * 10 / length)."""
    seg_of = (np.arange(length) * NUM_SEGMENTS) // length
    active = gt[seg_of].astype(np.float32)  # (length, K)
    signal = cfg.signal * active @ directions  # (length, dim)
    nuisance = cfg.nuisance * _unit(rng, (dim,))
    # per-coordinate std noise/sqrt(dim): the projection on any unit direction has std `noise`
    noise = cfg.noise * rng.standard_normal((length, dim)).astype(np.float32) / np.sqrt(dim)
    return (signal + nuisance + noise).astype(np.float32)


def generate_synthetic(path: str | Path, cfg: SyntheticConfig, specs: Mapping[str, FeatureSpec]) -> list[SyntheticVideo]:
    """Write a synthetic dataset to the store at `path` and return its planted truth. `specs` gives the
    modality, per-video shape and layout of every feature in `cfg.features`."""
    missing = [name for name in cfg.features if name not in specs]
    if missing:
        raise ValueError(f"no FeatureSpec for the synthetic features {missing}; given: {sorted(specs)}")
    rng = np.random.default_rng(cfg.seed)
    k = len(cfg.classes)
    directions = {name: _unit(rng, (k, cfg.dim(name, specs[name]))) for name in cfg.features}
    text_dirs = {"clip": directions.get("clip", _unit(rng, (k, 768))), "clap": directions.get("clap", _unit(rng, (k, 512)))}
    splits = ["train"] * cfg.num_train + ["val"] * cfg.num_val + ["test"] * cfg.num_test
    videos: list[SyntheticVideo] = []
    with StoreWriter(path, classes=cfg.classes, flush_every=256) as writer:
        for name in ("clip", "clap"):
            writer.set_dataset_array(
                f"text/{name}", text_dirs[name], {"source": "synthetic class directions", "random_weights": False}
            )
        for i, split in enumerate(splits):
            gt_a, gt_v = _events(rng, cfg, k)
            video = SyntheticVideo(f"syn_{i:06d}", split, gt_a, gt_v)
            videos.append(video)
            arrays: dict[str, np.ndarray] = {
                "labels/weak": video.weak,
                "gt/audio": gt_a,
                "gt/visual": gt_v,
            }
            attrs: dict[str, dict] = {}
            for name in cfg.features:
                spec = specs[name]
                gt = gt_a if spec.modality == "audio" else gt_v
                arrays[f"features/{name}"] = _segment_features(rng, cfg, directions[name], gt, spec.shape[0],
                                                               cfg.dim(name, spec))
                attrs[f"features/{name}"] = {
                    "backbone": name, "weights": "synthetic", "random_weights": False,
                    "layout": spec.layout, "axes": "synthetic planted events", "modality": spec.modality,
                }
            for name, gt, thresholds in (("clip", gt_v, VALOR_CLIP_THRESHOLDS), ("clap", gt_a, VALOR_CLAP_THRESHOLDS)):
                thr = np.asarray(thresholds, np.float32)
                logits = thr + cfg.teacher_margin * (2.0 * gt - 1.0) + cfg.teacher_noise * rng.standard_normal(gt.shape)
                arrays[f"zeroshot/{name}"] = logits.astype(np.float32)
                attrs[f"zeroshot/{name}"] = {"backbone": name, "weights": "synthetic", "random_weights": False,
                                             "layout": SEGMENTS, "axes": "segment x class (scaled logits)"}
            writer.add_video(VideoRecord(video.id, source="synthetic", split=split, duration=10.0, has_audio=True), arrays, attrs)
    return videos
