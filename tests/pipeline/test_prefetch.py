"""The local executor's prefetch thread and parallel decodes: the same store as the plain loop, in order,
errors delivered where they happen, and a bounded look-ahead."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.helpers.extraction import jobs_with_a_decode_failure

from avvp.data.store import Store
from avvp.pipeline.core import ExtractionConfig
from avvp.pipeline.local import prefetched, run_local


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return jobs_with_a_decode_failure(tmp_path_factory.mktemp("prefetch_videos"))


def store_contents(path) -> dict:
    with Store(path) as s:
        out = {"ids": list(s.ids), "failures": sorted((f.id, f.stage, f.message) for f in s.failures())}
        for name in s.arrays():
            out[name] = (s.read(name), s.mask(name) if s.per_video(name) else None, s.attrs(name))
    return out


def test_prefetch_and_parallel_decode_store_equals_plain_loop(clips, tmp_path):
    # (videos per batch, prefetch depth, parallel decodes); each compared with the plain loop of its batch size
    # (the batch size itself may move the last bits of a forward, so it is held fixed in each comparison)
    runs = [(1, 0, 1), (1, 1, 1), (1, 3, 1), (2, 0, 1), (2, 2, 2)]
    stores = {}
    for batch, depth, workers in runs:
        cfg = ExtractionConfig(backbones=("vggish",), weights="random", device="cpu", batch_videos=batch,
                               prefetch_batches=depth, decode_workers=workers)
        path = tmp_path / f"b{batch}p{depth}w{workers}.h5"
        summary = run_local(clips, cfg, str(path), progress=False)
        assert (summary.done, summary.failed) == (3, 1)
        stores[batch, depth, workers] = store_contents(path)
    for batch, depth, workers in runs:
        base, got = stores[batch, 0, 1], stores[batch, depth, workers]
        assert base["failures"] and base["failures"][0][0] == "zero"
        assert got["ids"] == base["ids"] and got["failures"] == base["failures"]
        assert set(got) == set(base)
        for name in base:
            if name in ("ids", "failures"):
                continue
            np.testing.assert_array_equal(got[name][0], base[name][0])
            if base[name][1] is not None:
                np.testing.assert_array_equal(got[name][1], base[name][1])


def test_prefetched_order_errors_and_bound():
    started, consumed = [], []
    lock = threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        time.sleep(0.01)
        return i * i

    ahead = 0
    for item, result, seconds in prefetched(list(range(12)), work, depth=2):
        assert result == item * item and seconds >= 0.0
        time.sleep(0.03)  # a slow consumer: the producer must wait for a free slot
        with lock:
            ahead = max(ahead, len(started) - len(consumed))
        consumed.append(item)
    assert consumed == list(range(12))
    # at most `depth` queued + one being computed ahead of the item being consumed (+1 for it)
    assert ahead <= 2 + 2

    def failing(i):
        if i == 3:
            raise ValueError("bad item 3")
        return i

    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        for item, _, _ in prefetched(list(range(6)), failing, depth=1):
            got.append(item)
    assert got == [0, 1, 2]  # everything before the failure is delivered, in order

    # leaving early stops the producer thread (no thread keeps decoding behind our back)
    before, n_started = threading.active_count(), len(started)
    for item, _, _ in prefetched(list(range(100)), work, depth=1):
        if item == 2:
            break
    time.sleep(0.05)
    assert threading.active_count() <= before
    assert len(started) - n_started <= 3 + 1 + 1  # items 0..2, one queued, one in progress: not all 100
