"""avvp-parse needs only the checkpoint: it rebuilds the backbones from the checkpoint's feature provenance
(weights random or pretrained, the options that change the numbers, profile, precision), so a parse gives
the same timeline after the training store is deleted; every way the features would differ stops it with
one line naming the difference and `--accept-feature-mismatch`, which the timeline then records."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.helpers.media import make_clip

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# non-default options on both backbones, the clean profile, random weights with a non-default seed
OPTIONS = (("clip", (("model", "ViT-B-32"), ("random_seed", 7))),
           ("vggish", (("final_relu", False), ("postprocess", True))))
SPLITS = ("train", "train", "val", "test")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny clips → avvp-extract (local executor, clean profile, random VGGish/CLIP with non-default
    options) → a 1-epoch tiny HAN. Returns the paths and the store's test-clip features."""
    from avvp.data.store import Store, StoreWriter
    from avvp.pipeline.core import ExtractionConfig
    from avvp.pipeline.jobs import VideoJob
    from avvp.pipeline.local import run_local
    from avvp.train import preset, train

    root = tmp_path_factory.mktemp("provenance")
    clips = [make_clip(root / f"c{i}.mp4", seconds=3, size=(64, 48), fps=8) for i in range(len(SPLITS))]
    weak = np.zeros(25, np.uint8)
    weak[0] = 1
    jobs = [VideoJob(id=f"c{i}", path=str(p), split=s, weak=weak) for i, (p, s) in enumerate(zip(clips, SPLITS))]
    store = root / "train.h5"
    extraction = ExtractionConfig(backbones=("vggish", "clip"), weights="random", device="cpu", profile="clean",
                                  backbone_options=OPTIONS)
    run_local(jobs, extraction, str(store), progress=False)
    ids = [j.id for j in jobs]
    truth = np.zeros((len(ids), 10, 25), np.uint8)
    truth[:, :3, 0] = 1
    with StoreWriter(store) as w:
        w.set_rows("gt/audio", ids, truth)
        w.set_rows("gt/visual", ids, truth)
    with Store(store) as s:
        test_features = {n: s.read(f"features/{n}", ["c3"])[0] for n in ("vggish", "clip")}
    cfg = preset("han")
    cfg.data.store, cfg.data.audio, cfg.data.visual, cfg.data.motion = str(store), "vggish", "clip", None
    cfg.model.options = {"hidden": 8, "ff": 8}
    cfg.optim.epochs, cfg.optim.batch_size = 1, 2
    cfg.train.out, cfg.train.progress, cfg.train.device = str(root / "run"), False, "cpu"
    train(cfg)
    return {"root": root, "store": store, "checkpoint": root / "run" / "best.pt", "video": clips[3],
            "test_features": test_features}


def _parse(trained, out, **changes):
    from avvp.parse.run import ParseConfig, parse_videos

    cfg = ParseConfig(checkpoint=str(trained["checkpoint"]), out=str(out), device="cpu", thumbnails=False, **changes)
    (result,) = parse_videos([str(trained["video"])], cfg)
    return json.loads(result.json_path.read_text())


@pytest.mark.slow
def test_checkpoint_parses_identically_after_its_training_store_is_deleted(trained):
    from avvp.parse.run import ParseConfig, _features_for_window, load_parser, parse_video
    from avvp.train.checkpoint import Checkpoint

    ckpt = Checkpoint.load(trained["checkpoint"])
    audio, visual = ckpt.provenance_of("audio")[0], ckpt.provenance_of("visual")[0]
    assert dict(audio.options) == {"final_relu": False, "postprocess": True, "random_seed": 0}
    assert dict(visual.options) == {"model": "ViT-B-32", "pretrained": "openai", "quick_gelu": True, "random_seed": 7}
    assert audio.profile == visual.profile == "clean" and audio.random_weights and visual.weights == "random"

    # the parse computes exactly the features the model was trained on (the store's row of the clip)
    cfg = ParseConfig(checkpoint=str(trained["checkpoint"]), out=str(trained["root"] / "before"), device="cpu",
                      thumbnails=False)
    parser = load_parser(cfg)
    assert parser.accepted == [] and parser.extraction.profile == "clean"
    arrays, _ = _features_for_window(parser, str(trained["video"]), 0.0)
    for name, stored in trained["test_features"].items():
        np.testing.assert_array_equal(arrays[f"features/{name}"], stored)
    before = json.loads(parse_video(parser, str(trained["video"]), cfg).json_path.read_text())

    trained["store"].unlink()
    after = _parse(trained, trained["root"] / "after")
    assert after == before
    assert after["meta"]["profile"] == "clean" and after["meta"]["feature_mismatch_accepted"] == []
    assert after["meta"]["backbone_options"]["clip"]["model"] == "ViT-B-32"
    assert {p["role"]: p["profile"] for p in after["meta"]["provenance"] if p["role"] != "text"} == \
        {"audio": "clean", "visual": "clean"}


# ------------------------------------------------------------------ one test per class of difference
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A tiny HAN checkpoint whose provenance is what the backbones of `trained` record (computed from the
    attributes they write, `Backbone.store_attrs`, without running them): no extraction, no training."""
    from avvp.data.classes import LLP_CLASSES
    from avvp.models import build_model
    from avvp.models.base import InputDims
    from avvp.pipeline.core import ExtractionConfig, load_backbones
    from avvp.train.checkpoint import Checkpoint, provenance_from_attrs

    backbones = load_backbones(ExtractionConfig(backbones=("vggish", "clip"), weights="random", device="cpu",
                                                profile="clean", backbone_options=OPTIONS))
    attrs = {s.path: b.store_attrs(s) for b in backbones for s in b.outputs()}
    provenance = (provenance_from_attrs("audio", "features/vggish", attrs["features/vggish"]),
                  provenance_from_attrs("visual", "features/clip", attrs["features/clip"]))
    dims = InputDims((10, 128), (10, 512), None)
    model = build_model("han", {"hidden": 8, "ff": 8}, dims)
    path = tmp_path_factory.mktemp("recorded") / "best.pt"
    Checkpoint("han", model.options_dict(), {"preset": "han"}, tuple(LLP_CLASSES), dims, model.state_dict(),
               provenance=provenance).save(path)
    return {"checkpoint": path}


def _mismatch(ckpt, **changes) -> str:
    from avvp.parse.run import FeatureMismatch, ParseConfig, load_parser

    with pytest.raises(FeatureMismatch) as info:
        load_parser(ParseConfig(checkpoint=str(ckpt["checkpoint"]), device="cpu", **changes))
    message = str(info.value)
    assert "\n" not in message and "--accept-feature-mismatch" in message
    return message


def _with_provenance(ckpt, tmp_path, **by_role):
    """A copy of the checkpoint whose provenance of the given roles is changed."""
    from avvp.train.checkpoint import Checkpoint

    loaded = Checkpoint.load(ckpt["checkpoint"])
    provenance = tuple(dataclasses.replace(p, **by_role[p.role]) if p.role in by_role else p for p in loaded.provenance)
    path = tmp_path / "changed.pt"
    loaded.replace(provenance=provenance).save(path)
    return {"checkpoint": path}


def test_the_recorded_settings_parse_without_difference(recorded):
    from avvp.parse.run import ParseConfig, load_parser

    parser = load_parser(ParseConfig(checkpoint=str(recorded["checkpoint"]), device="cpu"))
    assert parser.accepted == []
    ex = parser.extraction
    assert (ex.weights, ex.profile, ex.precision) == ("random", "clean", "fp32")
    assert dict(ex.backbone_options) == {"clip": (("model", "ViT-B-32"), ("pretrained", "openai"), ("quick_gelu", True),
                                                  ("random_seed", 7)),
                                         "vggish": (("final_relu", False), ("postprocess", True), ("random_seed", 0))}


def test_profile_mismatch_stops_with_one_line(recorded):
    message = _mismatch(recorded, profile="reference")
    assert "audio (features/vggish): profile 'reference', trained on 'clean'" in message


def test_option_mismatch_stops_with_one_line(recorded):
    message = _mismatch(recorded, backbone_options=(("vggish", (("final_relu", True),)),))
    assert "option vggish.final_relu=True, trained with False" in message
    assert "clip" not in message  # only the differing backbone is named


def test_random_seed_is_an_option_that_changes_the_numbers(recorded):
    assert "option clip.random_seed=0, trained with 7" in _mismatch(recorded, backbone_options=(("clip", (("random_seed", 0),)),))


def test_precision_mismatch_stops_with_one_line(recorded):
    message = _mismatch(recorded, precision="bf16")
    assert "precision 'bf16', trained on 'fp32'" in message


def test_random_vs_pretrained_mismatch_stops_with_one_line(recorded, tmp_path):
    # a model trained on pretrained VGGish features cannot be parsed with random VGGish weights unnoticed
    changed = _with_provenance(recorded, tmp_path, audio={"random_weights": False, "weights": "torchvggish:vggish-10086976",
                                                          "options": (("final_relu", False), ("postprocess", True))})
    message = _mismatch(changed, weights="random")
    assert "audio (features/vggish): weights random, trained on pretrained (torchvggish:vggish-10086976)" in message


def test_weights_id_mismatch_stops_with_one_line(recorded, tmp_path):
    """Pretrained on both sides, other weights files: torchaudio's VGGish port instead of torchvggish's."""
    from avvp.extract.backbones.clip import open_clip_weights_spec

    clip_spec = open_clip_weights_spec("ViT-B-32", "openai")
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / "vggish.pt").write_bytes(b"x")  # resolved only: the parse stops before any network is built
    (weights_dir / clip_spec.filename).write_bytes(b"x")
    changed = _with_provenance(
        recorded, tmp_path,
        audio={"random_weights": False, "weights": "torchvggish:vggish-10086976", "options": (("final_relu", False),)},
        visual={"random_weights": False, "weights": clip_spec.weights_name,
                "options": (("model", "ViT-B-32"), ("pretrained", "openai"), ("quick_gelu", True))})
    message = _mismatch(changed, weights_dir=str(weights_dir), backbone_options=(("vggish", (("postprocess", False),)),))
    assert "audio (features/vggish): weights 'torchaudio:vggish', trained on 'torchvggish:vggish-10086976'" in message
    assert "visual" not in message  # the CLIP weights id agrees


def test_standardized_features_stop_until_folded(recorded, tmp_path):
    changed = _with_provenance(recorded, tmp_path, visual={"standardized": "z-score per dim, train split"})
    assert "trained on transformed features (z-score per dim, train split)" in _mismatch(changed)


@pytest.mark.slow  # a real parse (CLIP ViT-B-32 built): ~10 s idle, ~30 s on a busy 2-core machine
def test_cli_names_the_flag_and_records_an_accepted_mismatch(recorded, tmp_path, capsys):
    from avvp.cli.parse import main

    video = make_clip(tmp_path / "v.mp4", seconds=2, size=(64, 48), fps=8)
    argv = [str(video), "--checkpoint", str(recorded["checkpoint"]), "--out", str(tmp_path / "out"), "--device", "cpu",
            "--no-thumbnails", "--backbone-opt", "vggish.final_relu=true"]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("avvp-parse: error")]
    assert len(errors) == 1 and "option vggish.final_relu=True, trained with False" in errors[0]
    assert "--accept-feature-mismatch" in errors[0] and not (tmp_path / "out").exists()
    assert main(argv + ["--accept-feature-mismatch"]) == 0
    d = json.loads((tmp_path / "out" / "v.timeline.json").read_text())
    assert d["meta"]["profile"] == "clean" and d["meta"]["backbone_options"]["vggish"]["final_relu"] is True
    assert d["meta"]["feature_mismatch_accepted"] == ["audio (features/vggish): option vggish.final_relu=True, "
                                                      "trained with False"]


def test_released_features_parse_with_the_release_recipe():
    """A checkpoint trained on imported release arrays (e.g. converted from an official one) parses with the
    reference profile, pretrained weights, default options and fp32; other settings are differences."""
    from avvp.models.base import InputDims
    from avvp.pipeline.core import ExtractionConfig, load_backbones
    from avvp.train.checkpoint import Checkpoint, extraction_plan, feature_differences, released_provenance

    features = {"audio": "vggish", "visual": "resnet152", "motion": "r2plus1d"}
    ckpt = Checkpoint("han", {}, {}, ("x",), InputDims((10, 128), (80, 2048), (10, 512)), {},
                      provenance=released_provenance(features))
    assert {p.release for p in ckpt.provenance} == {"avvp-feats"}
    plan = extraction_plan(ckpt)
    assert (plan.weights, plan.profile, plan.precision, plan.options) == ("pretrained", "reference", "fp32", ())
    assert plan.backbones == ("vggish", "resnet152", "r2plus1d")
    random = load_backbones(ExtractionConfig(backbones=plan.backbones, weights="random", device="cpu",
                                             backbone_options=(("vggish", (("final_relu", False),)),)))
    diffs = feature_differences(ckpt, random)
    assert "audio (features/vggish): weights random, trained on the avvp-feats release (pretrained)" in diffs
    assert "audio (features/vggish): option vggish.final_relu=False, the avvp-feats release used True" in diffs
    assert not [d for d in diffs if "profile" in d or "precision" in d]
