"""Input profiles: recorded in the store, never mixed in one array, both reachable from CLI and API;
`network_inputs` is what extraction feeds the networks; `--dump-inputs`; ResNet-152 weight names."""
from __future__ import annotations


import numpy as np
import pytest

from tests.helpers.media import make_clip

from avvp.cli.extract import main  # noqa: E402
from avvp.data.store import Store  # noqa: E402
from avvp.extract import network_inputs  # noqa: E402
from avvp.pipeline.core import ExtractionConfig  # noqa: E402

ARGS = ["--backbone", "vggish", "--weights", "random", "--executor", "local", "--no-progress"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile_videos")
    make_clip(root / "a.mp4", seconds=10, sample_rate=48000, channels=2, audio_pattern="noise")
    make_clip(root / "b.mp4", seconds=10, fps="30000/1001", audio_pattern="noise")
    return root


def test_every_backbone_declares_one_recipe_per_profile_once():
    """A backbone's input recipes are declared once, on its class, for every profile; the weights describe
    the weights only (they used to carry a second, unread copy)."""
    from dataclasses import fields

    from avvp.extract.backbones import BACKBONES
    from avvp.extract.backbones.weights import InputRecipe, WeightsSpec
    from avvp.extract.decode import PROFILES

    assert "recipes" not in {f.name for f in fields(WeightsSpec)}
    for name in BACKBONES.names():
        recipes = BACKBONES.get(name).recipes
        assert set(recipes) == set(PROFILES), name
        assert all(isinstance(r, InputRecipe) and r.steps for r in recipes.values()), name


def test_store_records_the_profile_and_refuses_to_mix(videos, tmp_path, capsys):
    out = tmp_path / "data.h5"
    assert main(["--videos", str(videos), "--out", str(out), *ARGS]) == 0
    with Store(out) as s:
        attrs = s.attrs("features/vggish")
        assert attrs["profile"] == "reference" and "moviepy" in attrs["input_recipe"]
    # a clean-profile row into the same array is refused like other weights would be

    other = tmp_path / "more"
    make_clip(other / "c.mp4", seconds=10, audio_pattern="noise")
    capsys.readouterr()
    # avvp-extract ends a store refusal in one line and exit 2 (avvp.faults), the store untouched
    assert main(["--videos", str(other), "--out", str(out), "--profile", "clean", *ARGS]) == 2
    assert "profile='reference', new rows have profile='clean'" in capsys.readouterr().err
    with Store(out) as s:
        assert list(s.ids) == ["a", "b"]
    clean = tmp_path / "clean.h5"
    assert main(["--videos", str(videos), "--out", str(clean), "--profile", "clean", *ARGS]) == 0
    with Store(clean) as s, Store(out) as r:
        assert s.attrs("features/vggish")["profile"] == "clean"
        clean_feats, reference_feats = s.read("features/vggish"), r.read("features/vggish")
    assert not np.allclose(clean_feats, reference_feats)
    # the profiles differ in resampling only: every 1 s segment of every video moves, and only a little
    # (measured: cosine >= 0.9998 between the two embeddings of a segment)
    assert (clean_feats != reference_feats).any(axis=-1).all()
    cos = (clean_feats * reference_feats).sum(-1) / (np.linalg.norm(clean_feats, axis=-1) * np.linalg.norm(reference_feats, axis=-1))
    assert cos.min() > 0.99


def test_reference_rejects_clips_without_ten_vggish_examples(tmp_path):
    """As the official scripts (which assert (10, 96, 64)), a 3 s clip is a failure row, not padded."""
    make_clip(tmp_path / "v" / "short.mp4", seconds=3, audio_pattern="noise")
    out = tmp_path / "d.h5"
    assert main(["--videos", str(tmp_path / "v"), "--out", str(out), *ARGS]) == 3
    with Store(out) as s:
        (failure,) = s.failures()
        assert failure.stage == "vggish" and "3 examples" in failure.message and "skips such clips" in failure.message


def test_profiles_give_different_inputs_and_reference_is_the_default(videos):
    path = videos / "b.mp4"
    ref, clean = network_inputs(path, "vggish"), network_inputs(path, "vggish", profile="clean")
    assert np.array_equal(ref["log_mel"], network_inputs(path, "vggish", profile="reference")["log_mel"])
    assert np.abs(ref["log_mel"] - clean["log_mel"]).max() > 0.1
    tokens = network_inputs(path, "clap")
    assert tokens["clap_segments"].shape[1] > 48000  # whole-file librosa waveform: the AAC tail is kept
    assert network_inputs(path, "clap", profile="clean")["clap_segments"].shape == (10, 48000)


def test_network_inputs_are_what_the_networks_get(videos):
    """Random-weight VGGish and R(2+1)D on network_inputs reproduce the extracted features."""
    import torch

    from avvp.pipeline import extract
    from avvp.extract.backbones import BACKBONES

    path = str(videos / "a.mp4")
    cfg = ExtractionConfig(backbones=("vggish", "r2plus1d"), weights="random", device="cpu")
    feats = extract(path, ["vggish", "r2plus1d"], weights="random", device="cpu")
    vgg = BACKBONES.get("vggish")(cfg.backbone_config("vggish"))
    np.testing.assert_allclose(vgg.embed(network_inputs(path, "vggish")["log_mel"]), feats["features/vggish"],
                               rtol=1e-5, atol=1e-6)
    r2p = BACKBONES.get("r2plus1d")(cfg.backbone_config("r2plus1d"))
    with torch.inference_mode():
        got = r2p.load_model()(torch.from_numpy(network_inputs(path, "r2plus1d")["pixels"])).numpy()
    np.testing.assert_allclose(got, feats["features/r2plus1d"], rtol=1e-4, atol=1e-5)


def test_profile_mismatch_and_bad_combinations_are_errors(videos):
    from avvp.extract.backbones import BACKBONES
    from avvp.extract.decode import decode_video

    decoded = decode_video(videos / "a.mp4", profile="clean", video=False, audio_rates=(16000,))
    backbone = BACKBONES.get("vggish")(ExtractionConfig(weights="none").backbone_config("vggish"))
    with pytest.raises(ValueError, match="profile 'clean'"):
        backbone.network_inputs(decoded)
    with pytest.raises(ValueError, match="ffmpeg decoder"):
        ExtractionConfig(decoder="decord")
    with pytest.raises(ValueError, match="profile must be"):
        ExtractionConfig(profile="exact")
    with pytest.raises(RuntimeError, match="inputs only"):
        backbone.load_model()


def test_dump_inputs_writes_one_npz_per_video(videos, tmp_path):
    out = tmp_path / "inputs"
    rc = main(["--videos", str(videos), "--backbone", "vggish", "--backbone", "clap", "--dump-inputs", str(out),
               "--no-progress"])
    assert rc == 0
    files = sorted(p.name for p in out.glob("*.npz"))
    assert files == ["a.npz", "b.npz"]
    with np.load(out / "a.npz") as z:
        assert str(z["profile"]) == "reference"
        np.testing.assert_array_equal(z["vggish/log_mel"], network_inputs(videos / "a.mp4", "vggish")["log_mel"])
        assert z["clap/clap_tokens"].shape == (480000,)


def test_resnet152_accepts_the_pretrainedmodels_file_and_keys(tmp_path, capfd):
    import torch
    import torchvision

    from avvp.extract.backbones.base import BackboneConfig
    from avvp.extract.backbones.resnet152 import ResNet152Backbone

    torch.manual_seed(3)
    state = torchvision.models.resnet152(weights=None).state_dict()
    # what a pretrainedmodels model's state_dict() holds: fc renamed to last_linear
    renamed = {("last_linear." + k[3:] if k.startswith("fc.") else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "resnet152-b121ed2d.pth")
    backbone = ResNet152Backbone(BackboneConfig(weights="pretrained", weights_dir=str(tmp_path)))
    model = backbone.load_model()
    np.testing.assert_array_equal(model.conv1.weight.detach().numpy(), state["conv1.weight"].numpy())
    assert "resnet152-b121ed2d.pth" in backbone.weights_id()
