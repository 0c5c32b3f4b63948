"""VALOR's segment-level pseudo-labels: the rule, the per-class thresholds, and their computation from a store.

The rule (VALOR, Franklin905/VALOR, `utils/clip_preprocess.py` / `utils/clap_preprocess.py`), identical for
both teachers: for video v, segment t and class c,

    label[v, t, c] = 1  iff  weak[v, c] == 1  and  logit[v, t, c] > threshold[c]     (strict >)

where `logit` is the teacher's scaled zero-shot logit (logit_scale x cosine, NO softmax/sigmoid): CLIP
ViT-L/14 for the visual labels (/zeroshot/clip), CLAP 630k-fusion for the audio labels (/zeroshot/clap).
No smoothing, no top-k, no modality exclusivity. The thresholds are VALOR's, kept in one table in
`avvp.data.valor_thresholds` (the synthetic data generator centres its simulated teachers on them too).

Videos the rule cannot be applied to get all-zero labels, and are counted (see `TeacherLabels`):
  - the store has no zero-shot row for the video (mask false: extraction failed or was not run for it),
    or the row holds a non-finite value;
  - audio only: the video has no audio stream (`/videos/has_audio` false). Its audio GT is empty by
    definition, so "no audio event" is the correct label, whatever CLAP would say about silence.
Zeros (rather than leaving the row out) keep /pseudo/* aligned with every video, which is what the trainer
reads; the counts are stored as attributes of the array and printed by `avvp-pseudolabel`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avvp.data.classes import LLP_CLASSES, NUM_SEGMENTS
from avvp.data.store import Store
from avvp.data.valor_thresholds import VALOR_CLAP_THRESHOLDS, VALOR_CLIP_THRESHOLDS
from avvp.registry import Registry

RULE_NAME = "valor"
IMPORTED_SOURCE = "valor-release"  # attrs["source"] of pseudo-labels written by the importer


class PseudoLabelError(ValueError):
    """Input the pseudo-label stage cannot work with (missing arrays, wrong threshold count, ...)."""


@dataclass(frozen=True)
class Teacher:
    """One zero-shot teacher: which logits it reads and which pseudo-label array it writes."""

    name: str  # backbone name, as in `avvp-extract --backbone <name>`
    modality: str  # "audio" | "visual"
    zeroshot_path: str
    pseudo_path: str
    default_thresholds: tuple[float, ...]  # in LLP_CLASSES order
    needs_audio_stream: bool  # videos without audio get zero labels

    @property
    def extract_command(self) -> str:
        return f"avvp-extract --backbone {self.name}"


TEACHERS: Registry[Teacher] = Registry("pseudo-label teacher")
TEACHERS.register("visual")(Teacher("clip", "visual", "zeroshot/clip", "pseudo/visual", VALOR_CLIP_THRESHOLDS, False))
TEACHERS.register("audio")(Teacher("clap", "audio", "zeroshot/clap", "pseudo/audio", VALOR_CLAP_THRESHOLDS, True))
MODALITIES = ("audio", "visual")


# ------------------------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class ThresholdSet:
    """Per-class thresholds of one teacher, with the class names they belong to and where they came from."""

    values: tuple[float, ...]
    classes: tuple[str, ...] = LLP_CLASSES
    origin: str = "valor"
    calibrated: bool = False

    def __post_init__(self) -> None:
        if len(self.values) != len(self.classes):
            raise PseudoLabelError(f"{len(self.values)} thresholds for {len(self.classes)} classes ({self.origin})")
        bad = [i for i, v in enumerate(self.values) if not math.isfinite(v)]
        if bad:
            raise PseudoLabelError(f"non-finite thresholds for classes {[self.classes[i] for i in bad]} ({self.origin})")

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def for_classes(self, classes: Sequence[str]) -> "ThresholdSet":
        """The same thresholds in the order of `classes` (a store may hold a subset or another order)."""
        classes = tuple(classes)
        if classes == self.classes:
            return self
        index = {c: i for i, c in enumerate(self.classes)}
        missing = [c for c in classes if c not in index]
        if missing:
            raise PseudoLabelError(f"no threshold for classes {missing} ({self.origin})")
        return ThresholdSet(tuple(self.values[index[c]] for c in classes), classes, self.origin, self.calibrated)


def default_thresholds(teacher: Teacher) -> ThresholdSet:
    return ThresholdSet(tuple(float(v) for v in teacher.default_thresholds), LLP_CLASSES, "valor", False)


def _numbers(tokens: Sequence[str], where: str) -> tuple[float, ...]:
    values = []
    for tok in tokens:
        try:
            values.append(float(tok))
        except ValueError:
            raise PseudoLabelError(f"{where}: {tok!r} is not a number") from None
    return tuple(values)


def _from_json(obj: Any, teacher: Teacher, classes: tuple[str, ...], where: str, calibrated: bool) -> ThresholdSet:
    if isinstance(obj, list):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            raise PseudoLabelError(f"{where}: the list must hold numbers only")
        return ThresholdSet(tuple(float(v) for v in obj), classes, where, calibrated)
    if not isinstance(obj, dict):
        raise PseudoLabelError(f"{where}: expected a list of {len(classes)} numbers or an object")
    calibrated = bool(obj.get("calibrated", calibrated))
    file_classes = tuple(obj["classes"]) if isinstance(obj.get("classes"), list) else classes
    # the file written by `--write-thresholds` holds both teachers: {"clip": [...], "clap": [...], ...}
    for key in (teacher.name, teacher.modality, "thresholds"):
        if key in obj:
            return _from_json(obj[key], teacher, file_classes, where, calibrated).for_classes(classes)
    if set(obj) >= set(classes):  # {"Speech": 20, "Car": 15, ...}
        return ThresholdSet(tuple(float(obj[c]) for c in classes), classes, where, calibrated)
    raise PseudoLabelError(
        f"{where}: object has none of the keys {teacher.name!r}, {teacher.modality!r}, 'thresholds', "
        f"nor one entry per class"
    )


def parse_thresholds(spec: str, teacher: Teacher, classes: Sequence[str] = LLP_CLASSES) -> ThresholdSet:
    """Thresholds from a command-line value: a file (.json: a list, {"clip": [...]}, {"thresholds": [...]},
    or {class: value}; any other suffix: numbers separated by commas/whitespace, `#` comments) or a comma
    list "20,15,18,...". The count must equal the number of classes."""
    classes = tuple(classes)
    path = Path(spec)
    looks_like_file = path.suffix.lower() in (".json", ".txt", ".csv") or "/" in spec
    if path.is_file():
        text = path.read_text()
        if path.suffix.lower() == ".json":
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise PseudoLabelError(f"{spec}: invalid JSON ({err})") from None
            return _from_json(obj, teacher, classes, str(path), False)
        tokens = [t for line in text.splitlines() for t in re.split(r"[,\s]+", line.split("#", 1)[0]) if t]
        return ThresholdSet(_numbers(tokens, str(path)), classes, str(path), False)
    if looks_like_file:
        raise PseudoLabelError(f"threshold file {spec} does not exist")
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    return ThresholdSet(_numbers(tokens, f"--{teacher.name}-thresholds"), classes, "command line", False)


# --------------------------------------------------------------------------------------------------- rule
def valor_rule(logits: np.ndarray, weak: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """VALOR's rule, vectorised: logits (..., T, K), weak (..., K) in {0,1}, thresholds (K,) → uint8 (..., T, K).

    The comparison is done in float64, so a float32 logit is compared with the threshold exactly."""
    logits = np.asarray(logits)
    weak = np.asarray(weak)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    k = logits.shape[-1]
    if thresholds.shape != (k,):
        raise PseudoLabelError(f"thresholds have shape {thresholds.shape}, logits have {k} classes")
    if weak.shape != logits.shape[:-2] + (k,):
        raise PseudoLabelError(f"weak labels {weak.shape} do not match logits {logits.shape}")
    above = logits.astype(np.float64) > thresholds
    return (above & (weak.astype(bool)[..., None, :])).astype(np.uint8)


# -------------------------------------------------------------------------------------------- from a store
@dataclass(frozen=True)
class TeacherLabels:
    """Pseudo-labels of one teacher for every video of a store, plus what could not be labelled."""

    teacher: Teacher
    ids: np.ndarray
    labels: np.ndarray  # (N, 10, K) uint8
    thresholds: ThresholdSet
    without_logits: int  # no zero-shot row, or a non-finite one → zeros
    without_audio: int  # audio teacher: no audio stream → zeros
    without_weak: int  # no weak-label row → zeros (the rule needs the weak label)

    def attrs(self) -> dict[str, Any]:
        return {
            "rule": RULE_NAME,
            "source": self.teacher.zeroshot_path,
            "thresholds": self.thresholds.array(),
            "threshold_origin": self.thresholds.origin,
            "calibrated": bool(self.thresholds.calibrated),
            "videos_without_logits": int(self.without_logits),
            "videos_without_audio": int(self.without_audio),
            "videos_without_weak_label": int(self.without_weak),
        }


def require_logits(store: Store, teacher: Teacher) -> None:
    if not store.has(teacher.zeroshot_path):
        raise PseudoLabelError(
            f"{store.path} has no /{teacher.zeroshot_path} ({teacher.modality} zero-shot logits); compute them "
            f"from the videos with `{teacher.extract_command}`, or import VALOR's released pseudo-labels "
            f"(`avvp-import --valor`), which training uses as they are"
        )


def read_teacher_inputs(store: Store, teacher: Teacher) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """(logits (N,10,K) float, weak (N,K) uint8, usable (N,) bool, counts of unusable videos) for all videos."""
    require_logits(store, teacher)
    store.require(["labels/weak"], "by the VALOR rule (the video-level labels)")
    logits = store.read(teacher.zeroshot_path)
    k = len(store.classes)
    if logits.shape[1:] != (NUM_SEGMENTS, k):
        raise PseudoLabelError(
            f"/{teacher.zeroshot_path} has rows of shape {logits.shape[1:]}, expected ({NUM_SEGMENTS}, {k})"
        )
    weak = store.read("labels/weak")
    has_logits = store.mask(teacher.zeroshot_path) & np.isfinite(logits).all(axis=(1, 2))
    has_weak = store.mask("labels/weak")
    has_audio = store.video_field("has_audio").astype(bool) if teacher.needs_audio_stream else np.ones(len(store), bool)
    counts = {
        "without_logits": int((~has_logits).sum()),
        "without_audio": int((has_logits & ~has_audio).sum()),
        "without_weak": int((has_logits & has_audio & ~has_weak).sum()),
    }
    return logits, weak, has_logits & has_audio & has_weak, counts


def teacher_labels(store: Store, teacher: Teacher, thresholds: ThresholdSet) -> TeacherLabels:
    """Apply the VALOR rule to every video of the store for one teacher."""
    thresholds = thresholds.for_classes(store.classes)
    logits, weak, usable, counts = read_teacher_inputs(store, teacher)
    labels = valor_rule(np.where(np.isfinite(logits), logits, -np.inf), weak, thresholds.array())
    labels[~usable] = 0
    return TeacherLabels(teacher, store.ids, labels, thresholds, **counts)


# ------------------------------------------------------------------------------------- sources and writing
def holds_imported_labels(store: Store, teacher: Teacher) -> bool:
    """True when /pseudo/<modality> holds the released VALOR labels written by `avvp-import`."""
    return store.has(teacher.pseudo_path) and store.attrs(teacher.pseudo_path).get("source") == IMPORTED_SOURCE


def label_source(store: Store, teacher: Teacher) -> str:
    """Where this run takes the teacher's labels from: "logits" (compute with the rule) or "stored".

    Imported release labels are never overwritten (they are the reference); labels already in the store
    are used as they are when the store has no logits to recompute them from."""
    if holds_imported_labels(store, teacher):
        return "stored"
    if store.has(teacher.zeroshot_path):
        return "logits"
    if store.has(teacher.pseudo_path):
        return "stored"
    raise PseudoLabelError(
        f"{store.path} has neither /{teacher.zeroshot_path} ({teacher.modality} zero-shot logits) nor "
        f"/{teacher.pseudo_path}; run `{teacher.extract_command}` (or `avvp-import --valor` for the released labels)"
    )


def stored_labels(store: Store, teacher: Teacher) -> np.ndarray:
    labels = store.read(teacher.pseudo_path)
    if labels.shape[1:] != (NUM_SEGMENTS, len(store.classes)):
        raise PseudoLabelError(f"/{teacher.pseudo_path} has rows of shape {labels.shape[1:]}")
    labels = labels.astype(np.uint8)
    labels[~store.mask(teacher.pseudo_path)] = 0
    return labels


def write_pseudo_labels(
    store_path: str | Path,
    ids: Sequence[str],
    computed: Sequence[TeacherLabels],
    eiou: np.ndarray,
    eiou_attrs: dict[str, Any],
    classes: Sequence[str] = LLP_CLASSES,
) -> None:
    """Upsert the computed pseudo-labels and the EIoU matrices of all `ids` (re-running replaces rows)."""
    from avvp.data.store import StoreWriter

    with Store(store_path) as store:
        teacher_attrs = {t.teacher.name: store.attrs(t.teacher.zeroshot_path) for t in computed}
    with StoreWriter(store_path, classes=classes) as writer:
        for labels in computed:
            attrs = labels.attrs()
            zs = teacher_attrs[labels.teacher.name]
            # provenance under keys of our own: "weights"/"backbone" would make the store refuse a recompute
            # with another teacher checkpoint, but a recompute replaces every row, it never mixes them
            attrs["teacher_backbone"] = str(zs.get("backbone", labels.teacher.name))
            attrs["teacher_weights"] = str(zs.get("weights", "unknown"))
            writer.set_rows(labels.teacher.pseudo_path, list(ids), labels.labels.astype(np.uint8), attrs)
        writer.set_rows("pseudo/eiou", list(ids), eiou.astype(np.float32), eiou_attrs)
