"""data.mmap=auto: in memory when the features fit in the memory available, else the on-disk reader, said
in one line and recorded in the run's config.yaml; true/false force either way."""
from __future__ import annotations

import logging

import pytest
import torch

from avvp.train import data as data_mod
from avvp.train.config import apply_override, load_config, preset
from avvp.train.data import H5Rows, TrainingData, choose_reader
from avvp.train.loop import Trainer
from tests.helpers.stores import synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("reader") / "s.h5", num_train=12, num_val=4, num_test=4)


def test_choose_reader_rule():
    gb = int(1e9)
    assert choose_reader(8 * gb, 20 * gb)[0] is False  # 8 × 1.15 + 1.5 = 10.7 ≤ 20
    mmap, line = choose_reader(8 * gb, 10 * gb)
    assert mmap is True and "do not fit" in line and "8.00 GB" in line and "\n" not in line
    assert choose_reader(8 * gb, None)[0] is False


def _data_cfg(store):
    cfg = preset("valor++").data
    cfg.store = str(store)
    return cfg


def test_auto_switches_to_disk_when_memory_is_short(store, monkeypatch, caplog):
    cfg = _data_cfg(store)
    assert cfg.mmap is None  # auto is the default
    monkeypatch.setattr(data_mod, "available_memory_bytes", lambda: int(1e9))  # < the 1.5 GB process margin
    with caplog.at_level(logging.INFO, logger="avvp.train.data"):
        disk = TrainingData(cfg, splits=("train",))
    assert cfg.mmap is True and isinstance(disk["train"].audio, H5Rows)
    lines = [r.getMessage() for r in caplog.records if "data.mmap=auto" in r.getMessage()]
    assert len(lines) == 1 and "on disk" in lines[0]

    cfg = _data_cfg(store)
    monkeypatch.setattr(data_mod, "available_memory_bytes", lambda: int(64e9))
    mem = TrainingData(cfg, splits=("train",))
    assert cfg.mmap is False and isinstance(mem["train"].audio, torch.Tensor)
    idx = torch.tensor([3, 0, 3, 7])
    assert torch.equal(disk["train"].batch(idx).visual, mem["train"].batch(idx).visual)


@pytest.mark.parametrize("forced", [True, False])
def test_true_false_force_either_way(store, monkeypatch, forced):
    monkeypatch.setattr(data_mod, "available_memory_bytes", lambda: 0 if not forced else int(64e9))
    cfg = _data_cfg(store)
    cfg.mmap = forced
    d = TrainingData(cfg, splits=("train",))
    assert isinstance(d["train"].audio, H5Rows) is forced and cfg.mmap is forced


def test_run_config_records_the_choice(store, monkeypatch, tmp_path):
    monkeypatch.setattr(data_mod, "available_memory_bytes", lambda: int(1e9))
    cfg = preset("valor++")
    cfg.data.store, cfg.train.out, cfg.optim.epochs, cfg.train.progress = str(store), str(tmp_path / "run"), 1, False
    cfg.optim.batch_size = 8
    cfg = apply_override(cfg, "data.mmap=auto")
    cfg.model.options.update({"hidden": 16, "ff": 16, "heads": 2})
    Trainer(cfg).fit()
    assert load_config(tmp_path / "run" / "config.yaml").data.mmap is True
    with pytest.raises(ValueError, match="data.mmap must be true, false or null"):
        apply_override(preset("han"), "data.mmap=sometimes").validate()
