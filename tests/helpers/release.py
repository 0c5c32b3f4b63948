"""Stores that hold every array of the released layouts (LLP ids, extraction-like attributes), and the
official dataloaders' reading logic restated from their code, for the export/compare tests.

`read_avvp_llp_dataset` restates AVVP-ECCV20 `dataloader.py` `LLP_dataset.__getitem__`, and
`read_valor_llp_dataset` VALOR `dataloader_avvp.py` `LLP_dataset.__getitem__`: the CSV read with
pandas (tab-separated, header row), the file stem `row[0][:11]`, `np.load(<dir>/<stem>.npy)` per folder and
the label vector from `row[-1].split(',')` in the fixed 25-class order.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avvp.data import llp
from avvp.data.classes import LLP_CLASSES
from avvp.data.importer import AVVP_FEATS, VALOR_RELEASE
from avvp.data.store import StoreWriter, VideoRecord

ALL_RELEASED = AVVP_FEATS + VALOR_RELEASE


def released_like_store(path: Path, ids: list[str], *, seed: int = 0, attrs_override: dict | None = None) -> Path:
    """A store with every released array for `ids` (LLP filenames), values random, attributes as an
    extraction with pretrained weights and the reference profile writes them."""
    rng = np.random.default_rng(seed)
    weak = llp.read_weak_labels("full")
    with StoreWriter(path) as writer:
        for vid in ids:
            arrays, attrs = {}, {}
            for spec in ALL_RELEASED:
                if spec.dtype == "uint8":
                    arrays[spec.store_path] = (rng.random(spec.shape) < 0.2).astype(np.uint8)
                else:
                    arrays[spec.store_path] = rng.standard_normal(spec.shape).astype(np.float32)
                attrs[spec.store_path] = {"backbone": spec.backbone, "weights": f"pretrained:{spec.backbone}-test",
                                          "random_weights": False, "profile": "reference", "precision": "fp32",
                                          "layout": spec.layout, "axes": spec.axes, "avvp_version": "0.1.0",
                                          **(attrs_override or {}).get(spec.store_path, {})}
            arrays["labels/weak"] = weak.labels[weak.index_of(vid)]
            writer.add_video(VideoRecord(vid, split=llp.split_of(vid)), arrays, attrs)
    return path


def write_llp_csv(path: Path, ids: list[str]) -> Path:
    weak = llp.read_weak_labels("full")
    path.write_text("filename\tevent_labels\n" + "".join(f"{v}\t{','.join(c for c in LLP_CLASSES if c in weak.classes_of(v))}\n" for v in ids))
    return path


def _labels(ids: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(LLP_CLASSES)}
    y = np.zeros(len(LLP_CLASSES))
    for c in ids:
        y[index[c]] = 1
    return y


def read_avvp_llp_dataset(csv: Path, audio_dir: Path, video_dir: Path, st_dir: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_csv(csv, header=0, sep="\t")
    samples = []
    for idx in range(len(df["filename"])):
        row = df.loc[idx, :]
        name = row.iloc[0][:11]
        samples.append({
            "audio": np.load(os.path.join(audio_dir, name + ".npy")),
            "video_s": np.load(os.path.join(video_dir, name + ".npy")),
            "video_st": np.load(os.path.join(st_dir, name + ".npy")),
            "label": _labels(row.iloc[-1].split(",")),
        })
    return samples


def read_valor_llp_dataset(csv: Path, audio_dir: Path, res152_dir: Path, r2plus1d_18_dir: Path,
                           v_pseudo_data_dir: Path, a_pseudo_data_dir: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_csv(csv, header=0, sep="\t")
    samples = []
    for idx in range(len(df["filename"])):
        row = df.loc[idx, :]
        name = row.iloc[0][:11]
        sample = {
            "audio": np.load(os.path.join(audio_dir, name + ".npy")),
            "video_s": np.load(os.path.join(res152_dir, name + ".npy")),
            "video_st": np.load(os.path.join(r2plus1d_18_dir, name + ".npy")),
            "label": _labels(row.iloc[-1].split(",")),
            "video_name": row.iloc[0],
        }
        sample["audio_pseudo_labels"] = np.load(os.path.join(a_pseudo_data_dir, name + ".npy"))
        sample["visual_pseudo_labels"] = np.load(os.path.join(v_pseudo_data_dir, name + ".npy"))
        samples.append(sample)
    return samples
