"""Import the released feature folders most AVVP papers train on into the store.

Two releases are understood, both keyed by the 11-character YouTube id (`<ytid>.npy`):

- the official AVVP features: `feats/vggish` (10,128), `feats/res152` (80,2048), `feats/r2plus1d_18`
  (10,512);
- VALOR's release: `CLIP/features` (10,768), `CLAP/features` (64,768, the HTS-AT token map),
  `CLIP/segment_pseudo_labels` and `CLAP/segment_pseudo_labels` (10,25) 0/1.

Rows are joined with the LLP CSVs (id = the LLP filename, split, weak labels). A video present in only
some folders is imported with what exists (its `/masks/<array>` entry is false for the rest), so a subset
of LLP works. A missing-from-LLP id, an unreadable file or a wrongly shaped array becomes a failure row
(stage `import:<folder>`), never a crash. Re-running is an upsert: nothing is duplicated.

A folder written by `avvp-export` has a `PROVENANCE.json` at its release root: its arrays are imported
with the attributes recorded there (backbone, weights, profile, precision, ...), so an export imports
back to the store it came from; the original releases have none and get the `released:` attributes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from avvp import __version__
from avvp.data import llp
from avvp.data.classes import LLP_CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.data.layouts import FRAMES, SEGMENTS, TOKENS, check_layout
from avvp.data.store import StoreWriter, VideoRecord


@dataclass(frozen=True)
class ReleasedArray:
    """One released folder: where it lives, which store array it fills, and its per-video shape."""

    folder: str  # relative to the release root
    store_path: str
    shape: tuple[int, int]
    dtype: str
    backbone: str
    layout: str  # what the first axis is (avvp.data.layouts), recorded as the array's `layout` attribute
    axes: str  # human-readable axis description, the `axes` attribute (as the backbones write it)
    release: str

    def __post_init__(self) -> None:
        check_layout(self.layout, self.folder)


AVVP_FEATS = (
    ReleasedArray("vggish", "features/vggish", (10, 128), "float32", "vggish", SEGMENTS, "segment x dim", "avvp-feats"),
    ReleasedArray("res152", "features/resnet152", (80, 2048), "float32", "resnet152", FRAMES, "frame(8 fps, 80) x dim", "avvp-feats"),
    ReleasedArray("r2plus1d_18", "features/r2plus1d", (10, 512), "float32", "r2plus1d", SEGMENTS, "segment x dim", "avvp-feats"),
)
VALOR_RELEASE = (
    ReleasedArray("CLIP/features", "features/clip", (10, 768), "float32", "clip", SEGMENTS, "segment x dim", "valor-release"),
    ReleasedArray("CLAP/features", "features/clap_tokens", (64, 768), "float32", "clap", TOKENS, "token (2 freq x 32 time) x dim", "valor-release"),
    ReleasedArray("CLIP/segment_pseudo_labels", "pseudo/visual", (NUM_SEGMENTS, NUM_CLASSES), "uint8", "clip", SEGMENTS, "segment x class", "valor-release"),
    ReleasedArray("CLAP/segment_pseudo_labels", "pseudo/audio", (NUM_SEGMENTS, NUM_CLASSES), "uint8", "clap", SEGMENTS, "segment x class", "valor-release"),
)


@dataclass(frozen=True)
class ReleaseRecipe:
    """How a release's features were made, as far as a parse must reproduce them: the input profile and
    precision of the official pipelines, their default backbone options and pretrained weights."""

    profile: str = "reference"
    precision: str = "fp32"
    made_with: str = ""


RELEASE_RECIPES = {
    "avvp-feats": ReleaseRecipe(made_with="the official AVVP scripts: ffmpeg -r 8 JPEGs, ResNet-152 / R(2+1)D-18 "
                                          "(torchvision ImageNet / Kinetics-400), TF VGGish raw embeddings"),
    "valor-release": ReleaseRecipe(made_with="VALOR's scripts: CLIP ViT-L/14 (openai) on 10 frames, "
                                             "CLAP 630k-fusion (HTS-AT tokens)"),
}


def release_recipe(release: str) -> ReleaseRecipe:
    """The recipe of a release named in a store (`weights = released:<name>`); unknown names get the
    reference defaults."""
    return RELEASE_RECIPES.get(release, ReleaseRecipe())


def released_array(store_path: str) -> ReleasedArray | None:
    """The released folder that fills `store_path` (the first release declaring it), or None."""
    return next((s for s in AVVP_FEATS + VALOR_RELEASE if s.store_path == store_path), None)


PROVENANCE_NAME = "PROVENANCE.json"  # written by avvp-export (avvp.data.export) at a release root


def read_provenance(root: str | Path) -> dict[str, dict]:
    """Per folder, the store attributes an export recorded at a release root ({} for the original releases)."""
    path = Path(root) / PROVENANCE_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return {folder: dict(entry.get("attrs", {})) for folder, entry in data.get("folders", {}).items()}


@dataclass
class ImportSummary:
    videos: int = 0
    arrays: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    unknown_ids: int = 0


def _load(path: Path, spec: ReleasedArray) -> np.ndarray:
    """Load and validate one released file; raises ValueError with a specific message."""
    try:
        value = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises several types for truncated/garbage files
        raise ValueError(f"unreadable .npy ({type(err).__name__}: {err})") from None
    if value.shape != spec.shape:
        raise ValueError(f"shape {value.shape}, expected {spec.shape}")
    if spec.dtype == "uint8":
        if not np.isin(value, (0, 1)).all():
            raise ValueError("pseudo-labels must be 0/1")
        return value.astype(np.uint8)
    if not np.isfinite(value).all():
        raise ValueError("non-finite values")
    return value.astype(np.float32)


def import_released(
    out: str | Path,
    feats_dir: str | Path | None = None,
    valor_dir: str | Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import the given release folders into the store at `out` (created if missing)."""
    sources: list[tuple[Path, ReleasedArray]] = []
    recorded: dict[ReleasedArray, dict] = {}  # attributes an export recorded for its folders
    for root, specs in ((feats_dir, AVVP_FEATS), (valor_dir, VALOR_RELEASE)):
        if root is None:
            continue
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a directory")
        present = [(root / s.folder, s) for s in specs if (root / s.folder).is_dir()]
        if not present:
            raise FileNotFoundError(f"{root} has none of the folders {[s.folder for s in specs]}")
        sources.extend(present)
        provenance = read_provenance(root)
        recorded.update({s: provenance[s.folder] for _, s in present if s.folder in provenance})
    if not sources:
        raise ValueError("nothing to import: give --feats and/or --valor")

    by_ytid = llp.ytid_to_filename("full")
    weak = llp.read_weak_labels("full")
    files: dict[str, dict[ReleasedArray, Path]] = {}
    summary = ImportSummary()
    with StoreWriter(out, classes=LLP_CLASSES, flush_every=256) as writer:
        for folder, spec in sources:
            for path in sorted(folder.glob("*.npy")):
                key = path.stem
                if key not in by_ytid:
                    writer.add_failure(key, f"import:{spec.folder}", f"{path.name}: not the YouTube id of an LLP video")
                    summary.unknown_ids += 1
                    continue
                files.setdefault(by_ytid[key], {})[spec] = path
        for n, filename in enumerate(sorted(files)):
            arrays: dict[str, np.ndarray] = {}
            attrs: dict[str, dict] = {}
            resolved: list[str] = []
            for spec, path in files[filename].items():
                stage = f"import:{spec.folder}"
                try:
                    arrays[spec.store_path] = _load(path, spec)
                except ValueError as err:
                    writer.add_failure(filename, stage, f"{path}: {err}")
                    continue
                resolved.append(stage)
                attrs[spec.store_path] = recorded.get(spec) or {
                    "backbone": spec.backbone,
                    "weights": f"released:{spec.release}",
                    "random_weights": False,
                    "layout": spec.layout,
                    "axes": spec.axes,
                    "source": spec.release,
                    "avvp_version": __version__,
                }
                summary.arrays[spec.store_path] = summary.arrays.get(spec.store_path, 0) + 1
            arrays["labels/weak"] = weak.labels[weak.index_of(filename)]
            record = VideoRecord(filename, source=f"released:{llp.ytid(filename)}", split=llp.split_of(filename), duration=10.0)
            writer.add_video(record, arrays, attrs, resolves=resolved)
            summary.videos += 1
            if progress:
                progress(n + 1, len(files))
    from avvp.data.store import Store

    with Store(out) as store:
        summary.failures = len(store.failures())
    return summary


def print_summary(summary: ImportSummary, out: Path, file=None) -> None:
    file = file or sys.stdout
    print(f"imported {summary.videos} videos into {out}", file=file)
    for name, count in sorted(summary.arrays.items()):
        print(f"  /{name}: {count}", file=file)
    print(f"  failures: {summary.failures} (unknown ids: {summary.unknown_ids}); see /failures in the store", file=file)
