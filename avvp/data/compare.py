"""Compare two feature sources array by array and video by video: stores, released folders, or one of each.

For every array the two sides share (by store path: a released folder maps to the store array it fills,
`avvp.data.importer`), and every video both have (keyed by YouTube id when the id is an LLP filename or a
YouTube id, else by the store id), per video:

    cosine        a·b / (|a| |b|) over the flattened array (1 when both are equal or all zeros, 0 when one is)
    max_rel_diff  max |a - b| / max(max |a|, max |b|)   (0 when both are all zeros)

then a summary per array (median and 1st percentile of the cosine, median and 99th percentile of the
max relative difference, the worst videos by id) and a PNG histogram per array. Provenance attributes
that differ (backbone, weights, profile, precision, ...) are listed, never hidden; so are ids present on
one side only. This is how re-extracted LLP features are held against the released ones, and how two
profiles, precisions or machines differ (docs/compare.md quotes measured numbers).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from avvp.data.importer import AVVP_FEATS, VALOR_RELEASE, ReleasedArray, read_provenance
from avvp.data.llp import youtube_id
from avvp.data.store import Store, plain_value

COMPARED_GROUPS = ("features/", "zeroshot/", "pseudo/", "labels/weak")
PROVENANCE_KEYS = ("backbone", "weights", "random_weights", "profile", "precision", "source", "avvp_version")


class CompareError(ValueError):
    """The comparison cannot be made (unreadable input, nothing shared); the message is one line."""


def video_key(video_id: str) -> str:
    """LLP filenames compare by their YouTube id (the released files' names); other ids as they are."""
    return youtube_id(video_id) or video_id


class Side:
    """One input: per store path, the video keys it has, a row reader and the array's attributes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.label = str(path)
        self.store: Store | None = None
        self.files: dict[str, dict[str, Path]] = {}  # store path -> key -> .npy
        self.released: dict[str, dict[str, Any]] = {}  # store path -> attributes
        if self.path.is_file():
            try:
                self.store = Store(self.path)
            except Exception as err:  # noqa: BLE001 - not HDF5, wrong schema: one line either way
                raise CompareError(f"{self.path}: not a readable avvp store ({type(err).__name__}: {err})") from None
            self._keys = {video_key(str(v)): str(v) for v in self.store.ids}
        elif self.path.is_dir():
            self._scan_release()
            if not self.files:
                raise CompareError(f"{self.path}: no released feature folder (feats/vggish, CLIP/features, ...) in it")
        else:
            raise CompareError(f"{self.path} does not exist")

    def _scan_release(self) -> None:
        candidates: list[tuple[Path, ReleasedArray]] = []
        for spec in AVVP_FEATS:
            candidates += [(self.path / "feats", spec), (self.path, spec)]
        candidates += [(self.path, spec) for spec in VALOR_RELEASE]
        for root, spec in candidates:
            folder = root / spec.folder
            if spec.store_path in self.files or not folder.is_dir():
                continue
            self.files[spec.store_path] = {p.stem: p for p in sorted(folder.glob("*.npy"))}
            recorded = read_provenance(root).get(spec.folder)
            self.released[spec.store_path] = recorded or {"backbone": spec.backbone, "weights": f"released:{spec.release}",
                                                          "source": spec.release}

    def arrays(self) -> list[str]:
        if self.store is not None:
            return [a for a in self.store.arrays() if a.startswith(COMPARED_GROUPS)]
        return sorted(self.files)

    def keys(self, array: str) -> set[str]:
        if self.store is not None:
            mask = self.store.mask(array)
            return {video_key(str(v)) for v, m in zip(self.store.ids, mask) if m}
        return set(self.files[array])

    def row(self, array: str, key: str) -> np.ndarray:
        if self.store is not None:
            return self.store.read(array, [self._keys[key]])[0]
        return np.load(self.files[array][key], allow_pickle=False)

    def attrs(self, array: str) -> dict[str, Any]:
        return self.store.attrs(array) if self.store is not None else self.released.get(array, {})

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def cosine_and_max_rel(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if (nx == 0 and ny == 0) or np.array_equal(x, y):
        cosine = 1.0  # exactly: float rounding of dot / (|x| |y|) may land a hair below 1 for equal arrays
    elif nx == 0 or ny == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(x, y) / (nx * ny))
    scale = max(np.abs(x).max(initial=0.0), np.abs(y).max(initial=0.0))
    return cosine, (float(np.abs(x - y).max(initial=0.0) / scale) if scale > 0 else 0.0)


@dataclass
class ArrayComparison:
    array: str
    keys: list[str]
    cosine: np.ndarray
    max_rel: np.ndarray
    provenance: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # attribute -> (A, B) where they differ
    shape_mismatch: str = ""
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def worst(self, n: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(self.cosine, kind="stable")[:n]
        return [(self.keys[i], float(self.cosine[i])) for i in order]


@dataclass
class Comparison:
    a: str
    b: str
    arrays: list[ArrayComparison]
    only_in_a: list[str]  # arrays
    only_in_b: list[str]


def compare(a_path: str | os.PathLike, b_path: str | os.PathLike) -> Comparison:
    """Compare every shared array over every shared video; CompareError when nothing is shared."""
    a, b = Side(a_path), Side(b_path)
    try:
        shared = sorted(set(a.arrays()) & set(b.arrays()))
        if not shared:
            raise CompareError(f"{a.label} and {b.label} share no array ({', '.join(a.arrays()) or 'none'} vs "
                               f"{', '.join(b.arrays()) or 'none'})")
        results = []
        any_common = False
        for array in shared:
            ka, kb = a.keys(array), b.keys(array)
            common = sorted(ka & kb)
            any_common |= bool(common)
            attrs_a, attrs_b = a.attrs(array), b.attrs(array)
            prov = {k: (plain_value(attrs_a.get(k)), plain_value(attrs_b.get(k))) for k in PROVENANCE_KEYS
                    if plain_value(attrs_a.get(k)) != plain_value(attrs_b.get(k))}
            cos, rel, mismatch = [], [], ""
            for key in common:
                x, y = a.row(array, key), b.row(array, key)
                if x.shape != y.shape:
                    mismatch = f"rows are {x.shape} in A, {y.shape} in B"
                    cos, rel, common = [], [], []
                    break
                c, r = cosine_and_max_rel(x, y)
                cos.append(c)
                rel.append(r)
            results.append(ArrayComparison(array, common, np.array(cos), np.array(rel), prov, mismatch,
                                           sorted(ka - kb), sorted(kb - ka)))
        if not any_common:
            raise CompareError(f"{a.label} and {b.label} have no video in common (ids compare by YouTube id)")
        return Comparison(a.label, b.label, results, sorted(set(a.arrays()) - set(b.arrays())),
                          sorted(set(b.arrays()) - set(a.arrays())))
    finally:
        a.close()
        b.close()


def summary_lines(result: Comparison) -> Iterator[str]:
    yield f"A = {result.a}"
    yield f"B = {result.b}"
    yield (f"{'array':<22} {'videos':>6} {'cos median':>11} {'cos p1':>11} {'maxrel median':>14} {'maxrel p99':>11}  "
           "worst videos (cosine)")
    for r in result.arrays:
        if not len(r.keys):
            yield f"{'/' + r.array:<22} {0:>6}  {r.shape_mismatch or 'no video in common'}"
            continue
        worst = ", ".join(f"{k} {c:.6f}" for k, c in r.worst())
        yield (f"{'/' + r.array:<22} {len(r.keys):>6} {np.median(r.cosine):>11.7f} {np.percentile(r.cosine, 1):>11.7f} "
               f"{np.median(r.max_rel):>14.3e} {np.percentile(r.max_rel, 99):>11.3e}  {worst}")
    for r in result.arrays:
        for key, (x, y) in r.provenance.items():
            yield f"provenance differs: /{r.array} {key}: A {x!r}, B {y!r}"
        for side, ids in (("A", r.only_a), ("B", r.only_b)):
            if ids:
                more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
                yield f"only in {side}: /{r.array}: {len(ids)} videos: {', '.join(ids[:5])}{more}"
    for side, arrays in (("A", result.only_in_a), ("B", result.only_in_b)):
        if arrays:
            yield f"arrays only in {side}: {', '.join('/' + x for x in arrays)}"


def write_outputs(result: Comparison, out_dir: str | os.PathLike) -> list[Path]:
    """`compare.csv` (array, video, cosine, max_rel_diff) and one histogram PNG per array in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "compare.csv"]
    with open(written[0], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["array", "video", "cosine", "max_rel_diff"])
        for r in result.arrays:
            for k, c, m in zip(r.keys, r.cosine, r.max_rel):
                w.writerow([r.array, k, f"{c:.9f}", f"{m:.6e}"])
    for r in result.arrays:
        if not len(r.keys):
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
        ax1.hist(r.cosine, bins=40, color="#4477aa")
        ax1.set_xlabel("cosine (A, B) per video")
        ax1.set_ylabel("videos")
        ax2.hist(np.log10(np.maximum(r.max_rel, 1e-12)), bins=40, color="#cc6677")
        ax2.set_xlabel("log10 max relative difference per video")
        fig.suptitle(f"/{r.array}: {len(r.keys)} videos", fontsize=10)
        fig.tight_layout()
        path = out / f"{r.array.replace('/', '_')}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def run_compare(a: str | os.PathLike, b: str | os.PathLike, out_dir: str | os.PathLike | None,
                echo: Callable[[str], None] = print) -> Comparison:
    result = compare(a, b)
    for line in summary_lines(result):
        echo(line)
    if out_dir is not None:
        written = write_outputs(result, out_dir)
        echo(f"per-video values and histograms: {', '.join(str(p) for p in written)}")
    return result
