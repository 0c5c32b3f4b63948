"""Training targets read from the store, by kind (`--labels`):

    weak     /labels/weak (N,K): the video-level labels (always loaded: every loss uses them)
    pseudo   + /pseudo/audio, /pseudo/visual (N,10,K) segment pseudo-labels (VALOR rule) and /pseudo/eiou
             (N,10,10) when present; written by `avvp-pseudolabel`
    refined  + /labels/refined_audio, /labels/refined_visual (N,K) modality-aware labels (MA stage 2)

Targets are needed for the training split only; val/test get weak labels (never used for predictions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from avvp.data.store import Store
from avvp.registry import Registry


class MissingTargetsError(RuntimeError):
    """The store lacks the arrays a label kind needs; the message says which command writes them."""


@dataclass
class Targets:
    weak: torch.Tensor  # (N,K) float32
    pseudo_audio: torch.Tensor | None = None  # (N,10,K) float32
    pseudo_visual: torch.Tensor | None = None
    eiou: torch.Tensor | None = None  # (N,10,10) float32
    refined_audio: torch.Tensor | None = None  # (N,K) float32
    refined_visual: torch.Tensor | None = None


def _read_all(store: Store, path: str, ids: Sequence[str], producer: str) -> torch.Tensor:
    if not store.has(path):
        raise MissingTargetsError(f"{store.path} has no /{path}; {producer}")
    mask = store.mask(path)[store.index(ids)]
    if not mask.all():
        missing = [ids[i] for i in np.flatnonzero(~mask)]
        raise MissingTargetsError(
            f"/{path} lacks {len(missing)} of {len(ids)} training videos (e.g. {missing[:5]}); {producer}"
        )
    return torch.from_numpy(store.read(path, ids).astype(np.float32))


PSEUDO_HINT = "run `avvp-pseudolabel --data <store>` first (VALOR CLIP/CLAP pseudo-labels)"
REFINED_HINT = "run MA stage 2 first (`avvp-train --model ma --set model.options.stage=2 ...`)"

LabelLoader = Callable[[Store, Sequence[str], Targets], Targets]
LABEL_KINDS: Registry[LabelLoader] = Registry("label kind")


@LABEL_KINDS.register("weak")
def _weak(store: Store, ids: Sequence[str], t: Targets) -> Targets:
    return t


@LABEL_KINDS.register("pseudo")
def _pseudo(store: Store, ids: Sequence[str], t: Targets) -> Targets:
    t.pseudo_audio = _read_all(store, "pseudo/audio", ids, PSEUDO_HINT)
    t.pseudo_visual = _read_all(store, "pseudo/visual", ids, PSEUDO_HINT)
    if store.has("pseudo/eiou") and store.mask("pseudo/eiou")[store.index(ids)].all():
        t.eiou = torch.from_numpy(store.read("pseudo/eiou", ids).astype(np.float32))
    return t


@LABEL_KINDS.register("refined")
def _refined(store: Store, ids: Sequence[str], t: Targets) -> Targets:
    t.refined_audio = _read_all(store, "labels/refined_audio", ids, REFINED_HINT)
    t.refined_visual = _read_all(store, "labels/refined_visual", ids, REFINED_HINT)
    return t


def load_targets(store: Store, ids: Sequence[str], kind: str) -> Targets:
    """Weak labels plus the targets of `kind` for `ids` (in that order)."""
    weak = _read_all(store, "labels/weak", ids, "the store has no weak labels")
    return LABEL_KINDS.get(kind)(store, ids, Targets(weak=weak))
