"""The HDF5 store: one file per dataset holding video metadata, labels, features and pseudo-labels.

Schema (documented for users in docs/store.md):

    /videos/{id,source,split}  (N,) utf-8 str      /videos/duration (N,) float32   /videos/has_audio (N,) bool
    /labels/classes (K,) str   /labels/weak (N,K) uint8
    /features/<name> (N,L,D)   /zeroshot/<name> (N,10,K)   /pseudo/{audio,visual} (N,10,K)  /pseudo/eiou (N,10,10)
    /gt/{audio,visual} (N,10,K) uint8 (synthetic data only: segment ground truth)
    /text/<name> (K,D)         dataset-level arrays (no video axis)
    /masks/<path> (N,) bool    which rows of a per-video array hold data (a video may lack a backbone)
    /failures/{id,stage,message} (F,) str

Crash safety. The main file is never modified in place. A `StoreWriter` journals what it receives into
small shard files (`<path>.journal/*.h5`, each written to a temporary name, fsynced and renamed, so a
shard is either complete or absent), and `commit()` merges main + shards into `<path>.tmp` and renames it
over the main file. A kill at any moment leaves the previous main file intact plus complete shards; the
next writer merges leftover shards first. Merging is an upsert keyed by video id, so replaying a shard
twice changes nothing: no duplicates, no loss. The cost is one copy of the main file per commit, which
writers do once per run (and readers never see a half-written file).
"""
from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TypeVar

import h5py
import numpy as np

from avvp.data.classes import LLP_CLASSES
from avvp.faults import DiskFull, OneLineError, is_disk_full

STR = h5py.string_dtype("utf-8")
VIDEO_FIELDS = ("id", "source", "split", "duration", "has_audio")
# attributes that must agree when rows are added to an existing array: never mix weights, input
# profiles (docs/decoding.md) or precisions in one array
IDENTITY_ATTRS = ("backbone", "weights", "random_weights", "profile", "precision")
# What a path in a store file is (docs/store.md), asked by every reader and writer through `_array_kind`:
# bookkeeping (video metadata, row masks, failure rows, and a journal shard's superseded failures),
# dataset-level arrays (no video axis), or per-video arrays (first axis = the /videos rows).
BOOKKEEPING_GROUPS = ("videos", "masks", "failures", "resolved")
DATASET_LEVEL_GROUPS = ("text",)
DATASET_LEVEL_ARRAYS = ("labels/classes",)
BOOKKEEPING, DATASET_LEVEL, PER_VIDEO = "bookkeeping", "dataset-level", "per-video"
SCHEMA = "avvp-store/1"
SCHEMA_DOC = "docs/store.md"
# documented defaults of the optional /videos fields: what every reader sees when a (hand-written or
# partial) store lacks one
VIDEO_DEFAULTS: dict[str, Any] = {"source": "", "split": "", "duration": 10.0, "has_audio": True}


class StoreError(OneLineError, RuntimeError):
    """A store operation that cannot be done as asked (shape/weights mismatch, unknown video, unreadable
    or locked file, ...); the message is one complete line for the user (exit code 2)."""


def _open_h5(path: Path, mode: str = "r") -> h5py.File:
    """h5py.File, with a file that cannot be read as HDF5 (truncated, not HDF5, no permission) as a
    one-line StoreError instead of h5py's multi-part OSError."""
    try:
        return h5py.File(path, mode)
    except OSError as err:
        if is_disk_full(err):
            raise
        reason = str(err).splitlines()[0]
        for prefix in ("Unable to synchronously open file (", "Unable to open file ("):
            if reason.startswith(prefix):
                reason = reason[len(prefix):].rstrip(")")
        if err.errno == 13 or "Permission denied" in reason:
            reason = "permission denied"
        raise StoreError(f"cannot read store {path}: {reason} (not an HDF5 store, truncated, or not readable; "
                         f"move it aside or pass another --out/--data)") from None


@dataclass(frozen=True)
class VideoRecord:
    """Metadata of one video row."""

    id: str
    source: str = ""
    split: str = ""
    duration: float = 10.0
    has_audio: bool = True


@dataclass(frozen=True)
class Failure:
    id: str
    stage: str
    message: str


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync_path(path)


def _array_kind(path: str) -> str:
    """BOOKKEEPING, DATASET_LEVEL or PER_VIDEO: the one per-video path rule of the store."""
    path = path.strip("/")
    group = path.split("/", 1)[0]
    if group in BOOKKEEPING_GROUPS:
        return BOOKKEEPING
    if group in DATASET_LEVEL_GROUPS or path in DATASET_LEVEL_ARRAYS:
        return DATASET_LEVEL
    return PER_VIDEO


def _is_per_video(path: str) -> bool:
    return _array_kind(path) == PER_VIDEO


def _list_arrays(f: h5py.File, *kinds: str) -> list[str]:
    """Every dataset of `f` (of the given kinds only, when any are named), in h5py's visiting order."""
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and (not kinds or _array_kind(name) in kinds):
            names.append(name)

    f.visititems(visit)
    return names


def _identity(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes that say how an array's rows were made (IDENTITY_ATTRS present in `attrs`)."""
    return {k: attrs[k] for k in IDENTITY_ATTRS if attrs and k in attrs}


def _check_compatible(path: str, held: tuple[tuple[int, ...], Any, Mapping[str, Any]],
                      new: tuple[tuple[int, ...], Any, Mapping[str, Any]]) -> None:
    """StoreError unless rows (shape, dtype, identity attributes) `new` may join the array that holds `held`:
    the check of both `StoreWriter.add_video`/`set_rows` (before journaling) and the merge."""
    (shape, dtype, ident), (new_shape, new_dtype, new_ident) = held, new
    if tuple(new_shape) != tuple(shape):
        raise StoreError(f"/{path}: store has rows of shape {tuple(shape)}, new rows {tuple(new_shape)}")
    if np.dtype(new_dtype) != np.dtype(dtype):
        raise StoreError(f"/{path}: store has dtype {np.dtype(dtype)}, new rows {np.dtype(new_dtype)}")
    for key in IDENTITY_ATTRS:
        if key in ident and key in new_ident and not _same_attr(new_ident[key], ident[key]):
            raise StoreError(
                f"/{path}: store holds {key}={ident[key]!r}, new rows have {key}={new_ident[key]!r}; "
                "write them to another store (arrays never mix weights)"
            )


def plain_value(value: Any) -> Any:
    """An attribute value as Python builtins (numpy scalars and arrays, bytes, nested containers): what
    JSON, a checkpoint's weights_only pickle and a by-value comparison all accept."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain_value(v) for v in value)
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    return value


def _read_str(ds: h5py.Dataset) -> np.ndarray:
    return np.asarray(ds.asstr()[()], dtype=object)


class _Closing(abc.ABC):
    """`with` closes: the context-manager protocol of the store's reader and writer."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file (and, for the writer, commit and unlock)."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_C = TypeVar("_C", bound=_Closing)


# Reads go through at most this much temporary memory beyond their output (rows not read straight into it).
READ_BLOCK_BYTES = 16 << 20
# A run of at least this many consecutive store rows, requested in store order, is read straight into
# the output as one slice; shorter runs go through the block buffer in store order.
DIRECT_RUN_ROWS = 8


def read_rows(ds: h5py.Dataset, rows: np.ndarray | None, dtype: Any = None) -> np.ndarray:
    """Rows `rows` of a numeric dataset (any order, repeats allowed; None: all rows) as one new array.

    The output is allocated once and every row is written into it once. Runs of consecutive rows that
    are asked for in store order (a split stored as one contiguous range is one run) are read by HDF5
    straight into the output slice, converting to `dtype` on the way; the remaining rows are read in
    increasing store order, in blocks of at most READ_BLOCK_BYTES, and scattered to their positions.
    """
    out_dtype = np.dtype(ds.dtype if dtype is None else dtype)
    if rows is None:
        out = np.empty(ds.shape, dtype=out_dtype)
        if out.size:
            ds.read_direct(out)
        return out
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    n = len(rows)
    out = np.empty((n,) + tuple(ds.shape[1:]), dtype=out_dtype)
    if n == 0 or out.size == 0:
        return out
    if rows.min() < 0 or rows.max() >= ds.shape[0]:
        raise IndexError(f"{ds.name}: rows {int(rows.min())}..{int(rows.max())} outside 0..{ds.shape[0] - 1}")
    starts, ends = _runs(rows)
    direct = (ends - starts) >= DIRECT_RUN_ROWS
    for s, e in zip(starts[direct], ends[direct]):
        ds.read_direct(out, np.s_[rows[s] : rows[s] + (e - s)], np.s_[s:e])
    if direct.all():
        return out
    positions = np.concatenate([np.arange(s, e) for s, e in zip(starts[~direct], ends[~direct])])
    _scatter_rows(ds, rows[positions], positions, out)
    return out


def _scatter_rows(ds: h5py.Dataset, rows: np.ndarray, positions: np.ndarray, out: np.ndarray) -> None:
    """out[positions] = ds[rows], read in increasing row order through one bounded block at a time."""
    order = np.argsort(rows, kind="stable")
    rows, positions = rows[order], positions[order]
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * max(ds.dtype.itemsize, out.dtype.itemsize))
    span = max(1, READ_BLOCK_BYTES // row_bytes)  # store rows one block may cover
    i, m = 0, len(rows)
    while i < m:
        lo = int(rows[i])
        j = int(np.searchsorted(rows, lo + span, side="left"))
        hi = int(rows[j - 1]) + 1
        wanted = np.unique(rows[i:j])
        if 2 * len(wanted) >= hi - lo:  # dense: one slice, a few unwanted rows read along
            block = ds[lo:hi]
            out[positions[i:j]] = block[rows[i:j] - lo]
        else:  # sparse: only the wanted rows, one slice read per run of consecutive rows
            block = _read_runs(ds, wanted, out.dtype)
            out[positions[i:j]] = block[np.searchsorted(wanted, rows[i:j])]
        del block
        i = j


def _read_runs(ds: h5py.Dataset, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """ds[rows] for increasing unique `rows`, read as one `read_direct` slice per run of consecutive rows.
    h5py's list indexing (`ds[rows]`) builds a point selection that costs ~90 ms for 16 random rows of a
    (N, 80, 2048) array against ~4 ms this way (benchmarks/scale.py's on-disk training epoch)."""
    block = np.empty((len(rows),) + tuple(ds.shape[1:]), dtype=dtype)
    for s, e in zip(*_runs(rows)):
        ds.read_direct(block, np.s_[rows[s] : rows[s] + (e - s)], np.s_[s:e])
    return block


def _runs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends): the positions in `rows` where each run of consecutive row numbers begins and ends."""
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    return np.concatenate(([0], cuts)), np.concatenate((cuts, [len(rows)]))


# --------------------------------------------------------------------------------------------- reading
class Store(_Closing):
    """Read access to a store file. Use as a context manager or call `close()`.

    `read(path, ids=None)` returns a per-video array in the order of `ids` (default: all rows),
    `mask(path)` says which rows hold data, `attrs(path)` the array's attributes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"store {self.path} does not exist")
        self._f = _open_h5(self.path)
        schema = self._f.attrs.get("schema")
        schema = schema.decode() if isinstance(schema, bytes) else schema
        if schema is not None and schema != SCHEMA:
            self._f.close()
            raise StoreError(f"{self.path}: schema {schema!r}, this avvp reads {SCHEMA!r} (schema: {SCHEMA_DOC})")
        self.ids: np.ndarray = _read_str(self._f["videos/id"]) if "videos/id" in self._f else np.array([], object)
        self._index = {vid: i for i, vid in enumerate(self.ids)}

    # -- lifecycle
    def close(self) -> None:
        self._f.close()

    # -- metadata
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def classes(self) -> list[str]:
        if "labels/classes" in self._f:
            return list(_read_str(self._f["labels/classes"]))
        return list(LLP_CLASSES)

    def video_field(self, name: str) -> np.ndarray:
        """A /videos column; an absent optional one is its documented default (VIDEO_DEFAULTS)."""
        if f"videos/{name}" not in self._f:
            if name == "id":
                return self.ids
            if name not in VIDEO_DEFAULTS:
                raise StoreError(f"{self.path} has no /videos/{name} (schema: {SCHEMA_DOC})")
            default = VIDEO_DEFAULTS[name]
            return np.full(len(self), default, dtype=object if isinstance(default, str) else type(default))
        ds = self._f[f"videos/{name}"]
        return _read_str(ds) if ds.dtype.kind == "O" else ds[()]

    def require(self, paths: Iterable[str], purpose: str) -> None:
        """One-line StoreError naming every array `purpose` needs that this store lacks."""
        missing = [f"/{p.strip('/')}" for p in paths if p.strip("/") not in self._f]
        if missing:
            raise StoreError(f"{self.path} lacks {', '.join(missing)}, needed {purpose} (schema: {SCHEMA_DOC})")

    def videos(self) -> list[VideoRecord]:
        cols = {name: self.video_field(name) for name in VIDEO_FIELDS}
        return [
            VideoRecord(
                id=str(cols["id"][i]), source=str(cols["source"][i]), split=str(cols["split"][i]),
                duration=float(cols["duration"][i]), has_audio=bool(cols["has_audio"][i]),
            )
            for i in range(len(self))
        ]

    def index(self, ids: Iterable[str]) -> np.ndarray:
        """Row numbers of `ids`; unknown ids raise a StoreError naming them."""
        ids = list(ids)
        missing = [v for v in ids if v not in self._index]
        if missing:
            raise StoreError(f"{len(missing)} ids not in {self.path}: {missing[:10]}")
        return np.array([self._index[v] for v in ids], dtype=np.int64)

    def split_ids(self, split: str) -> np.ndarray:
        return self.ids[self.video_field("split") == split] if len(self) else self.ids

    def contains(self, video_id: str) -> bool:
        return video_id in self._index

    # -- arrays
    def has(self, path: str) -> bool:
        return path.strip("/") in self._f

    def arrays(self) -> list[str]:
        return _list_arrays(self._f, PER_VIDEO, DATASET_LEVEL)

    def attrs(self, path: str) -> dict[str, Any]:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._f[path.strip("/")].attrs.items()}

    def per_video(self, path: str) -> bool:
        """Whether the array at `path` has one row per video (the store's path rule, docs/store.md)."""
        return _is_per_video(path)

    def mask(self, path: str) -> np.ndarray:
        path = path.strip("/")
        if f"masks/{path}" in self._f:
            return self._f[f"masks/{path}"][()].astype(bool)
        if path in self._f:
            return np.ones(len(self), dtype=bool)
        return np.zeros(len(self), dtype=bool)

    def read(self, path: str, ids: Sequence[str] | None = None, *, dtype: Any = None) -> np.ndarray:
        """The array at `path`, rows in the order of `ids` (default: all rows), as `dtype` (default: stored).

        The output is allocated once and filled in place (`read_rows`): no full-size intermediate copy,
        so reading N bytes of features costs N bytes of memory plus one bounded block.
        """
        path = path.strip("/")
        if path not in self._f:
            raise StoreError(f"{self.path} has no array /{path}")
        ds = self._f[path]
        if ds.dtype.kind == "O":
            return _read_str(ds) if ids is None or not _is_per_video(path) else _read_str(ds)[self.index(ids)]
        if ids is None or not _is_per_video(path):
            return read_rows(ds, None, dtype)
        return read_rows(ds, self.index(ids), dtype)

    def failures(self) -> list[Failure]:
        if "failures/id" not in self._f:
            return []
        cols = [_read_str(self._f[f"failures/{c}"]) for c in ("id", "stage", "message")]
        return [Failure(str(a), str(b), str(c)) for a, b, c in zip(*cols)]


# --------------------------------------------------------------------------------------------- writing
class _Pending:
    """What a writer has received since its last flush."""

    def __init__(self) -> None:
        self.records: dict[str, VideoRecord | None] = {}  # None = rows for an existing video, no metadata
        self.rows: dict[str, dict[str, np.ndarray]] = {}  # path -> id -> array
        self.attrs: dict[str, dict[str, Any]] = {}
        self.dataset_arrays: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self.failures: list[Failure] = []
        self.resolved: list[tuple[str, str]] = []  # (id, stage) failure rows to drop

    def __len__(self) -> int:
        return len(self.records) + len(self.dataset_arrays) + len(self.failures) + len(self.resolved)


class StoreWriter(_Closing):
    """Journaled writer. One writer per store at a time (an exclusive lock file enforces it).

    Usage:
        with StoreWriter("data.h5") as w:
            w.add_video(VideoRecord("vid1", split="train"), {"features/clip": arr}, {"features/clip": attrs})
            w.add_failure("vid2", "decode", "no video stream")
        # commit() on exit merges everything into data.h5 atomically
    """

    def __init__(
        self, path: str | os.PathLike, *, classes: Sequence[str] = LLP_CLASSES, flush_every: int = 32,
        flush_seconds: float = 30.0,
    ):
        self.path = Path(path)
        self.journal = Path(str(self.path) + ".journal")
        self.classes = list(classes)
        # a shard is written every `flush_every` videos or `flush_seconds`, whichever comes first, so a
        # kill loses at most that much work however long a video takes
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.recovered = 0  # video rows merged from the journal of an interrupted writer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(str(self.path) + ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StoreError(f"another process is writing {self.path} (lock {self.path}.lock is held)") from None
        self._pending = _Pending()
        self._known: dict[str, tuple[tuple[int, ...], str, dict[str, Any]]] = {}  # path -> (row shape, dtype, identity attrs)
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._main_ids: set[str] = set()
        try:
            self._recover()
            self._read_main()
        except BaseException:
            self._unlock()  # a writer that could not start leaves the store to the next one
            raise

    def _recover(self) -> None:
        """Merge complete shards left by a killed writer; drop its half-written temporaries."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(self.path) + ".tmp")
        if self.journal.exists():
            for tmp in self.journal.glob("*.tmp"):
                tmp.unlink()
            if any(self.journal.glob("*.h5")):
                self.recovered = _journal_video_count(sorted(self.journal.glob("*.h5")))
                self._merge()

    def _read_main(self) -> None:
        """The main file's video ids and, per array, what new rows must agree with."""
        if not self.path.exists():
            return
        with _open_h5(self.path) as f:
            if "videos/id" not in f:
                raise StoreError(f"{self.path} has no /videos/id: not an avvp store (schema: {SCHEMA_DOC})")
            self._main_ids = set(_read_str(f["videos/id"]))
            for name in _list_arrays(f, PER_VIDEO):
                ds = f[name]
                self._known[name] = (ds.shape[1:], ds.dtype.str, _identity(ds.attrs))

    def _unlock(self) -> None:
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    # -- lifecycle
    def close(self) -> None:
        if self._lock_file.closed:
            return
        try:
            self.commit()
        finally:
            self._unlock()

    # -- receiving data
    def add_video(
        self,
        record: VideoRecord,
        arrays: Mapping[str, np.ndarray] | None = None,
        attrs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        resolves: Iterable[str] = (),
    ) -> None:
        """Add or update one video row. `arrays` are per-video arrays keyed by store path; `resolves`
        names failure stages of this video that this success supersedes (their rows are dropped)."""
        self._put_rows(record.id, arrays or {}, attrs or {})  # validates before anything is recorded
        self._pending.records[record.id] = record
        self._pending.resolved.extend((record.id, stage) for stage in resolves)
        self._maybe_flush()

    def set_rows(
        self, path: str, ids: Sequence[str], values: np.ndarray, attrs: Mapping[str, Any] | None = None
    ) -> None:
        """Set one per-video array for existing videos (e.g. pseudo-labels for the whole store)."""
        if len(ids) != len(values):
            raise StoreError(f"set_rows {path}: {len(ids)} ids but {len(values)} rows")
        values = np.asarray(values)
        unknown = [v for v in ids if v not in self._main_ids and self._pending.records.get(v) is None]
        if unknown:
            raise StoreError(f"set_rows /{path.strip('/')}: {len(unknown)} videos are not in the store: {list(unknown)[:10]}")
        if len(values):
            self._check(path.strip("/"), values[0], attrs)
        for vid, row in zip(ids, values):
            self._pending.records.setdefault(vid, None)
            self._pending.rows.setdefault(path.strip("/"), {})[vid] = np.asarray(row)
        if attrs is not None:
            self._pending.attrs[path.strip("/")] = dict(attrs)
        self._maybe_flush()

    def set_dataset_array(self, path: str, value: np.ndarray, attrs: Mapping[str, Any] | None = None) -> None:
        """Set an array without a video axis (e.g. /text/clip); replaces any previous value."""
        self._pending.dataset_arrays[path.strip("/")] = (np.asarray(value), dict(attrs or {}))

    def add_failure(self, video_id: str, stage: str, message: str) -> None:
        self._pending.failures.append(Failure(video_id, stage, message))
        self._maybe_flush()

    def _check(self, path: str, value: np.ndarray, attrs: Mapping[str, Any] | None) -> None:
        """Reject rows that could not be merged (checked here so a bad row never reaches the journal)."""
        new = (value.shape, value.dtype.str, _identity(attrs))
        known = self._known.get(path)
        if known is None:
            self._known[path] = new
            return
        _check_compatible(path, known, new)

    def _put_rows(self, vid: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Mapping[str, Any]]) -> None:
        for path, value in arrays.items():
            path = path.strip("/")
            if not _is_per_video(path):
                raise StoreError(f"/{path} is not a per-video array; use set_dataset_array")
            value = np.asarray(value)
            self._check(path, value, attrs.get(path) or attrs.get("/" + path))
        for path, value in arrays.items():
            self._pending.rows.setdefault(path.strip("/"), {})[vid] = np.asarray(value)
        for path, a in attrs.items():
            self._pending.attrs[path.strip("/")] = dict(a)

    def _maybe_flush(self) -> None:
        count = len(self._pending.records) + len(self._pending.failures)
        if count >= self.flush_every or (count and time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()

    # -- journal
    def flush(self) -> None:
        """Write what is pending to a new shard (atomically). Cheap; does not touch the main file."""
        if not len(self._pending):
            return
        self.journal.mkdir(exist_ok=True)
        self._seq += 1
        final = self.journal / f"{time.time_ns():020d}-{self._token}-{self._seq:06d}.h5"
        tmp = final.with_suffix(".tmp")
        try:
            _write_shard(tmp, self._pending, self.classes)
            _fsync_path(tmp)
        except OSError as err:
            if not is_disk_full(err):
                raise
            with contextlib.suppress(OSError):
                tmp.unlink()  # a half-written shard only takes space; the pending rows are what it held
            raise DiskFull(tmp) from err
        os.replace(tmp, final)
        _fsync_dir(self.journal)
        self._pending = _Pending()
        self._last_flush = time.monotonic()

    def commit(self) -> None:
        """Flush, then merge the main file and all shards into a new main file (atomic rename)."""
        self.flush()
        if self.journal.exists() and any(self.journal.glob("*.h5")):
            self._merge()
        elif not self.path.exists():
            _create_empty(self.path, self.classes)

    def _merge(self) -> None:
        shards = sorted(self.journal.glob("*.h5"))
        tmp = Path(str(self.path) + ".tmp")
        # the merged copy needs about the main file plus the shards; checked first because h5py can crash
        # the process (SIGSEGV in its cleanup) when a file it writes hits ENOSPC while being closed
        need = (self.path.stat().st_size if self.path.exists() else 0) + sum(s.stat().st_size for s in shards)
        free = shutil.disk_usage(self.path.parent).free
        if free < need:
            raise DiskFull(tmp, f"merging {len(shards)} journal shards into {self.path.name} needs about "
                                f"{need // 1024} KiB, {free // 1024} KiB free")
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
            else:
                _create_empty(tmp, self.classes)
            self._merge_shards(tmp, shards)
            _fsync_path(tmp)
        except BaseException as err:
            # a merge that did not finish leaves the main file and the journal as they were; the partial
            # copy only takes space (on a full disk, all of it)
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(err, OSError) and is_disk_full(err):
                raise DiskFull(tmp, f"merging {len(shards)} journal shards into {self.path.name}") from err
            raise
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        for shard in shards:
            shard.unlink()
        with contextlib.suppress(OSError):
            self.journal.rmdir()

    def _merge_shards(self, tmp: Path, shards: Sequence[Path]) -> None:
        with h5py.File(tmp, "r+") as dst:
            for shard in shards:
                try:
                    with h5py.File(shard, "r") as src:
                        _merge_into(dst, src)
                except (StoreError, OSError, KeyError) as err:
                    if isinstance(err, OSError) and is_disk_full(err):
                        raise  # the shard is fine, the disk is full: it stays in the journal for the re-run
                    # never replay a shard that cannot merge: set it aside for inspection and stop
                    rejected = self.journal / "rejected"
                    rejected.mkdir(exist_ok=True)
                    os.replace(shard, rejected / shard.name)
                    raise StoreError(f"could not merge journal shard {shard.name} (moved to {rejected}): {err}") from err


def saved_videos(path: str | os.PathLike) -> tuple[int, int]:
    """(video rows in the store file, further videos only in its journal): what an interrupted or failed
    writer leaves on disk, for the line that tells the user what is kept. Unreadable parts count 0."""
    path = Path(path)
    in_store: set[str] = set()
    if path.exists():
        with contextlib.suppress(OSError, KeyError), h5py.File(path, "r") as f:
            in_store = set(_read_str(f["videos/id"]))
    journal: set[str] = set()
    for shard in sorted(Path(str(path) + ".journal").glob("*.h5")):
        with contextlib.suppress(OSError, KeyError), h5py.File(shard, "r") as f:
            ids, has_record = _read_str(f["videos/id"]), f["masks/videos"][()]
            journal.update(str(v) for v, ok in zip(ids, has_record) if ok)
    return len(in_store), len(journal - in_store)


def describe_saved(path: str | os.PathLike) -> str:
    """'N videos are saved (A in data.h5, J in its journal)': saved_videos as one phrase."""
    in_store, in_journal = saved_videos(path)
    name = Path(path).name
    if in_journal:
        return (f"{in_store + in_journal} videos are saved ({in_store} in {name}, {in_journal} in its journal "
                f"{name}.journal, merged by the next run)")
    return f"{in_store} videos are saved in {path}"


def _journal_video_count(shards: Sequence[Path]) -> int:
    """Distinct video ids with rows in these shards (what a recovery brings back)."""
    ids: set[str] = set()
    for shard in shards:
        with contextlib.suppress(OSError, KeyError), h5py.File(shard, "r") as f:
            if "videos/id" in f:
                ids.update(_read_str(f["videos/id"]))
    return len(ids)


def recover_journal(path: str | os.PathLike) -> int:
    """Merge the journal an interrupted writer left beside `path` into it; return the video rows that
    came back (0 when there is no journal). Executors call it before they decide what is missing, so a
    re-run after a kill computes only what the killed run had not journaled."""
    journal = Path(str(path) + ".journal")
    if not (journal.exists() and any(journal.glob("*.h5"))):
        return 0
    with StoreWriter(path) as writer:
        return writer.recovered


def _create_empty(path: Path, classes: Sequence[str]) -> None:
    with h5py.File(path, "w") as f:
        for name in ("id", "source", "split"):
            f.create_dataset(f"videos/{name}", shape=(0,), maxshape=(None,), dtype=STR, chunks=(1024,))
        f.create_dataset("videos/duration", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(1024,))
        f.create_dataset("videos/has_audio", shape=(0,), maxshape=(None,), dtype=bool, chunks=(1024,))
        f.create_dataset("labels/classes", data=np.array(list(classes), dtype=object), dtype=STR)
        for name in ("id", "stage", "message"):
            f.create_dataset(f"failures/{name}", shape=(0,), maxshape=(None,), dtype=STR, chunks=(256,))
        from avvp import __version__

        f.attrs["avvp_version"] = __version__
        f.attrs["schema"] = SCHEMA


def _write_shard(path: Path, pending: _Pending, classes: Sequence[str]) -> None:
    """A shard uses the store schema itself, plus /masks/videos saying which rows carry metadata."""
    ids = list(pending.records)
    with h5py.File(path, "w") as f:
        f.create_dataset("labels/classes", data=np.array(list(classes), dtype=object), dtype=STR)
        recs = [pending.records[i] for i in ids]
        f.create_dataset("videos/id", data=np.array(ids, dtype=object), dtype=STR)
        f.create_dataset("masks/videos", data=np.array([r is not None for r in recs], dtype=bool))
        f.create_dataset("videos/source", data=np.array([r.source if r else "" for r in recs], dtype=object), dtype=STR)
        f.create_dataset("videos/split", data=np.array([r.split if r else "" for r in recs], dtype=object), dtype=STR)
        f.create_dataset("videos/duration", data=np.array([r.duration if r else 0 for r in recs], dtype=np.float32))
        f.create_dataset("videos/has_audio", data=np.array([r.has_audio if r else False for r in recs], dtype=bool))
        for path_, by_id in pending.rows.items():
            first = next(iter(by_id.values()))
            data = np.zeros((len(ids),) + first.shape, dtype=first.dtype)
            mask = np.zeros(len(ids), dtype=bool)
            for row, vid in enumerate(ids):
                if vid in by_id:
                    value = by_id[vid]
                    if value.shape != first.shape:
                        raise StoreError(f"/{path_}: video {vid} has shape {value.shape}, others {first.shape}")
                    data[row] = value
                    mask[row] = True
            ds = f.create_dataset(path_, data=data)
            for k, v in pending.attrs.get(path_, {}).items():
                ds.attrs[k] = v
            f.create_dataset(f"masks/{path_}", data=mask)
        for path_, (value, attrs) in pending.dataset_arrays.items():
            ds = f.create_dataset(path_, data=value, dtype=STR if value.dtype.kind in "OU" else value.dtype)
            for k, v in attrs.items():
                ds.attrs[k] = v
        for name, col in (("id", 0), ("stage", 1), ("message", 2)):
            values = [(fl.id, fl.stage, fl.message)[col] for fl in pending.failures]
            f.create_dataset(f"failures/{name}", data=np.array(values, dtype=object), dtype=STR)
        res = pending.resolved
        f.create_dataset("resolved/id", data=np.array([r[0] for r in res], dtype=object), dtype=STR)
        f.create_dataset("resolved/stage", data=np.array([r[1] for r in res], dtype=object), dtype=STR)


def _same_attr(a: Any, b: Any) -> bool:
    if isinstance(a, bytes):
        a = a.decode()
    if isinstance(b, bytes):
        b = b.decode()
    try:
        return bool(np.all(np.asarray(a) == np.asarray(b)))
    except Exception:
        return False


def _resizable(f: h5py.File, name: str, data: np.ndarray, dtype: Any) -> None:
    """(Re)create `name` as a dataset that can grow along the video axis."""
    if name in f:
        del f[name]
    f.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:], dtype=dtype, chunks=True)


def _complete_schema(dst: h5py.File) -> None:
    """Bring a hand-written or partial main file (a copy: the original is never touched) to the full
    schema before a merge: optional /videos fields get their documented defaults, arrays without a mask
    get one that says every row holds data (docs/store.md), fixed-size datasets become growable."""
    if "videos/id" not in dst:
        raise StoreError(f"{dst.filename} has no /videos/id: not an avvp store (schema: {SCHEMA_DOC})")
    ids = _read_str(dst["videos/id"])
    n = len(ids)
    if dst["videos/id"].maxshape[0] is not None:
        _resizable(dst, "videos/id", np.array(list(ids), dtype=object), STR)
    for name, default in VIDEO_DEFAULTS.items():
        path = f"videos/{name}"
        if path not in dst:
            if isinstance(default, str):
                _resizable(dst, path, np.array([default] * n, dtype=object), STR)
            else:
                _resizable(dst, path, np.full(n, default, dtype=np.float32 if isinstance(default, float) else bool),
                           np.float32 if isinstance(default, float) else bool)
        elif dst[path].maxshape[0] is not None:
            ds = dst[path]
            data = np.array(list(_read_str(ds)), dtype=object) if ds.dtype.kind == "O" else ds[()]
            _resizable(dst, path, data, ds.dtype)
    for name in ("id", "stage", "message"):
        if f"failures/{name}" not in dst:
            _resizable(dst, f"failures/{name}", np.array([], dtype=object), STR)
    for name in _list_arrays(dst, PER_VIDEO):
        ds = dst[name]
        if ds.maxshape[0] is not None:
            attrs = dict(ds.attrs)
            _resizable(dst, name, ds[()], ds.dtype)
            dst[name].attrs.update(attrs)
        if f"masks/{name}" not in dst:
            _resizable(dst, f"masks/{name}", np.ones(n, dtype=bool), bool)
    if "schema" not in dst.attrs:
        dst.attrs["schema"] = SCHEMA


def _merge_into(dst: h5py.File, src: h5py.File) -> None:
    """Upsert the shard `src` into the open store `dst`, keyed by video id (replaying it changes nothing)."""
    _complete_schema(dst)
    shard = _ShardVideos.read(src)
    rows = _append_new_videos(dst, shard)
    _write_video_fields(dst, shard, rows)
    for name in _list_arrays(src, PER_VIDEO):
        _upsert_rows(dst, src[name], src[f"masks/{name}"][()].astype(bool), rows)
    for name in _list_arrays(src, DATASET_LEVEL):
        if name not in DATASET_LEVEL_ARRAYS:  # the store's classes are fixed when it is created
            _replace_dataset_array(dst, src[name])
    _merge_failures(dst, src)


@dataclass
class _ShardVideos:
    """A shard's /videos rows; `has_meta[i]` is False for a row that only carries arrays of a known video."""

    ids: list[str]
    has_meta: np.ndarray
    fields: dict[str, np.ndarray]  # /videos column (all but id) -> values

    @classmethod
    def read(cls, src: h5py.File) -> "_ShardVideos":
        ids = list(_read_str(src["videos/id"]))
        has_meta = src["masks/videos"][()].astype(bool) if "masks/videos" in src else np.ones(len(ids), bool)
        fields = {n: src[f"videos/{n}"][()] for n in VIDEO_FIELDS if n != "id"}
        for n in ("source", "split"):
            fields[n] = _read_str(src[f"videos/{n}"])
        return cls(ids, has_meta, fields)


def _append_new_videos(dst: h5py.File, shard: _ShardVideos) -> np.ndarray:
    """Add the shard's unknown videos as new rows (zeros, masked out, in every per-video array); return
    the store row of each shard row. Rows for an unknown video without its metadata are an error."""
    index = {v: i for i, v in enumerate(_read_str(dst["videos/id"]))}
    n_old = len(index)
    orphans = [v for v, m in zip(shard.ids, shard.has_meta) if not m and v not in index]
    if orphans:
        raise StoreError(f"rows given for {len(orphans)} videos that are not in the store: {orphans[:10]}")
    new_ids = [v for v, m in zip(shard.ids, shard.has_meta) if m and v not in index]
    for v in new_ids:
        index[v] = len(index)
    n_new = len(index)
    if n_new != n_old:
        for name in VIDEO_FIELDS:
            dst[f"videos/{name}"].resize((n_new,))
        dst["videos/id"][n_old:n_new] = np.array(new_ids, dtype=object)
        for name in _list_arrays(dst, PER_VIDEO):
            for ds in (dst[name], dst[f"masks/{name}"]):
                ds.resize((n_new,) + ds.shape[1:])
                ds[n_old:n_new] = np.zeros((n_new - n_old,) + ds.shape[1:], dtype=ds.dtype)
    return np.array([index[v] for v in shard.ids], dtype=np.int64)


def _write_video_fields(dst: h5py.File, shard: _ShardVideos, rows: np.ndarray) -> None:
    """The shard's video metadata over the store's, for the rows that carry it."""
    meta_rows = rows[shard.has_meta]
    if not len(meta_rows):
        return
    # h5py fancy writes need increasing indices; rows are unique per shard
    order = np.argsort(meta_rows)
    for name, values in shard.fields.items():
        dst[f"videos/{name}"][meta_rows[order]] = np.asarray(values)[shard.has_meta][order]


def _upsert_rows(dst: h5py.File, sds: h5py.Dataset, smask: np.ndarray, rows: np.ndarray) -> None:
    """The shard array `sds`'s rows (those `smask` marks) into the store's array of the same name, created
    when absent; rows of an array that already holds data must be compatible (`_check_compatible`)."""
    name = sds.name.strip("/")
    if name not in dst:
        n = len(dst["videos/id"])
        chunks = (1,) + sds.shape[1:] if np.prod(sds.shape[1:]) * sds.dtype.itemsize > 4096 else None
        dst.create_dataset(name, shape=(n,) + sds.shape[1:], maxshape=(None,) + sds.shape[1:], dtype=sds.dtype,
                           chunks=chunks or True, fillvalue=0)
        dst.create_dataset(f"masks/{name}", shape=(n,), maxshape=(None,), dtype=bool, fillvalue=False)
        dst[name].attrs.update(sds.attrs)
    dds, dmask = dst[name], dst[f"masks/{name}"]
    holds_rows = bool(dmask[()].any())  # an array whose rows are all masked out holds nothing to mix with
    _check_compatible(name, (dds.shape[1:], dds.dtype, _identity(dds.attrs)),
                      (sds.shape[1:], sds.dtype, _identity(sds.attrs) if holds_rows else {}))
    dds.attrs.update(sds.attrs)
    target = rows[smask]
    if len(target):
        order = np.argsort(target)
        dds[target[order]] = sds[()][smask][order]
        mask_values = dmask[()]
        mask_values[target] = True
        dmask[...] = mask_values


def _replace_dataset_array(dst: h5py.File, sds: h5py.Dataset) -> None:
    """A dataset-level array (no video axis) of the shard replaces the store's."""
    name = sds.name.strip("/")
    if name in dst:
        del dst[name]
    dst.create_dataset(name, data=sds[()], dtype=sds.dtype).attrs.update(sds.attrs)


def _merge_failures(dst: h5py.File, src: h5py.File) -> None:
    """Failure rows: drop those superseded by the shard's successes (its resolved/ rows) or replaced by its
    new failures (same video and stage), then append the shard's."""
    old = list(zip(*(_read_str(dst[f"failures/{c}"]) for c in ("id", "stage", "message"))))
    new = list(zip(*(_read_str(src[f"failures/{c}"]) for c in ("id", "stage", "message"))))
    drop = set(zip(_read_str(src["resolved/id"]), _read_str(src["resolved/stage"]))) if "resolved/id" in src else set()
    drop |= {(a, b) for a, b, _ in new}
    kept = [row for row in old if row[:2] not in drop] + new
    for col, name in enumerate(("id", "stage", "message")):
        ds = dst[f"failures/{name}"]
        ds.resize((len(kept),))
        if kept:
            ds[...] = np.array([row[col] for row in kept], dtype=object)
