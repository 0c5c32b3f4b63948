"""A store written by someone else: a hand-made h5py file reads with the documented defaults, takes new rows
without losing its own, and another schema is refused in one line."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from avvp.data.store import Store, StoreError, StoreWriter, VideoRecord


def hand_written_store(path: Path, ids=("a", "b")) -> None:
    """What a user writes with plain h5py: fixed-size datasets, no masks, no schema, no optional fields."""
    with h5py.File(path, "w") as f:
        f.create_dataset("videos/id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("labels/weak", data=np.ones((len(ids), 25), np.uint8))
        f.create_dataset("features/vggish", data=np.arange(len(ids) * 20, dtype=np.float32).reshape(len(ids), 10, 2))


def test_partial_store_reads_with_documented_defaults(tmp_path):
    path = tmp_path / "hand.h5"
    hand_written_store(path)
    with Store(path) as s:
        assert s.video_field("has_audio").tolist() == [True, True]
        assert s.video_field("duration").tolist() == [10.0, 10.0]
        assert s.video_field("split").tolist() == ["", ""]
        assert s.mask("features/vggish").all()  # no /masks: every row holds data
        assert [v.has_audio for v in s.videos()] == [True, True]
        with pytest.raises(StoreError, match=r"lacks /zeroshot/clap, /pseudo/audio, needed by X \(schema: docs/store.md\)"):
            s.require(["labels/weak", "zeroshot/clap", "/pseudo/audio"], "by X")


def test_partial_store_takes_new_rows_without_losing_old_ones(tmp_path):
    path = tmp_path / "hand.h5"
    hand_written_store(path)
    with StoreWriter(path) as w:
        w.add_video(VideoRecord("c", split="test", has_audio=False), {"features/vggish": np.full((10, 2), 7, np.float32)},
                    {"features/vggish": {"backbone": "vggish"}})
    with Store(path) as s:
        assert list(s.ids) == ["a", "b", "c"]
        assert s.mask("features/vggish").tolist() == [True, True, True]
        np.testing.assert_array_equal(s.read("features/vggish", ["b"])[0], np.arange(20, 40, dtype=np.float32).reshape(10, 2))
        assert s.video_field("has_audio").tolist() == [True, True, False]
        assert s.video_field("split").tolist() == ["", "", "test"]
        assert s.failures() == []
    assert not Path(str(path) + ".journal").exists()  # merged, nothing set aside in rejected/


def test_other_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "other.h5"
    hand_written_store(path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema"] = "someone-else/3"
    with pytest.raises(StoreError, match=r"schema 'someone-else/3', this avvp reads 'avvp-store/1' \(schema: docs/store.md\)"):
        Store(path)
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(StoreError, match="not an avvp store"):
        with StoreWriter(tmp_path / "empty.h5") as w:
            w.add_failure("x", "decode", "m")
