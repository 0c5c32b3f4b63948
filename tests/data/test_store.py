"""The HDF5 store: schema, upserts, masks, failures, locking, and crash safety under a real SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from avvp.data.store import Store, StoreError, StoreWriter, VideoRecord

ATTRS = {"backbone": "toy", "weights": "random", "random_weights": True}


def _write(path: Path, ids, value_of=lambda i: i, name="features/toy", **kw):
    with StoreWriter(path, **kw) as w:
        for i, vid in enumerate(ids):
            w.add_video(VideoRecord(vid, split="train"), {name: np.full((10, 4), value_of(i), np.float32)}, {name: ATTRS})


def test_schema_and_roundtrip(tmp_path):
    p = tmp_path / "s.h5"
    with StoreWriter(p) as w:
        w.add_video(VideoRecord("a", source="dir/a.mp4", split="train", duration=9.5, has_audio=False),
                    {"features/toy": np.arange(40, dtype=np.float32).reshape(10, 4), "labels/weak": np.eye(25, dtype=np.uint8)[3]},
                    {"features/toy": ATTRS})
        w.add_video(VideoRecord("b", split="test"), {"labels/weak": np.eye(25, dtype=np.uint8)[5]})
        w.set_dataset_array("text/toy", np.ones((25, 8), np.float32), {"prompt": "x"})
    with h5py.File(p, "r") as f:  # the documented paths, read without our API
        assert list(f["videos/id"].asstr()[()]) == ["a", "b"]
        assert f["videos/duration"][0] == np.float32(9.5)
        assert not f["videos/has_audio"][0]
        assert f["features/toy"].shape == (2, 10, 4)
        assert f["labels/classes"].shape == (25,)
        assert f["features/toy"].attrs["random_weights"]
    with Store(p) as s:
        assert s.read("features/toy", ["a"])[0, 2, 1] == 9
        assert s.mask("features/toy").tolist() == [True, False]  # b has no toy feature
        assert s.read("labels/weak", ["b", "a"]).argmax(1).tolist() == [5, 3]
        assert s.split_ids("test").tolist() == ["b"]
        assert s.attrs("text/toy")["prompt"] == "x"
        assert s.videos()[0].source == "dir/a.mp4"


def test_upsert_never_duplicates(tmp_path):
    p = tmp_path / "s.h5"
    _write(p, ["a", "b", "c"], flush_every=1)
    _write(p, ["b", "d"], value_of=lambda i: 100 + i)
    with Store(p) as s:
        assert s.ids.tolist() == ["a", "b", "c", "d"]
        assert s.read("features/toy", ["a", "b", "d"])[:, 0, 0].tolist() == [0, 100, 101]


def test_new_array_on_existing_rows_and_set_rows(tmp_path):
    p = tmp_path / "s.h5"
    _write(p, ["a", "b"])
    with StoreWriter(p) as w:
        w.set_rows("pseudo/audio", ["b"], np.ones((1, 10, 25), np.uint8), {"rule": "valor"})
    with Store(p) as s:
        assert s.mask("pseudo/audio").tolist() == [False, True]
        assert s.read("pseudo/audio").sum() == 250
        assert s.attrs("pseudo/audio")["rule"] == "valor"
    with pytest.raises(StoreError, match="not in the store"):
        with StoreWriter(p) as w:
            w.set_rows("pseudo/audio", ["zzz"], np.ones((1, 10, 25), np.uint8))


def test_weights_never_mix_and_shapes_checked(tmp_path):
    p = tmp_path / "s.h5"
    _write(p, ["a"])
    with pytest.raises(StoreError, match="weights"):
        with StoreWriter(p) as w:
            w.add_video(VideoRecord("b"), {"features/toy": np.zeros((10, 4), np.float32)},
                        {"features/toy": {**ATTRS, "weights": "real", "random_weights": False}})
    with pytest.raises(StoreError, match="shape"):
        with StoreWriter(p) as w:
            w.add_video(VideoRecord("c"), {"features/toy": np.zeros((10, 5), np.float32)}, {"features/toy": ATTRS})
    with Store(p) as s:  # the failed commits left the store as it was
        assert s.ids.tolist() == ["a"]


def test_one_per_video_path_rule():
    """Every reader and writer asks `_array_kind`: which paths have one row per video, which are
    dataset-level, which are bookkeeping."""
    from avvp.data.store import BOOKKEEPING, DATASET_LEVEL, PER_VIDEO, _array_kind

    table = {"features/clip": PER_VIDEO, "zeroshot/clap": PER_VIDEO, "pseudo/eiou": PER_VIDEO, "gt/audio": PER_VIDEO,
             "labels/weak": PER_VIDEO, "/features/clip": PER_VIDEO, "text/clip": DATASET_LEVEL,
             "labels/classes": DATASET_LEVEL, "videos/id": BOOKKEEPING, "masks/features/clip": BOOKKEEPING,
             "failures/message": BOOKKEEPING, "resolved/id": BOOKKEEPING}
    assert {path: _array_kind(path) for path in table} == table


def test_reader_and_writer_follow_the_path_rule(tmp_path):
    p = tmp_path / "s.h5"
    with StoreWriter(p) as w:
        w.add_video(VideoRecord("a"), {"features/toy": np.zeros((10, 4), np.float32), "labels/weak": np.zeros(25, np.uint8)},
                    {"features/toy": ATTRS})
        w.set_dataset_array("text/toy", np.ones((25, 8), np.float32))
        for path in ("text/toy", "labels/classes", "masks/features/toy", "resolved/id"):
            with pytest.raises(StoreError, match="not a per-video array"):
                w.add_video(VideoRecord("b"), {path: np.zeros(3, np.float32)})
    with Store(p) as s:
        assert sorted(s.arrays()) == ["features/toy", "labels/classes", "labels/weak", "text/toy"]
        assert s.read("text/toy", ["a"]).shape == (25, 8)  # dataset-level: no rows to pick
    with h5py.File(p, "r") as f:  # masks exist for the per-video arrays only
        assert sorted(_datasets(f["masks"])) == ["features/toy", "labels/weak"]


def _datasets(group) -> list[str]:
    names = []
    group.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def test_merge_refuses_a_journaled_shard_with_the_writers_message(tmp_path):
    """A shard that reaches the journal with rows of other weights (here: journaled for another store) is
    refused by the merge with the same one-line reason the writer gives, set aside, and the store is kept."""
    main, other = tmp_path / "main.h5", tmp_path / "other.h5"
    _write(main, ["a"])
    real = {**ATTRS, "weights": "real", "random_weights": False}
    with pytest.raises(StoreError) as writer_err:
        with StoreWriter(main) as w:
            w.add_video(VideoRecord("b"), {"features/toy": np.zeros((10, 4), np.float32)}, {"features/toy": real})
    with StoreWriter(other, flush_every=1) as w:
        w.add_video(VideoRecord("b"), {"features/toy": np.zeros((10, 4), np.float32)}, {"features/toy": real})
        (shard,) = sorted(Path(str(other) + ".journal").glob("*.h5"))
        journal = Path(str(main) + ".journal")
        journal.mkdir()
        (journal / shard.name).write_bytes(shard.read_bytes())
    with pytest.raises(StoreError, match="could not merge journal shard") as merge_err:
        StoreWriter(main)
    expected = "/features/toy: store holds weights='random', new rows have weights='real'; write them to another store"
    assert str(writer_err.value).startswith(expected) and expected in str(merge_err.value)
    assert (journal / "rejected" / shard.name).exists()
    with Store(main) as s:
        assert s.ids.tolist() == ["a"] and s.attrs("features/toy")["weights"] == "random"
    with StoreWriter(main) as w:  # the refused writer released the lock
        w.add_video(VideoRecord("c"), {"features/toy": np.ones((10, 4), np.float32)}, {"features/toy": ATTRS})
    with Store(main) as s:
        assert s.ids.tolist() == ["a", "c"]


def test_failures_are_recorded_and_resolved(tmp_path):
    p = tmp_path / "s.h5"
    with StoreWriter(p) as w:
        w.add_failure("x", "decode", "no video stream")
        w.add_failure("y", "clip", "boom")
    with StoreWriter(p) as w:
        w.add_failure("y", "clip", "boom again")  # replaces, not duplicates
        w.add_video(VideoRecord("x"), {}, resolves=["decode"])
    with Store(p) as s:
        assert [(f.id, f.stage, f.message) for f in s.failures()] == [("y", "clip", "boom again")]


def test_single_writer_lock(tmp_path):
    p = tmp_path / "s.h5"
    with StoreWriter(p):
        with pytest.raises(StoreError, match="another process"):
            StoreWriter(p)


CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from avvp.data.store import StoreWriter, VideoRecord, Store
    path, n, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    done = set()
    try:
        with Store(path) as s:
            done = set(s.ids.tolist())
    except FileNotFoundError:
        pass
    w = StoreWriter(path, flush_every=1)
    for i in range(n):
        vid = f"v{i:04d}"
        if vid in done:
            continue
        w.add_video(VideoRecord(vid, split="train"), {"features/x": np.full((big,), i, np.float32)},
                    {"features/x": {"backbone": "x", "weights": "w", "random_weights": False}})
        if i % 10 == 9:
            print("MERGING", flush=True)
            w.commit()
    w.close()
    print("DONE", flush=True)
    """
)


@pytest.mark.parametrize("kill_after_merges", [1, 3])
def test_sigkill_mid_write_leaves_a_readable_store_that_completes(tmp_path, kill_after_merges):
    """Kill the writer while it is merging (the main file being rewritten) and check recovery."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    p = tmp_path / "s.h5"
    n, big = 60, 200_000  # 0.8 MB per row: merges take long enough to be killed inside
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(p), str(n), str(big)], stdout=subprocess.PIPE, text=True, env=env)
    merges = 0
    for line in proc.stdout:
        if line.startswith("MERGING"):
            merges += 1
            if merges == kill_after_merges:
                time.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # the main file opens (it is either the previous or the new version, never half-written)
    if p.exists():
        with Store(p) as s:
            before = s.ids.tolist()
            assert len(before) == len(set(before))
    # re-running completes the store: no duplicates, no loss, values intact
    out = subprocess.run([sys.executable, str(script), str(p), str(n), str(big)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    with Store(p) as s:
        ids = s.ids.tolist()
        assert ids == sorted(ids) and len(ids) == n
        x = s.read("features/x")
        assert np.array_equal(x[:, 0], np.arange(n, dtype=np.float32)) and np.array_equal(x[:, -1], x[:, 0])
    assert not Path(str(p) + ".journal").exists()


def _array_digest(path: Path) -> tuple[str, float]:
    """sha256 over the generated arrays of a store (features, zero-shot logits, ground truth, weak labels, label
    texts: name, dtype, shape, bytes; attributes and bookkeeping left out) and the sum of its float arrays."""
    import hashlib

    digest, total = hashlib.sha256(), 0.0

    def visit(name, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset) and name.split("/")[0] in ("features", "zeroshot", "gt", "labels", "text"):
            value = obj[()]
            arr = np.asarray(value)
            digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            digest.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
            if arr.dtype.kind == "f":
                total += float(np.nan_to_num(arr, nan=0.0).astype(np.float64).sum())

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return digest.hexdigest(), total


def test_synthetic_store_is_pinned(tmp_path):
    """The synthetic generator writes the same arrays for the same seed: refactors of where its parts live
    (the simulated teachers' VALOR thresholds) must not move a single bit."""
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs

    cfg = SyntheticConfig(num_train=6, num_val=2, num_test=2, features=("vggish", "clip", "clap"),
                          dims=(("clip", 16), ("clap", 16), ("vggish", 8)), seed=3)
    videos = generate_synthetic(tmp_path / "syn.h5", cfg, feature_specs(cfg.features))
    assert [v.id for v in videos][:2] == ["syn_000000", "syn_000001"]
    digest, total = _array_digest(tmp_path / "syn.h5")
    # pinned before the VALOR thresholds moved from pseudolabels/valor.py to data/valor_thresholds.py
    assert digest == "2a382c5cf10253064685153f0ba25d764ce51e09ccc9493152a5a98149cf3f76", (digest, total)
    assert total == pytest.approx(29913.299076223164, rel=1e-12)
