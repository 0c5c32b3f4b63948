"""Every model's preset trains on a store made by `avvp-import` from the released features (official AVVP
feats + VALOR's CLIP/CLAP features and segment pseudo-labels: no text rows, no zero-shot logits, no
EIoU), with only size overrides to keep it fast; `--labels` is the one label setting; `--print-config`,
`--config` and `--init-from` (from a converted official checkpoint)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import reference_nets as ref
from avvp.cli.convert_checkpoint import main as convert_main
from avvp.cli.import_feats import main as import_main
from avvp.cli.train import main as train_main
from avvp.data import llp
from avvp.data.store import Store
from avvp.train.loop import load_model

SPLITS = {"train": 12, "val": 4, "test": 4}
SMALL = {  # sizes only: the preset's data, labels, losses and switches stay as they are
    "han": ["hidden=32", "ff=32"],
    "valor": ["hidden=32", "heads=2", "ff=32"], "valor+": ["hidden=32", "heads=2", "ff=32", "layers=1"],
    "valor++": ["hidden=32", "heads=2", "ff=32", "layers=1"],
    "mmpyr": ["hidden=32", "ffn=32", "heads=2", "levels=2"],
    "leap": ["hidden=32", "ffn=32", "heads=2", "mmpyr_levels=2"],
    "mmcse": ["hidden=32", "token_dim=16", "heads=2", "ff=32", "layers=1"],
    "cvcms": ["hidden=32", "ff=32", "occ_dim=8"],
    "link-release": ["hidden=32", "heads=2", "ff=32", "layers=1"],
    "ma": ["hidden=32", "ff=32"],
}


@pytest.fixture(scope="module")
def import_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(0)
    feats, valor = root / "feats", root / "valor"
    arrays = {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512)}
    valor_arrays = {"CLIP/features": (10, 768), "CLAP/features": (64, 768)}
    for sub in [*arrays, *valor_arrays, "CLIP/segment_pseudo_labels", "CLAP/segment_pseudo_labels"]:
        (feats / sub if sub in arrays else valor / sub).mkdir(parents=True)
    weak = llp.read_weak_labels("full")
    for split, n in SPLITS.items():
        for vid in llp.split_ids(split)[:n]:
            y = llp.ytid(vid)
            for sub, shape in arrays.items():
                np.save(feats / sub / f"{y}.npy", rng.standard_normal(shape).astype(np.float32))
            for sub, shape in valor_arrays.items():
                np.save(valor / sub / f"{y}.npy", rng.standard_normal(shape).astype(np.float32))
            label = weak.labels[weak.index_of(vid)].astype(np.int64)
            for sub in ("CLIP", "CLAP"):  # released pseudo-labels are masked by the video's weak labels
                seg = (rng.random((10, 25)) < 0.5).astype(np.int64) * label
                np.save(valor / sub / "segment_pseudo_labels" / f"{y}.npy", seg)
    out = root / "import.h5"
    assert import_main(["--feats", str(feats), "--valor", str(valor), "--out", str(out)]) == 0
    with Store(out) as s:
        arrays_in = set(s.arrays())
    assert not any(p.startswith(("text/", "zeroshot/")) for p in arrays_in) and "pseudo/eiou" not in arrays_in
    return out


def run(store, out, preset, *extra):
    args = ["--preset", preset, "--data", str(store), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--no-progress", "--device", "cpu", *extra]
    for assignment in SMALL[preset]:
        args += ["--set", f"model.options.{assignment}"]
    return train_main(args)


@pytest.mark.parametrize("preset", ["han", "valor", "valor+", "valor++", "mmpyr", "leap", "mmcse", "link-release"])
def test_every_preset_trains_on_an_import_store(import_store, tmp_path, preset, capsys):
    assert run(import_store, tmp_path / preset, preset) == 0, capsys.readouterr().err
    final = json.loads((tmp_path / preset / "metrics_final.json").read_text())
    assert set(final["test"]["segment"]) == {"audio", "visual", "audio_visual", "type", "event"}
    load_model(tmp_path / preset / "best.pt")


def test_ma_then_cvcms_presets_and_cvcms_on_weak_labels(import_store, tmp_path, capsys):
    # CVCMS with --labels weak needs no MA labels: the model has no label setting of its own
    assert run(import_store, tmp_path / "cvcms_weak", "cvcms", "--labels", "weak") == 0, capsys.readouterr().err
    written = yaml.safe_load((tmp_path / "cvcms_weak" / "config.yaml").read_text())
    assert written["data"]["labels"] == "weak" and "labels" not in written["model"]["options"]
    # the preset (refined labels) before MA has run: the trainer names the missing arrays and the fix
    assert run(import_store, tmp_path / "cvcms_early", "cvcms") == 2
    assert "refined_audio" in capsys.readouterr().err
    assert run(import_store, tmp_path / "ma", "ma") == 0, capsys.readouterr().err
    assert run(import_store, tmp_path / "cvcms", "cvcms") == 0, capsys.readouterr().err


def test_print_config_shows_the_preset_label_choice_and_config_feeds_back(tmp_path, capsys, import_store):
    assert train_main(["--preset", "cvcms", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["labels"] == "refined" and printed["model"]["name"] == "cvcms"
    assert train_main(["--preset", "cvcms", "--labels", "weak", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["labels"] == "weak"
    assert run(import_store, tmp_path / "a", "han") == 0
    assert train_main(["--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b"), "--print-config"]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    first = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert again == {**first, "train": {**first["train"], "out": str(tmp_path / "b")}}
    assert train_main(["--config", str(tmp_path / "a" / "config.yaml"), "--preset", "han", "--print-config"]) == 2


def test_init_from_a_converted_official_checkpoint(import_store, tmp_path, capsys):
    official = ref.random_state(ref.han_layout())
    torch.save(official, tmp_path / "MMIL_Net.pt")
    assert convert_main(["--from", "han", str(tmp_path / "MMIL_Net.pt"), "--out", str(tmp_path / "han.pt")]) == 0
    out = tmp_path / "ft"
    # lr 0: one epoch of "fine-tuning" leaves the converted weights untouched, so best.pt must hold them
    assert train_main(["--preset", "han", "--data", str(import_store), "--out", str(out), "--epochs", "1",
                       "--no-progress", "--device", "cpu", "--init-from", str(tmp_path / "han.pt"),
                       "--set", "optim.lr=0"]) == 0, capsys.readouterr().err
    model, ckpt = load_model(out / "best.pt")
    torch.testing.assert_close(model.head.fc_prob.weight, official["fc_prob.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.encoder.layers[0].cm_attn.in_proj_weight,
                               official["hat_encoder.layers.0.cm_attn.in_proj_weight"], rtol=0, atol=0)
    assert ckpt.config["train"]["init_from"] == str(tmp_path / "han.pt")
    # a checkpoint of another architecture or size is refused with the mismatch
    assert run(import_store, tmp_path / "bad", "han", "--init-from", str(tmp_path / "han.pt")) == 2
    assert "does not fit" in capsys.readouterr().err
