"""Training data: features by name from the store, split by /videos/split, served as `base.Batch`es.

Roles: `DataConfig.audio` → batch.audio, `.visual` → batch.visual, `.motion` → batch.motion (None: no 3D
stream). `parse_visual_arg("clip,r2plus1d")` gives (visual="clip", motion="r2plus1d").

By default every feature of a split is read ONCE into memory as a float32 torch tensor (filled in place
by `Store.read`: the peak is the features' bytes plus one bounded block); a batch is then a tensor index
(no workers, no per-item Python). `mmap=True` keeps the features in the HDF5 file and reads each batch's
rows from it. `mmap=None` (the default) chooses: memory unless the features would not fit in the memory
available (`choose_reader`); the choice is logged in one line and written back into the config, so the
run's config.yaml records it. benchmarks/train.py measures that the in-memory loader costs a negligible
share of a training step; benchmarks/scale.py measures both readers at full LLP size.

Model inputs beyond the label kind (`TrainingData(..., inputs=("teacher",))`, names of
`avvp.train.labels.BATCH_INPUTS`) are loaded for every split; the trainer asks the model which it needs
(`avvp.models.required_inputs`), so a store without them still serves every other model.

Videos lacking any array the run needs (a feature, the weak label) are left out of their split with a
warning; the ids are listed in `SplitData.skipped` (the trainer writes them to skipped_videos.json).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch

from avvp.data.groundtruth import ground_truth_for, has_stored_ground_truth
from avvp.data.store import Store, read_rows
from avvp.models.base import Batch, InputDims
from avvp.train.checkpoint import provenance_from_store
from avvp.train.config import DataConfig
from avvp.train.labels import Targets, load_targets

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
# in-memory features cost their bytes × this at peak (one read block, torch/numpy overhead) ...
FEATURE_MEMORY_FACTOR = 1.15
# ... and the rest of a training process (torch, the model, optimiser, batches) needs about this much more
PROCESS_MARGIN_BYTES = int(1.5e9)


def available_memory_bytes() -> int | None:
    """Memory this process can still take: MemAvailable, capped by a cgroup (v2 or v1) limit; None if unknown."""
    values = []
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                values.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = open(limit_file).read().strip()
            if limit != "max" and int(limit) < 1 << 60:
                values.append(int(limit) - int(open(usage_file).read().strip()))
        except (OSError, ValueError):
            continue
    if not values and hasattr(os, "sysconf"):
        try:
            values.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(0, min(values)) if values else None


def choose_reader(feature_bytes: int, available: int | None) -> tuple[bool, str]:
    """(mmap, one-line reason) for data.mmap=auto: on disk when the features would not fit in memory."""
    need = FEATURE_MEMORY_FACTOR * feature_bytes + PROCESS_MARGIN_BYTES
    gb = 1e9
    if available is None:
        return False, f"data.mmap=auto: features {feature_bytes / gb:.2f} GB, available memory unknown: in memory"
    if need <= available:
        return False, (f"data.mmap=auto: features {feature_bytes / gb:.2f} GB fit in the {available / gb:.2f} GB "
                       "available: in memory")
    return True, (f"data.mmap=auto: features {feature_bytes / gb:.2f} GB (needing ~{need / gb:.2f} GB with the "
                  f"process) do not fit in the {available / gb:.2f} GB available: reading batches from the store "
                  "on disk instead (data.mmap=false forces memory)")


def parse_visual_arg(value: str) -> tuple[str, str | None]:
    """`--visual clip,r2plus1d` → ("clip", "r2plus1d"); `--visual clip` → ("clip", None)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"--visual expects 'visual' or 'visual,motion', got {value!r}")
    return parts[0], (parts[1] if len(parts) == 2 and parts[1].lower() not in ("none", "null") else None)


class H5Rows:
    """Rows of an HDF5 feature array read on demand (the memory-map mode)."""

    def __init__(self, path: str, dataset: str, rows: np.ndarray):
        self._file = h5py.File(path, "r")
        self._ds = self._file[dataset]
        self.rows = rows  # store row of each split row
        self.shape = (len(rows),) + tuple(self._ds.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(read_rows(self._ds, self.rows[np.asarray(idx)], np.float32))


def _take(source: torch.Tensor | H5Rows | None, idx: torch.Tensor) -> torch.Tensor | None:
    if source is None:
        return None
    return source[idx]


@dataclass
class SplitData:
    name: str
    ids: np.ndarray  # (N,) video ids
    audio: torch.Tensor | H5Rows
    visual: torch.Tensor | H5Rows
    motion: torch.Tensor | H5Rows | None
    targets: Targets
    gt_audio: np.ndarray | None = None  # (N,10,K) segment ground truth (synthetic stores)
    gt_visual: np.ndarray | None = None
    text: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, idx: torch.Tensor) -> Batch:
        t = self.targets
        return Batch(
            audio=_take(self.audio, idx), visual=_take(self.visual, idx), motion=_take(self.motion, idx),
            weak=t.weak[idx], index=idx,
            pseudo_audio=_take(t.pseudo_audio, idx), pseudo_visual=_take(t.pseudo_visual, idx),
            refined_audio=_take(t.refined_audio, idx), refined_visual=_take(t.refined_visual, idx),
            eiou=_take(t.eiou, idx), teacher_audio=_take(t.teacher_audio, idx),
            teacher_visual=_take(t.teacher_visual, idx), stored_pseudo_audio=_take(t.stored_pseudo_audio, idx),
            stored_pseudo_visual=_take(t.stored_pseudo_visual, idx), text=self.text,
        )

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[Batch]:
        """Batches in order, or in a permutation drawn from `generator` (the trainer seeds it per epoch)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)


class TrainingData:
    """The train/val/test splits of one store for one feature-role choice."""

    def __init__(self, cfg: DataConfig, *, splits: Sequence[str] = SPLITS, inputs: Sequence[str] = ()):
        self.cfg = cfg
        self.inputs = tuple(inputs)  # BATCH_INPUTS names loaded for every split (e.g. "teacher")
        if not cfg.store:
            raise ValueError("data.store is empty: pass --data <store.h5>")
        self.splits: dict[str, SplitData] = {}
        with Store(cfg.store) as store:
            self.classes = store.classes
            self.features = {"audio": cfg.audio, "visual": cfg.visual, "motion": cfg.motion}
            for role, name in self.features.items():
                if name is not None and not store.has(f"features/{name}"):
                    have = sorted(p.split("/", 1)[1] for p in store.arrays() if p.startswith("features/"))
                    flag = "--audio" if role == "audio" else "--visual"
                    raise ValueError(
                        f"{cfg.store} has no /features/{name} (for the {role} role); it has {have}. Ways out: "
                        f"compute it from the videos with `avvp-extract --backbone <backbone>` (docs/backbones.md "
                        f"names the backbone writing /features/{name}), import the released features with "
                        f"`avvp-import --feats|--valor` (vggish, resnet152, r2plus1d, clip, clap_tokens), or train "
                        f"on another feature ({flag}; a preset of that feature set, e.g. --preset valor)")
            self.text = {
                p.split("/", 1)[1]: torch.from_numpy(store.read(p, dtype=np.float32))
                for p in store.arrays() if p.startswith("text/")
            }
            # per-video shape of each feature (any row: every row of an array has the same shape)
            self.shapes = {role: tuple(store.read(f"features/{name}", [store.ids[0]]).shape[1:])
                           for role, name in self.features.items() if name is not None}
            # the layout each feature's array records (the backbones declare it); absent in imported or
            # hand-written stores, where InputDims falls back to the length rule
            recorded = {role: store.attrs(f"features/{name}").get("layout")
                        for role, name in self.features.items() if name is not None}
            self.layouts = {role: str(value) for role, value in recorded.items() if value is not None}
            # how each input was made (the arrays' attributes), carried into every checkpoint
            self.provenance = provenance_from_store(store, self.features, sorted(self.text))
            if cfg.mmap is None or cfg.mmap == "auto":
                cfg.mmap, reason = choose_reader(self.feature_bytes(store, splits), available_memory_bytes())
                (log.warning if cfg.mmap else log.info)(reason)
            for split in splits:
                self.splits[split] = self._load_split(store, split)

    def feature_bytes(self, store: Store, splits: Sequence[str]) -> int:
        """float32 bytes of every feature the splits would hold in memory (an upper bound: all split rows)."""
        per_video = sum(4 * int(np.prod(shape)) for shape in self.shapes.values())
        return per_video * sum(len(store.split_ids(split)) for split in splits)

    @property
    def dims(self) -> InputDims:
        s = self.shapes
        return InputDims(
            audio=tuple(s["audio"]), visual=tuple(s["visual"]), motion=tuple(s["motion"]) if "motion" in s else None,
            num_classes=len(self.classes), text_dims=tuple((k, int(v.shape[1])) for k, v in sorted(self.text.items())),
            layouts=tuple(sorted(self.layouts.items())),
        )

    def __getitem__(self, split: str) -> SplitData:
        return self.splits[split]

    def _load_split(self, store: Store, split: str) -> SplitData:
        ids = store.split_ids(split)
        if len(ids) == 0:
            raise ValueError(f"{store.path} has no {split!r} videos (/videos/split)")
        needed = [f"features/{n}" for n in self.features.values() if n is not None] + ["labels/weak"]
        rows = store.index(ids)
        present = np.ones(len(ids), dtype=bool)
        for path in needed:
            present &= store.mask(path)[rows]
        skipped = [str(v) for v in ids[~present]]
        if skipped:
            log.warning("%s: %d %s videos lack %s and are left out (e.g. %s)", store.path, len(skipped), split,
                        " or ".join("/" + p for p in needed), skipped[:5])
            ids, rows = ids[present], rows[present]
        kind = self.cfg.labels if split == "train" else "weak"
        targets = load_targets(store, list(ids), kind, self.inputs)

        def feature(name: str | None):
            if name is None:
                return None
            if self.cfg.mmap:
                return H5Rows(str(store.path), f"features/{name}", rows)
            return torch.from_numpy(store.read(f"features/{name}", list(ids), dtype=np.float32))

        gt_a = gt_v = None
        if has_stored_ground_truth(store) or split in ("val", "test"):  # LLP annotates val and test only
            gt = ground_truth_for(store, list(ids), self.cfg.annotations)
            gt_a, gt_v = gt.audio, gt.visual
        return SplitData(
            name=split, ids=ids, audio=feature(self.cfg.audio), visual=feature(self.cfg.visual),
            motion=feature(self.cfg.motion), targets=targets, gt_audio=gt_a, gt_visual=gt_v, text=self.text,
            skipped=skipped,
        )
