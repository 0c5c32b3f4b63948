"""Export a store's arrays as the released feature folders most AVVP codebases read.

The layouts are the import side's declarations (`avvp.data.importer.AVVP_FEATS`, `VALOR_RELEASE`: one
source of truth for folder, store array, per-video shape and dtype):

    --layout avvp   <out>/feats/{vggish,res152,r2plus1d_18}/<ytid>.npy            (official AVVP)
    --layout valor  <out>/{CLIP,CLAP}/features/<ytid>.npy,
                    <out>/{CLIP,CLAP}/segment_pseudo_labels/<ytid>.npy              (VALOR's release)

One float32 `.npy` (uint8 for pseudo-labels) per video, named by its 11-character YouTube id, plus
`PROVENANCE.json` at the release root: per folder the store array, its attributes (backbone, weights,
profile, precision, ...), the videos written and the avvp version. `avvp-import` reads that file back, so
importing an export restores the store's values and attributes bit for bit.

Arrays the released files could not have been (random weights, the clean profile, bf16/fp16) are
refused unless `allow_nonrelease`, and then marked in PROVENANCE.json (`not_like_release`). A layout
array the store lacks is one line naming it and what the store has; the other folders are still written.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avvp import __version__
from avvp._files import ensure_writable_dir
from avvp.data.importer import AVVP_FEATS, PROVENANCE_NAME, VALOR_RELEASE, ReleasedArray
from avvp.data.llp import youtube_id
from avvp.data.store import Store, plain_value

# layout -> (the release root under --out, its folders)
EXPORT_LAYOUTS: dict[str, tuple[str, tuple[ReleasedArray, ...]]] = {"avvp": ("feats", AVVP_FEATS), "valor": ("", VALOR_RELEASE)}


class ExportError(ValueError):
    """The export cannot start (nothing to export, output not writable); the message is one line."""


def nonrelease_reasons(attrs: dict[str, Any]) -> list[str]:
    """Why an array with these attributes differs from what the released files could have been."""
    reasons = []
    if bool(attrs.get("random_weights", False)):
        reasons.append("random weights")
    if attrs.get("profile", "reference") != "reference":
        reasons.append(f"profile {attrs['profile']}")
    if attrs.get("precision", "fp32") != "fp32":
        reasons.append(f"precision {attrs['precision']}")
    return reasons


def release_root(out: str | os.PathLike, layout: str) -> Path:
    if layout not in EXPORT_LAYOUTS:
        raise ExportError(f"layout must be one of {sorted(EXPORT_LAYOUTS)}, got {layout!r}")
    prefix = EXPORT_LAYOUTS[layout][0]
    return Path(out) / prefix if prefix else Path(out)


@dataclass
class ExportSummary:
    root: Path
    folders: dict[str, int] = field(default_factory=dict)  # folder -> files written
    problems: list[str] = field(default_factory=list)  # one line each: what was not exported and why


def export_release(store_path: str | os.PathLike, out: str | os.PathLike, layout: str, *,
                   allow_nonrelease: bool = False, echo: Callable[[str], None] = lambda line: None) -> ExportSummary:
    """Write the `layout` folders of the store at `store_path` under `out`; see the module docstring."""
    root = release_root(out, layout)
    specs = EXPORT_LAYOUTS[layout][1]
    summary = ExportSummary(root)

    def problem(line: str) -> None:
        summary.problems.append(line)
        echo(line)

    with Store(store_path) as store:
        have = sorted(a for a in store.arrays() if a.startswith(("features/", "zeroshot/", "pseudo/")))
        present = [s for s in specs if store.has(s.store_path)]
        if not present:
            raise ExportError(f"{store.path} has none of the arrays the {layout} layout needs "
                              f"({', '.join('/' + s.store_path for s in specs)}); it has "
                              f"{', '.join('/' + a for a in have) or 'no feature arrays'}")
        for s in specs:
            if s not in present:
                problem(f"{store.path} lacks /{s.store_path} for the {layout} folder {s.folder}; "
                        f"it has {', '.join('/' + a for a in have)}")
        try:
            ensure_writable_dir(root)
        except OSError as err:
            raise ExportError(f"--out {out} is not writable: {err.strerror or err}") from None
        names: dict[str, str] = {}  # store id -> file stem
        taken: dict[str, str] = {}
        for vid in store.ids:
            yt = youtube_id(str(vid))
            if yt is None:
                problem(f"{vid}: not an LLP filename or a YouTube id; released files are named by YouTube id, skipped")
            elif yt in taken:
                problem(f"{vid}: YouTube id {yt} is also {taken[yt]}'s; skipped")
            else:
                names[str(vid)] = taken[yt] = yt
        provenance_path = root / PROVENANCE_NAME
        provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {}
        provenance.update({"layout": layout, "avvp_version": __version__, "store": str(Path(store_path).resolve())})
        folders = provenance.setdefault("folders", {})
        for spec in present:
            attrs = store.attrs(spec.store_path)
            reasons = nonrelease_reasons(attrs)
            if reasons and not allow_nonrelease:
                problem(f"/{spec.store_path} has {', '.join(reasons)}: the released {spec.folder} files could not be "
                        "that; pass --allow-nonrelease to export it anyway (recorded in PROVENANCE.json)")
                continue
            row_shape = store.read(spec.store_path, [str(store.ids[0])]).shape[1:] if len(store) else spec.shape
            if tuple(row_shape) != spec.shape:
                problem(f"/{spec.store_path} rows are {tuple(row_shape)}, the {spec.folder} files are {spec.shape}; not exported")
                continue
            mask = store.mask(spec.store_path)
            folder = root / spec.folder
            folder.mkdir(parents=True, exist_ok=True)
            written = 0
            for row, vid in enumerate(store.ids):
                stem = names.get(str(vid))
                if stem is None or not mask[row]:
                    continue
                value = np.ascontiguousarray(store.read(spec.store_path, [str(vid)])[0], dtype=spec.dtype)
                target = folder / f"{stem}.npy"
                tmp = folder / f".{stem}.npy.tmp"
                with open(tmp, "wb") as f:
                    np.save(f, value)
                os.replace(tmp, target)
                written += 1
            summary.folders[spec.folder] = written
            folders[spec.folder] = {
                "store_array": spec.store_path, "videos": written, "dtype": spec.dtype, "shape": list(spec.shape),
                "backbone": plain_value(attrs.get("backbone", spec.backbone)), "weights": plain_value(attrs.get("weights", "")),
                "profile": plain_value(attrs.get("profile", "")), "precision": plain_value(attrs.get("precision", "")),
                "not_like_release": reasons, "attrs": {k: plain_value(v) for k, v in sorted(attrs.items())},
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"), "avvp_version": __version__,
            }
        if summary.folders:
            tmp = provenance_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, provenance_path)
    return summary
