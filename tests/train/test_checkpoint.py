"""The checkpoint (avvp.train.checkpoint): load(save(x)) == x for every registered model, safe loading,
the version-1 migration, and the trainer's best.pt / last.pt written in one shape with the store's provenance."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from avvp.data.classes import LLP_CLASSES
from avvp.models import MODELS, build_model
from avvp.models.base import InputDims
from avvp.train.checkpoint import (Checkpoint, CheckpointError, FeatureProvenance, feature_differences,
                                   load_weights_into, resume_state)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY = {"han": {"hidden": 8, "ff": 8}, "ma": {"hidden": 8, "ff": 8, "stage": 1}, "cvcms": {"hidden": 8, "ff": 8},
        "mmpyr": {"hidden": 8, "ffn": 8, "heads": 2, "levels": 2}, "leap": {"hidden": 8, "ffn": 8, "heads": 2},
        "link": {"hidden": 8, "ff": 8, "heads": 2, "layers": 1},
        "mmcse": {"hidden": 8, "token_dim": 8, "layers": 1, "heads": 2, "ff": 8}}
DIMS = InputDims((10, 12), (10, 12), (10, 8), text_dims=(("clap", 16), ("clip", 16)),
                 layouts=(("audio", "segments"), ("motion", "segments"), ("visual", "segments")))
PROVENANCE = (
    FeatureProvenance("audio", "features/vggish", "vggish", "random", True,
                      (("final_relu", False), ("postprocess", True), ("random_seed", 0)), "clean", "fp32", "segments"),
    FeatureProvenance("visual", "features/clip", "clip", "open_clip:ViT-B-32:openai", False,
                      (("model", "ViT-B-32"), ("pretrained", "openai"), ("quick_gelu", True)), "reference", "fp32",
                      "segments"),
    FeatureProvenance("motion", "features/r2plus1d", "r2plus1d", "released:avvp-feats", False, (), "reference", "fp32",
                      "segments", release="avvp-feats"),
    FeatureProvenance("text", "text/clip", "clip", "random", True, (), None, "fp32", None),
)


def _checkpoint(name: str, **changes) -> Checkpoint:
    torch.manual_seed(0)
    model = build_model(name, TINY.get(name, {}), DIMS)
    fields = dict(model_name=name, model_options=model.options_dict(),
                  config={"preset": name, "train": {"gate": "global"}, "optim": {"betas": [0.9, 0.999]}},
                  classes=tuple(LLP_CLASSES), input_dims=DIMS, state_dict=model.state_dict(), provenance=PROVENANCE,
                  label_text={"clip": torch.randn(25, 16)},
                  selection={"epoch": 3, "val": {"segment": {"type": np.float64(51.5)}}, "rule": ">="},
                  origin={"converted_from": {"source": name}}, avvp_version="0.1.0")
    fields.update(changes)
    return Checkpoint(**fields)


@pytest.mark.parametrize("name", MODELS.names())
def test_load_of_save_equals_the_checkpoint_for_every_registered_model(name, tmp_path):
    ckpt = _checkpoint(name)
    loaded = Checkpoint.load(ckpt.save(tmp_path / "c.pt"))
    assert loaded == ckpt
    assert loaded.features == {"audio": "vggish", "visual": "clip", "motion": "r2plus1d"}
    assert loaded.provenance == PROVENANCE and loaded.input_dims == DIMS and loaded.epoch == 3
    # equality looks at the tensors' values: one changed weight makes them differ
    key = next(iter(ckpt.state_dict))
    changed = {k: (v + 1 if k == key else v) for k, v in ckpt.state_dict.items()}
    assert ckpt.replace(state_dict=changed) != ckpt
    # the rebuilt model holds the weights
    rebuilt = loaded.build_model().state_dict()
    assert all(torch.equal(rebuilt[k], v) for k, v in ckpt.state_dict.items())


def test_resume_state_round_trips_and_loads_with_weights_only(tmp_path):
    from avvp.train.loop import rng_states, set_rng_states

    model = build_model("han", TINY["han"], DIMS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():  # a step fills the optimiser state (moments, step counts)
        p.grad = torch.ones_like(p)
    opt.step()
    np.random.seed(5)
    resume = {"optimizer": opt.state_dict(), "epoch": 2, "best": 40.5, "best_epoch": 1, "rng": rng_states()}
    ckpt = _checkpoint("han", resume=resume)
    path = ckpt.save(tmp_path / "last.pt")
    torch.load(path, weights_only=True)  # nothing but tensors and builtins
    assert Checkpoint.load(path) == ckpt
    state = resume_state(path)
    expected = np.random.random()
    np.random.seed(0)
    set_rng_states(state["rng"])
    assert np.random.random() == expected
    assert state["epoch"] == 2 and set(state["model"]) == set(ckpt.state_dict)
    with pytest.raises(CheckpointError, match="no resume state"):
        resume_state(_checkpoint("han").save(tmp_path / "best.pt"))


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_never_runs_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "avvp-checkpoint", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="needs code to load"):
        Checkpoint.load(path)
    with pytest.raises(CheckpointError, match="not an avvp checkpoint"):
        torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "plain.pt")
        Checkpoint.load(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="--init-from .*not an avvp checkpoint.*avvp-convert-checkpoint"):
        load_weights_into(build_model("han", TINY["han"], DIMS), "han", tmp_path / "plain.pt")


def _v1(store: str, model, **extra) -> dict:
    """A checkpoint as avvp-train wrote it before avvp.train.checkpoint (format version 1)."""
    return {"format": "avvp-checkpoint", "version": 1, "config": {"preset": "han", "data": {"store": store},
                                                                   "train": {"gate": "global"}},
            "model_name": "han", "model_options": model.options_dict(), "input_dims": dataclasses.asdict(DIMS),
            "features": {"audio": "vggish", "visual": "clip", "motion": "r2plus1d"}, "classes": list(LLP_CLASSES),
            "epoch": 4, "val": {"segment": {"type": np.float64(12.5)}},
            "model": {k: v.clone() for k, v in model.state_dict().items()}, **extra}


def test_version_1_checkpoints_migrate(tmp_path):
    from avvp.data.store import StoreWriter, VideoRecord

    store = tmp_path / "train.h5"
    attrs = {"backbone": "vggish", "weights": "random", "random_weights": True, "final_relu": False,
             "postprocess": False, "random_seed": 0, "profile": "clean", "precision": "fp32", "layout": "segments"}
    with StoreWriter(store, classes=LLP_CLASSES) as w:
        w.add_video(VideoRecord("v0", split="train"),
                    {"features/vggish": np.zeros((10, 12), np.float32), "features/clip": np.zeros((10, 12), np.float32),
                     "features/r2plus1d": np.zeros((10, 8), np.float32)},
                    {"features/vggish": attrs, "features/clip": {**attrs, "backbone": "clip", "model": "ViT-B-32"}})
    model = build_model("han", TINY["han"], DIMS)
    torch.save(_v1(str(store), model), tmp_path / "v1.pt")  # numpy scalars inside: only numpy data is allowed
    ckpt = Checkpoint.load(tmp_path / "v1.pt")
    assert ckpt.version == 2 and ckpt.epoch == 4 and ckpt.selection["val"]["segment"]["type"] == 12.5
    assert "read from the training store" in ckpt.origin["migrated_from"]
    audio = ckpt.provenance_of("audio")[0]
    assert audio.profile == "clean" and dict(audio.options) == {"final_relu": False, "postprocess": False, "random_seed": 0}
    assert dict(ckpt.provenance_of("visual")[0].options)["model"] == "ViT-B-32"
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in model.state_dict().items())

    store.unlink()  # the training store is gone: provenance unknown, and a parse says so
    orphan = Checkpoint.load(tmp_path / "v1.pt")
    assert not any(p.known for p in orphan.provenance) and "unknown" in orphan.origin["migrated_from"]
    assert all("unknown" in d for d in feature_differences(orphan, []))

    # a v1 last.pt was a plain dict (no format) with the numpy RNG state; --resume still reads it
    old_last = {"model": model.state_dict(), "optimizer": {}, "epoch": 4, "best": np.float64(1.0), "best_epoch": 2,
                "rng": {"numpy": np.random.get_state()}, "config": {}}
    torch.save(old_last, tmp_path / "last.pt")
    state = resume_state(tmp_path / "last.pt")
    assert state["epoch"] == 4 and state["rng"]["numpy"][0] == "MT19937"


def test_trainer_writes_best_and_last_in_one_shape_with_the_store_provenance(tmp_path):
    from avvp.train import preset
    from avvp.train.loop import Trainer
    from tests.helpers.stores import synthetic_store

    store = synthetic_store(tmp_path / "s.h5", features=("vggish", "clip"), dims=(("vggish", 8), ("clip", 8)),
                            num_train=8, num_val=4, num_test=4, pseudolabels=False)
    cfg = preset("han")
    cfg.data.store, cfg.data.audio, cfg.data.visual, cfg.data.motion = str(store), "vggish", "clip", None
    cfg.model.options = dict(TINY["han"])
    cfg.optim.epochs, cfg.train.out, cfg.train.progress = 1, str(tmp_path / "run"), False
    Trainer(cfg).fit()
    best, last = Checkpoint.load(tmp_path / "run" / "best.pt"), Checkpoint.load(tmp_path / "run" / "last.pt")
    assert best.resume is None and set(last.resume) == {"optimizer", "epoch", "best", "best_epoch", "rng"}
    assert last.without_resume() == best  # one epoch: the last is the best, written in the same shape
    audio = best.provenance_of("audio")[0]
    assert (audio.array, audio.backbone, audio.weights, audio.layout) == ("features/vggish", "vggish", "synthetic", "segments")
    assert set(best.label_text) == {n for n, _ in best.input_dims.text_dims}
