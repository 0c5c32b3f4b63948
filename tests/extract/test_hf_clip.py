"""A VALOR-style transformers CLIP folder (generated here, tiny) given to the `clip` backbone: converted to
open_clip on load, its features and zero-shot scores equal transformers' own `CLIPModel` outputs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from avvp.extract.backbones import BACKBONES, BackboneConfig, WeightsUnavailable, hf_clip
from avvp.extract.backbones.prompts import CLIP_PROMPTS

TINY = dict(projection_dim=32,
            text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                             max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu"),
            vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                               image_size=64, patch_size=16, hidden_act="quick_gelu"))


class Video:
    has_audio = False
    profile = "clean"

    def __init__(self, frames):
        self.frames = frames


@pytest.fixture(scope="module")
def hf_model():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(3)
    model = CLIPModel(CLIPConfig(**TINY)).eval()
    with torch.no_grad():  # HF initialises the projections small: give the outputs some spread
        model.logit_scale.fill_(4.6052)
    return model


@pytest.fixture(scope="module")
def layouts(hf_model, tmp_path_factory):
    """The same weights as a plain safetensors folder, a pytorch_model.bin folder and a hub-cache tree."""
    root = tmp_path_factory.mktemp("hfclip")
    plain = root / "clip-vit-tiny"
    hf_model.save_pretrained(plain)  # config.json + model.safetensors
    binary = root / "bin"
    binary.mkdir()
    shutil.copy(plain / "config.json", binary / "config.json")
    torch.save(hf_model.state_dict(), binary / "pytorch_model.bin")
    cache = root / "hub"
    snap = cache / "models--openai--clip-vit-large-patch14" / "snapshots" / "0123abcd"
    shutil.copytree(plain, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abcd")
    return {"plain": plain, "bin": binary, "cache_repo": snap.parent.parent, "cache_root": cache}


def hf_reference(hf_model, frames):
    """VALOR's calls: get_image_features -> / norm; logits_per_image with the open_clip token ids."""
    import open_clip
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().float().div(255)
    x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor(hf_clip_mean()).view(1, 3, 1, 1)
    std = torch.tensor(hf_clip_std()).view(1, 3, 1, 1)
    pixels = (x - mean) / std
    ids = open_clip.get_tokenizer("ViT-B-32")(list(CLIP_PROMPTS))
    with torch.no_grad():
        feats = hf_model.get_image_features(pixel_values=pixels)
        feats = getattr(feats, "pooler_output", feats)
        feats = feats / feats.norm(p=2, dim=-1, keepdim=True)
        logits = hf_model(input_ids=ids, pixel_values=pixels).logits_per_image
    return feats.numpy(), logits.numpy()


def hf_clip_mean():
    from avvp.extract.backbones.clip import OPENAI_MEAN

    return OPENAI_MEAN


def hf_clip_std():
    from avvp.extract.backbones.clip import OPENAI_STD

    return OPENAI_STD


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_hf_folder_gives_transformers_outputs(hf_model, layouts):
    frames = np.random.default_rng(0).integers(0, 256, (80, 48, 72, 3), dtype=np.uint8)
    ref_feats, ref_logits = hf_reference(hf_model, frames[[0, 9, 18, 26, 35, 44, 53, 61, 70, 79]])
    results = {}
    for name in ("plain", "bin", "cache_repo"):
        cls = BACKBONES.get("clip")
        opts = (("checkpoint", str(layouts[name])),)
        backbone = cls(BackboneConfig(options=opts, profile="clean"))
        assert cls.declared_outputs(opts)[0].shape == (10, 32)
        out = backbone.extract_batch([Video(frames)])[0]
        results[name] = out
        assert out["features/clip"].shape == (10, 32) and out["zeroshot/clip"].shape == (10, 25)
        assert rel(out["features/clip"], ref_feats) < 1e-5, name
        assert rel(out["zeroshot/clip"], ref_logits) < 1e-5, name
        assert backbone.weights_id().startswith("transformers:")
    assert "openai/clip-vit-large-patch14" in BACKBONES.get("clip")(
        BackboneConfig(options=(("checkpoint", str(layouts["cache_repo"])),))).weights_id()
    np.testing.assert_array_equal(results["plain"]["features/clip"], results["bin"]["features/clip"])


def test_weights_dir_checks_the_architecture(layouts):
    # found under --weights-dir for ViT-L-14/openai, but the tiny folder is not ViT-L-14: refused, naming the fix
    with pytest.raises(ValueError, match="clip.checkpoint="):
        BACKBONES.get("clip")(BackboneConfig(weights_dir=str(layouts["cache_root"])))


def test_missing_weights_names_the_transformers_folder(tmp_path):
    with pytest.raises(WeightsUnavailable, match="openai/clip-vit-large-patch14"):
        BACKBONES.get("clip")(BackboneConfig(weights_dir=str(tmp_path)))


def test_unused_tensor_is_an_error(hf_model):
    state = dict(hf_model.state_dict())
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="extra.weight"):
        hf_clip.hf_to_open_clip_state_dict(state)


def test_bad_checkpoint_option(tmp_path):
    with pytest.raises(ValueError, match="neither a transformers CLIP folder"):
        BACKBONES.get("clip")(BackboneConfig(options=(("checkpoint", str(tmp_path)),)))
