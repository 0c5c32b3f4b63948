"""Training targets read from the store, by kind (`--labels`):

    weak     /labels/weak (N,K): the video-level labels (always loaded: every loss uses them)
    pseudo   + /pseudo/audio, /pseudo/visual (N,10,K) segment pseudo-labels (VALOR rule) and /pseudo/eiou
             (N,10,10) when present; written by `avvp-pseudolabel`
    refined  + /labels/refined_audio, /labels/refined_visual (N,K) modality-aware labels (MA stage 2)

Targets are needed for the training split only; val/test get weak labels (never used for predictions).

Model inputs (`BATCH_INPUTS`), loaded for EVERY split, only when the model asks for them
(`ParsingModel.required_inputs(options)`, e.g. LINK's PLSIM):

    teacher  batch.teacher_audio / teacher_visual (N,10,K): teacher zero-shot logit > class threshold
             WITHOUT the weak-label mask, from /zeroshot/clap (audio) and /zeroshot/clip (visual). The
             thresholds are the ones /pseudo/audio|visual record in their attributes (the run of
             `avvp-pseudolabel` that made the training targets), else VALOR's defaults
             (avvp.pseudolabels.valor). Videos without a (finite) logit row, and audio of videos without an
             audio stream, get zeros, as in the VALOR rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from avvp.data.classes import NUM_SEGMENTS
from avvp.data.store import Store
from avvp.pseudolabels.valor import RULE_NAME, TEACHERS, ThresholdSet, default_thresholds, valor_rule
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
    teacher_audio: torch.Tensor | None = None  # (N,10,K) float32, unmasked teacher labels ("teacher" input)
    teacher_visual: torch.Tensor | None = None
    stored_pseudo_audio: torch.Tensor | None = None  # (N,10,K) float32 ("stored_pseudo" input)
    stored_pseudo_visual: torch.Tensor | None = None


def _read_all(store: Store, path: str, ids: Sequence[str], producer: str) -> torch.Tensor:
    if not store.has(path):
        raise MissingTargetsError(f"{store.path} has no /{path}; {producer}")
    mask = store.mask(path)[store.index(ids)]
    if not mask.all():
        missing = [ids[i] for i in np.flatnonzero(~mask)]
        raise MissingTargetsError(
            f"/{path} lacks {len(missing)} of {len(ids)} training videos (e.g. {missing[:5]}); {producer}"
        )
    return torch.from_numpy(store.read(path, ids, dtype=np.float32))


# every way the project offers to get the missing array (a command, an import, a flag)
PSEUDO_HINT = ("compute them with `avvp-pseudolabel --data <store>` (VALOR's rule on the CLIP/CLAP zero-shot logits "
               "of `avvp-extract --backbone clip --backbone clap`), or import VALOR's released segment pseudo-labels "
               "with `avvp-import --valor <folder> --out <store>`, or train on the weak labels (`--labels weak`)")
REFINED_HINT = ("write them with MA's stage 2 first (`avvp-train --model ma --set model.options.stage=2 ...`), or "
                "train with `--labels pseudo` or `--labels weak`")

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
        t.eiou = torch.from_numpy(store.read("pseudo/eiou", ids, dtype=np.float32))
    return t


@LABEL_KINDS.register("refined")
def _refined(store: Store, ids: Sequence[str], t: Targets) -> Targets:
    t.refined_audio = _read_all(store, "labels/refined_audio", ids, REFINED_HINT)
    t.refined_visual = _read_all(store, "labels/refined_visual", ids, REFINED_HINT)
    return t


# ------------------------------------------------------------------------------------- model inputs
InputLoader = Callable[[Store, Sequence[str], Targets], Targets]
BATCH_INPUTS: Registry[InputLoader] = Registry("batch input")


def teacher_thresholds(store: Store, modality: str) -> ThresholdSet:
    """The thresholds of the `modality` teacher (a `ThresholdSet` in the store's class order): those recorded
    by `avvp-pseudolabel` in /pseudo/<modality>'s attributes when they were computed from the logits with
    the VALOR rule, else VALOR's defaults."""
    teacher = TEACHERS.get(modality)
    classes = tuple(store.classes)
    if store.has(teacher.pseudo_path):
        attrs = store.attrs(teacher.pseudo_path)
        values = attrs.get("thresholds")
        if attrs.get("rule") == RULE_NAME and values is not None and len(np.atleast_1d(values)) == len(classes):
            return ThresholdSet(tuple(float(v) for v in np.atleast_1d(values)), classes,
                                f"/{teacher.pseudo_path} attrs", bool(attrs.get("calibrated", False)))
    return default_thresholds(teacher).for_classes(classes)


def unmasked_teacher_labels(store: Store, ids: Sequence[str], modality: str) -> np.ndarray:
    """(n,10,K) uint8: teacher logit > threshold[c] (strict, as VALOR's rule) with NO weak-label mask."""
    teacher = TEACHERS.get(modality)
    if not store.has(teacher.zeroshot_path):
        raise MissingTargetsError(
            f"{store.path} has no /{teacher.zeroshot_path} ({modality} zero-shot logits), needed for the unmasked "
            f"teacher labels batch.teacher_{modality} (LINK's PLSIM). Ways out: compute them from the videos with "
            f"`{teacher.extract_command}`; on a store imported from the released features (no videos), train "
            "with `--preset link-release` (PLSIM from the stored pseudo-labels and GloVe label rows); or train "
            "without PLSIM (`--set model.options.plsim=false`)"
        )
    rows = store.index(ids)
    logits = store.read(teacher.zeroshot_path, ids, dtype=np.float64)
    k = len(store.classes)
    if logits.shape[1:] != (NUM_SEGMENTS, k):
        raise MissingTargetsError(f"/{teacher.zeroshot_path} has rows of shape {logits.shape[1:]}, expected ({NUM_SEGMENTS}, {k})")
    usable = store.mask(teacher.zeroshot_path)[rows] & np.isfinite(logits).all(axis=(1, 2))
    if teacher.needs_audio_stream:
        usable &= store.video_field("has_audio").astype(bool)[rows]
    thresholds = teacher_thresholds(store, modality).array()
    everything = np.ones((len(rows), k), np.uint8)  # VALOR's rule with every class allowed: no weak mask
    labels = valor_rule(np.where(np.isfinite(logits), logits, -np.inf), everything, thresholds)
    labels[~usable] = 0
    return labels


@BATCH_INPUTS.register("teacher")
def _teacher(store: Store, ids: Sequence[str], t: Targets) -> Targets:
    t.teacher_audio = torch.from_numpy(unmasked_teacher_labels(store, ids, "audio").astype(np.float32))
    t.teacher_visual = torch.from_numpy(unmasked_teacher_labels(store, ids, "visual").astype(np.float32))
    return t


@BATCH_INPUTS.register("stored_pseudo")
def _stored_pseudo(store: Store, ids: Sequence[str], t: Targets) -> Targets:
    hint = PSEUDO_HINT + " (or import VALOR's released segment pseudo-labels with `avvp-import --valor`)"
    t.stored_pseudo_audio = _read_all(store, "pseudo/audio", ids, hint)
    t.stored_pseudo_visual = _read_all(store, "pseudo/visual", ids, hint)
    return t


def load_targets(store: Store, ids: Sequence[str], kind: str, inputs: Sequence[str] = ()) -> Targets:
    """Weak labels plus the targets of `kind` and the model inputs `inputs` (`BATCH_INPUTS` names) for `ids`
    (in that order)."""
    weak = _read_all(store, "labels/weak", ids, "the weak labels come from the LLP CSV: `avvp-extract --csv <llp csv>` "
                     "or `avvp-import` (released features) writes them")
    targets = LABEL_KINDS.get(kind)(store, ids, Targets(weak=weak))
    for name in inputs:
        targets = BATCH_INPUTS.get(name)(store, ids, targets)
    return targets
