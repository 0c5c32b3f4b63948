"""avvp-info: what a store, an imported store and a checkpoint hold and how they were made."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from avvp.cli.info import main
from avvp.data import llp


def test_info_on_a_store_lists_arrays_rows_provenance_and_failures(tmp_path, capsys):
    from avvp.data.store import StoreWriter, VideoRecord

    store = tmp_path / "s.h5"
    attrs = {"backbone": "clip", "weights": "random", "random_weights": True, "random_seed": 7, "profile": "clean",
             "precision": "fp32", "layout": "segments", "model": "ViT-B-32"}
    with StoreWriter(store, classes=["Speech", "Dog"]) as w:
        w.add_video(VideoRecord("a", split="train"), {"features/clip": np.zeros((10, 4), np.float32)},
                    {"features/clip": attrs})
        w.add_video(VideoRecord("b", split="val"), {})
        w.add_failure("b", "clip", "decode: broken file")
    assert main([str(store)]) == 0
    out = capsys.readouterr().out
    assert "videos: 2 (train 1, val 1); classes: 2" in out
    assert "/features/clip  (2, 10, 4) float32, 1/2 rows" in out
    assert "backbone=clip; weights=random; random_weights=True; random_seed=7; profile=clean; precision=fp32" in out
    assert "model=ViT-B-32" in out
    assert "failures: 1 (clip 1)" in out and "b: clip: decode: broken file" in out


def test_info_on_an_imported_store_names_the_release(tmp_path, capsys):
    from avvp.data.importer import import_released

    vid = llp.split_ids("train")[0]
    (tmp_path / "feats" / "vggish").mkdir(parents=True)
    np.save(tmp_path / "feats" / "vggish" / f"{llp.ytid(vid)}.npy", np.ones((10, 128), np.float32))
    import_released(tmp_path / "data.h5", tmp_path / "feats")
    assert main([str(tmp_path / "data.h5"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "store" and d["videos"] == 1 and d["splits"] == {"train": 1}
    (vggish,) = [a for a in d["arrays"] if a["path"] == "features/vggish"]
    assert vggish["rows"] == 1 and vggish["attrs"]["weights"] == "released:avvp-feats"
    assert vggish["attrs"]["source"] == "avvp-feats" and vggish["attrs"]["layout"] == "segments"


def test_info_on_a_checkpoint_shows_model_selection_and_feature_provenance(tmp_path):
    from avvp.data.classes import LLP_CLASSES
    from avvp.models import build_model
    from avvp.models.base import InputDims
    from avvp.train.checkpoint import Checkpoint, FeatureProvenance

    dims = InputDims((10, 128), (10, 512), None)
    model = build_model("han", {"hidden": 8, "ff": 8}, dims)
    provenance = (
        FeatureProvenance("audio", "features/vggish", "vggish", "random", True, (("final_relu", False), ("random_seed", 0)),
                          "clean", "fp32", "segments"),
        FeatureProvenance("visual", "features/clip", "clip", "released:valor-release", False, (), "reference", "fp32",
                          "segments", release="valor-release"))
    path = tmp_path / "best.pt"
    Checkpoint("han", model.options_dict(), {"preset": "han", "data": {"store": "/data/train.h5"},
                                             "train": {"gate": "global"}},
               tuple(LLP_CLASSES), dims, model.state_dict(), provenance=provenance,
               selection={"epoch": 3, "val": {"segment": {"type": 61.25}}, "rule": ">="}, avvp_version="0.1.0").save(path)
    # the console script's module, as a user runs it (no torch.load, no h5py in sight)
    proc = subprocess.run([sys.executable, "-m", "avvp.cli.info", str(path), str(tmp_path / "nope.pt")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2  # the missing path; the checkpoint was still described
    assert proc.stderr.strip().splitlines() == [f"avvp-info: error: {tmp_path / 'nope.pt'}: {tmp_path / 'nope.pt'} does not exist"]
    out = proc.stdout
    assert "avvp checkpoint (version 2, written by avvp 0.1.0)" in out
    assert "model: han (preset han)" in out and f"{sum(p.numel() for p in model.parameters()):,} parameters" in out
    assert "selected: epoch 3 (rule '>='), val segment Type@AV 61.25" in out
    assert ("audio: features/vggish; backbone vggish; weights random; RANDOM weights; profile clean; precision fp32; "
            "layout segments; options final_relu=False, random_seed=0") in out
    assert "visual: features/clip; backbone clip; weights released:valor-release; release valor-release" in out
    assert "trained on store: /data/train.h5" in out
