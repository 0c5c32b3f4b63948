"""Store.read / read_rows: results in the order asked (repeats, missing ids, contiguous ranges, dtype) and
no full-size intermediate copy (a tracemalloc probe on a ~300 MB array)."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from avvp.data import store as store_mod
from avvp.data.store import SCHEMA, Store, StoreError, read_rows


def _store(path: Path, n: int, row_shape: tuple[int, ...], dtype=np.float32, block: int = 256) -> Path:
    """A store in the documented layout, written with h5py directly (fast for a big array): row r holds r
    everywhere except element [..., 0] = -r, so a mixed-up row or a mixed-up element shows."""
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = SCHEMA
        f.create_dataset("videos/id", data=np.array([f"v{i:05d}" for i in range(n)], dtype=object),
                         dtype=h5py.string_dtype())
        ds = f.create_dataset("features/big", shape=(n,) + row_shape, dtype=dtype)
        for a in range(0, n, block):
            b = min(n, a + block)
            rows = np.broadcast_to(np.arange(a, b, dtype=np.float64).reshape((-1,) + (1,) * len(row_shape)),
                                   (b - a,) + row_shape).astype(dtype)
            rows[(slice(None),) * len(row_shape) + (0,)] *= -1
            ds[a:b] = rows
    return path


def _expected(rows: np.ndarray, row_shape: tuple[int, ...]) -> np.ndarray:
    out = np.broadcast_to(rows.astype(np.float64).reshape((-1,) + (1,) * len(row_shape)), (len(rows),) + row_shape).copy()
    out[(slice(None),) * len(row_shape) + (0,)] *= -1
    return out


@pytest.fixture
def small(tmp_path):
    return _store(tmp_path / "s.h5", 300, (3, 5))


@pytest.mark.parametrize("block_bytes", [1 << 20, 200])  # 200 B: one or two rows a block, both scatter paths
def test_rows_in_the_order_asked_with_repeats(small, monkeypatch, block_bytes):
    monkeypatch.setattr(store_mod, "READ_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    cases = {
        "all in store order": np.arange(300),
        "contiguous split": np.arange(40, 260),
        "reversed": np.arange(299, -1, -1),
        "shuffled": rng.permutation(300),
        "repeats": np.array([5, 5, 7, 5, 299, 0, 7, 7]),
        "runs and strays": np.concatenate([np.arange(10, 50), [3, 290, 3], np.arange(100, 120), rng.integers(0, 300, 40)]),
        "sparse": np.array([1, 101, 201, 299, 150]),
        "sparse with runs": np.array([151, 2, 3, 1, 150, 299, 298, 2]),  # runs read as one slice each
        "one": np.array([17]),
    }
    with Store(small) as s:
        for name, rows in cases.items():
            got = s.read("features/big", [f"v{r:05d}" for r in rows])
            assert got.dtype == np.float32, name
            np.testing.assert_array_equal(got, _expected(rows, (3, 5)), err_msg=name)


def test_missing_ids_empty_dtype_and_whole_array(small):
    with Store(small) as s:
        with pytest.raises(StoreError, match=r"2 ids not in .*'nope', 'gone'"):
            s.read("features/big", ["v00001", "nope", "gone"])
        with pytest.raises(StoreError, match="no array /features/absent"):
            s.read("features/absent", ["v00001"])
        empty = s.read("features/big", [])
        assert empty.shape == (0, 3, 5) and empty.dtype == np.float32
        as64 = s.read("features/big", ["v00002", "v00001"], dtype=np.float64)
        assert as64.dtype == np.float64
        np.testing.assert_array_equal(as64, _expected(np.array([2, 1]), (3, 5)))
        np.testing.assert_array_equal(s.read("features/big"), _expected(np.arange(300), (3, 5)))


def test_float16_store_read_as_float32(tmp_path):
    p = _store(tmp_path / "h.h5", 50, (4,), dtype=np.float16)
    with Store(p) as s:
        got = s.read("features/big", [f"v{r:05d}" for r in (49, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3)], dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _expected(np.array([49, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3]), (4,)))
    with Store(p) as s:  # the sparse path converts too (rows far apart, one of them a run)
        sparse = s.read("features/big", ["v00040", "v00001", "v00002", "v00030"], dtype=np.float32)
    assert sparse.dtype == np.float32
    np.testing.assert_array_equal(sparse, _expected(np.array([40, 1, 2, 30]), (4,)))


def test_read_rows_out_of_range(small):
    with h5py.File(small, "r") as f:
        with pytest.raises(IndexError, match="outside 0..299"):
            read_rows(f["features/big"], np.array([0, 300]))


def test_no_full_size_copy(tmp_path):
    """Peak traced memory of a read ≤ its output + 15 % (the old code held the array three times)."""
    n, row_shape = 3000, (80, 320)  # 3000 × 100 KiB = 307 MB of float32
    p = _store(tmp_path / "big.h5", n, row_shape, block=200)
    rng = np.random.default_rng(1)
    order = {
        "a contiguous split": np.arange(200, 2800),
        "shuffled with repeats": np.concatenate([rng.permutation(n)[:2400], rng.integers(0, n, 300)]),
    }
    with Store(p) as s:
        for name, rows in order.items():
            ids = [f"v{r:05d}" for r in rows]
            tracemalloc.start()
            try:
                out = s.read("features/big", ids)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert out.nbytes > 250e6
            assert peak <= 1.15 * out.nbytes, f"{name}: peak {peak / 1e6:.0f} MB for {out.nbytes / 1e6:.0f} MB"
            check = rng.integers(0, len(rows), 64)
            np.testing.assert_array_equal(out[check], _expected(rows[check], row_shape), err_msg=name)
            del out
