"""The visual backbones `resnet152`, `r2plus1d`, `clip` and the shared weights helpers.

Inputs are built here as numpy arrays (no decoding). Networks are random-initialised (pretrained
weights cannot be downloaded here); the weights-loading path is tested with checkpoints the tests save
themselves under the canonical file names. CLIP runs as ViT-B-32 (ViT-L-14 is ~2 s/image on CPU).
Preprocessing is compared with the reference's own code path (PIL + torchvision transforms).
"""
from __future__ import annotations

import dataclasses
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

from avvp.data.classes import LLP_CLASSES
from avvp.data.layouts import layout_by_length
from avvp.extract.backbones import feature_specs
from avvp.extract.backbones.base import BACKBONES, BackboneConfig, WeightsUnavailable, options_from_pairs
from avvp.extract.backbones.clip import ClipBackbone, segment_frame_indices
from avvp.extract.backbones.prompts import CLAP_LABELS, CLAP_TEXTS, CLIP_PROMPTS
from avvp.extract.backbones.r2plus1d import R2Plus1DBackbone
from avvp.extract.backbones.frames import frames_to_nchw, normalize_on_device, resize_like_pil
from avvp.extract.backbones.resnet152 import ResNet152Backbone
from avvp.extract.backbones.weights import resolve_weights_file


@dataclasses.dataclass
class ArrayVideo:
    """A minimal VideoInput: 80 RGB frames, no audio."""

    frames: np.ndarray
    audio_16k: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(160000, np.float32))
    audio_48k: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(480000, np.float32))
    has_audio: bool = False


def make_frames(height: int, width: int, seed: int, n: int = 80) -> np.ndarray:
    """Moving sinusoidal gratings plus noise: every frame differs, content is image-like."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float32)[:, None, None, None]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c = np.arange(3, dtype=np.float32)
    wave = np.sin(xx[None, :, :, None] / (3 + seed) + t / 4 + c) * np.cos(yy[None, :, :, None] / 5 - t / 7)
    noise = rng.normal(0, 18, (n, height, width, 3))
    return np.clip(128 + 100 * wave + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def videos():
    v1 = ArrayVideo(make_frames(48, 64, seed=1))  # 64x48 (W x H)
    v2 = ArrayVideo(make_frames(60, 80, seed=2))  # a different size in the same batch
    return v1, v2


@pytest.fixture(scope="module")
def resnet_random():
    # batch_frames 48: the 80 frames of a video are split across forwards
    return ResNet152Backbone(BackboneConfig(weights="random").with_options(batch_frames=48))


@pytest.fixture(scope="module")
def r2p_random():
    # batch_frames 24 = 3 clips per forward: chunks straddle the 10-clip video boundaries
    return R2Plus1DBackbone(BackboneConfig(weights="random").with_options(batch_frames=24))


@pytest.fixture(scope="module")
def clip_b32():
    # seed 7 (not the default 0) so the weights-dir test can tell "loaded" from "same random init"
    return ClipBackbone(BackboneConfig(weights="random").with_options(model="ViT-B-32", random_seed=7, batch_frames=8))


def assert_close(got, want, rel=1e-5):
    """|got - want| <= rel * max(1, max |want|): random-init ResNets output values ~1e8, so a fixed
    absolute tolerance would be meaningless for them."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err, scale = np.abs(got - want).max(), max(1.0, np.abs(want).max())
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel:g} x {scale:.3g}"


@pytest.fixture
def offline_empty_caches(tmp_path, monkeypatch):
    """Standard caches pointed at empty directories, downloads not allowed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("AVVP_ONLINE", raising=False)
    return tmp_path


# ------------------------------------------------------------------------------------------------
# constants


def test_prompts_are_valors_verbatim_in_class_order():
    assert len(CLIP_PROMPTS) == len(CLAP_LABELS) == len(CLAP_TEXTS) == len(LLP_CLASSES) == 25
    assert CLIP_PROMPTS[0] == "A photo of people talking."
    assert CLIP_PROMPTS[12] == "A photo of a chicken or a rooster."
    assert CLIP_PROMPTS[14] == "A photo of a vaccum cleaner."  # (sic)
    assert CLIP_PROMPTS[20] == "A photo of a acoustic guiter."  # (sic)
    assert CLIP_PROMPTS[24] == "A photo of hands clapping."
    assert CLAP_TEXTS[0] == "This is a sound of speech"
    assert CLAP_TEXTS[5] == "This is a sound of frying (food)"
    assert CLAP_TEXTS[12] == "This is a sound of chicken, rooster"
    assert CLAP_TEXTS[22] == "This is a sound of baby cry, infant cry"
    # each CLAP label is the LLP class name with underscores as spaces (modulo VALOR's punctuation)
    for label, cls in zip(CLAP_LABELS, LLP_CLASSES):
        assert re.sub(r"[(),]", "", label).replace(" ", "_") == re.sub(r"[()]", "", cls)


def test_clip_frame_indices_are_valors():
    assert segment_frame_indices().tolist() == [0, 9, 18, 26, 35, 44, 53, 61, 70, 79]


# ------------------------------------------------------------------------------------------------
# preprocessing against the reference's PIL / torchvision code path


@pytest.mark.parametrize("src_hw,dst_hw", [
    ((360, 640), (256, 455)), ((240, 320), (256, 341)), ((720, 1280), (256, 455)),  # ResNet Resize(256)
    ((360, 640), (112, 112)), ((240, 320), (112, 112)),  # R(2+1)D squash
    ((48, 64), (256, 341)), ((48, 64), (112, 112)),  # upscaling (the tiny test frames)
])
def test_torch_uint8_resize_matches_pil_bilinear(src_hw, dst_hw):
    """Measured: max |torch − PIL| = 1 grey level; ≤0.4 % of pixels differ when downscaling real
    sizes, ≤5 % when upscaling tiny frames (PIL rounds its intermediate horizontal pass)."""
    frames = make_frames(*src_hw, seed=3, n=4)
    ours = resize_like_pil(frames_to_nchw(frames), dst_hw).permute(0, 2, 3, 1).numpy().astype(int)
    pil = np.stack([np.asarray(Image.fromarray(f).resize(dst_hw[::-1], Image.BILINEAR)) for f in frames]).astype(int)
    diff = np.abs(ours - pil)
    upscale = src_hw[0] < dst_hw[0]
    assert diff.max() <= 1, f"max |diff| {diff.max()}"
    assert (diff > 0).mean() <= (0.05 if upscale else 0.005), f"fraction differing {(diff > 0).mean():.4f}"


@pytest.mark.parametrize("hw", [(240, 320), (48, 64), (64, 48), (360, 640)])
def test_resnet_preprocess_matches_torchvision_pil_pipeline(resnet_random, hw):
    frames = make_frames(*hw, seed=4, n=3)
    ours = resnet_random.preprocess(frames).permute(0, 2, 3, 1).numpy().astype(int)
    ref_tf = T.Compose([T.Resize(256), T.CenterCrop(224)])  # pretrainedmodels' TransformImage geometry
    ref = np.stack([np.asarray(ref_tf(Image.fromarray(f))) for f in frames]).astype(int)
    assert ours.shape == ref.shape == (3, 224, 224, 3)
    assert np.abs(ours - ref).max() <= 1


def test_r2plus1d_preprocess_is_squash_112_in_clips_of_8(r2p_random, videos):
    frames = videos[1].frames
    clips = r2p_random.preprocess(frames)
    assert tuple(clips.shape) == (10, 3, 8, 112, 112) and clips.dtype == torch.uint8
    ref = np.stack([np.asarray(Image.fromarray(f).resize((112, 112), Image.BILINEAR)) for f in frames])
    ours = clips.permute(0, 2, 3, 4, 1).reshape(80, 112, 112, 3).numpy()  # clip k, time t = frame 8k+t
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("hw", [(240, 320), (48, 64)])
def test_clip_preprocess_matches_valor_transform(clip_b32, hw):
    frames = make_frames(*hw, seed=5)
    ours = clip_b32.preprocess(frames[segment_frame_indices()]).numpy()
    # VALOR: ToTensor → Resize((224, 224)) on the float tensor (torchvision 0.13: antialias off) → Normalize
    ref_tf = T.Compose([T.ToTensor(), T.Resize((224, 224), antialias=False),
                        T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    ref = torch.stack([ref_tf(Image.fromarray(frames[i])) for i in segment_frame_indices()]).numpy()
    assert ours.shape == ref.shape == (10, 3, 224, 224)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------
# outputs: shapes, dtypes, attributes, batching


def _check_outputs(backbone, result):
    specs = {s.path: s for s in backbone.outputs()}
    assert set(result) == set(specs)
    # the class-level declarations (read without building, e.g. by feature_specs and avvp-parse) are what
    # extract_batch produces: a wrong declared shape fails here
    declared = type(backbone).declared_outputs(backbone.options)
    assert {s.path: s.shape for s in declared} == {path: arr.shape for path, arr in result.items()}
    for spec in declared:
        assert layout_by_length(spec.shape[0]) == spec.layout, spec  # frames 80, segments 10
    for path, arr in result.items():
        assert arr.shape == specs[path].shape and arr.dtype == np.float32 and np.isfinite(arr).all(), path
        attrs = backbone.store_attrs(specs[path])
        assert attrs["backbone"] == backbone.name and attrs["weights"] == "random"
        assert attrs["random_weights"] is True and attrs["layout"] == specs[path].layout


def test_resnet152_extracts_80_frame_features(resnet_random, videos):
    v1, _ = videos
    (out,) = resnet_random.extract_batch([v1])
    _check_outputs(resnet_random, out)
    feats = out["features/resnet152"]
    assert feats.shape == (80, 2048)
    spec = resnet_random.outputs()[0]
    assert spec.path == "features/resnet152" and spec.attrs["fps"] == 8
    assert spec.layout == "frames" and spec.axes == "frame(8 fps, 80) x dim"
    assert not resnet_random.load_model().training
    # row i is frame i (no reordering across the 48-frame chunks)
    for i in (0, 47, 48, 79):
        alone = resnet_random.embed(resnet_random.preprocess(v1.frames[i:i + 1])).numpy()[0]
        assert_close(feats[i], alone)
    assert np.abs(feats[0] - feats[79]).max() > 1e-3 * np.abs(feats[0]).max()


def test_resnet152_batch_split_and_order_with_stand_in_network(videos):
    """The multi-video batching logic (chunks straddling videos, per-video resize, splitting back),
    checked with a tiny per-frame network in place of ResNet-152 (whose 160-frame forward is too slow
    for the test budget; ResNet's own batch independence is covered by the eval-mode check above)."""
    backbone = ResNet152Backbone(BackboneConfig(weights="random").with_options(batch_frames=48))
    torch.manual_seed(0)
    stand_in = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(8, 2048)).eval()
    backbone._model = stand_in
    v1, v2 = videos
    both = backbone.extract_batch([v1, v2])
    for video, out in zip((v1, v2), both):
        (alone,) = backbone.extract_batch([video])
        assert_close(out["features/resnet152"], alone["features/resnet152"], rel=1e-6)
        with torch.inference_mode():
            x = normalize_on_device(backbone.preprocess(video.frames), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "cpu")
            direct = stand_in(x).numpy()
        assert_close(out["features/resnet152"], direct)


def test_r2plus1d_batch_of_two_equals_each_alone(r2p_random, videos):
    # clip k = frames 8k..8k+7 is pinned by test_r2plus1d_preprocess_is_squash_112_in_clips_of_8
    batched = r2p_random.extract_batch(list(videos))
    for video, out in zip(videos, batched):
        _check_outputs(r2p_random, out)
        (alone,) = r2p_random.extract_batch([video])
        assert_close(out["features/r2plus1d"], alone["features/r2plus1d"])
    assert np.abs(batched[0]["features/r2plus1d"] - batched[1]["features/r2plus1d"]).max() > 1e-3
    assert not r2p_random.load_model().training
    spec = r2p_random.outputs()[0]
    assert spec.shape == (10, 512) and spec.attrs["clip_frames"] == 8 and spec.attrs["resize"] == [112, 112]


def test_clip_batch_equals_alone_and_uses_one_frame_per_segment(clip_b32, videos):
    v1, v2 = videos
    frames3 = v1.frames.copy()
    frames3[9] = 255 - frames3[9]  # the frame of segment 1
    frames3[1] = 0  # not a selected frame: no effect
    frames3[80 - 2] = 0  # not selected either
    v3 = ArrayVideo(frames3)
    batched = clip_b32.extract_batch([v1, v2, v3])
    for out in batched:
        _check_outputs(clip_b32, out)
    for video, out in zip((v1, v2), batched):
        (alone,) = clip_b32.extract_batch([video])
        for path in ("features/clip", "zeroshot/clip"):
            assert_close(out[path], alone[path])
    f1, f3 = batched[0]["features/clip"], batched[2]["features/clip"]
    changed = np.abs(f1 - f3).max(axis=1) > 1e-4
    assert changed.tolist() == [False, True] + [False] * 8


def test_clip_zeroshot_is_scaled_cosine_with_valor_prompts(clip_b32, videos):
    (out,) = clip_b32.extract_batch([videos[0]])
    feats, scores = out["features/clip"], out["zeroshot/clip"]
    assert feats.shape == (10, 512) and scores.shape == (10, 25)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    arrays = clip_b32.dataset_arrays()
    assert set(arrays) == {"text/clip"}
    text, attrs = arrays["text/clip"]
    assert text.shape == (25, 512) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert list(attrs["prompts"]) == list(CLIP_PROMPTS) and list(attrs["classes"]) == list(LLP_CLASSES)
    # open_clip initialises logit_scale to log(1/0.07); OpenAI's trained value is log(100)
    assert attrs["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-6)
    assert attrs["random_weights"] is True and attrs["weights"] == "random"
    # the text array says how it was made like the per-video arrays do (the common attribute path)
    per_video = clip_b32.store_attrs(clip_b32.outputs()[0])
    provenance = ("backbone", "weights", "random_weights", "random_seed", "avvp_version", "model", "pretrained")
    assert {k: attrs[k] for k in provenance} == {k: per_video[k] for k in provenance} and attrs["random_seed"] == 7
    assert attrs["precision"] == "fp32"  # the text tower always runs in exact fp32
    expected = attrs["logit_scale"] * feats.astype(np.float64) @ text.astype(np.float64).T
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=1e-5)
    assert np.unique(text.round(4), axis=0).shape[0] == 25  # 25 distinct prompt embeddings
    specs = {s.path: s for s in clip_b32.outputs()}
    # reference profile: VALOR's 10 frames over all N decoded frames; clean: 10 of the 80 selected
    assert specs["features/clip"].attrs["frame_indices"] == "round(linspace(0, N-1, 10)) over all N 8 fps frames"
    clean = ClipBackbone(BackboneConfig(weights="none", profile="clean").with_options(model="ViT-B-32"))
    assert {s.path: s for s in clean.outputs()}["features/clip"].attrs["frame_indices"] == \
        [0, 9, 18, 26, 35, 44, 53, 61, 70, 79]
    assert specs["features/clip"].attrs["quick_gelu"] is True  # the openai tag's activation


def test_declarations_need_no_network_and_follow_the_options(monkeypatch):
    """Shapes, layouts and streams are class-level data: nothing is built or looked up to read them,
    and CLIP's width follows its model option."""
    import open_clip

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("declarations built a network"))
    assert ClipBackbone.declared_outputs()[0].shape == (10, 768)
    assert ClipBackbone.declared_outputs((("model", "ViT-B-32"),))[0].shape == (10, 512)
    assert ResNet152Backbone.declared_outputs()[0].layout == "frames" and ResNet152Backbone.streams() == ("frames",)
    specs = feature_specs(["resnet152", "clip", "clap_tokens"], {"clip": {"model": "ViT-B-32"}})
    assert specs["resnet152"].shape == (80, 2048) and specs["resnet152"].modality == "visual"
    assert specs["clip"].shape == (10, 512) and specs["clap_tokens"].layout == "tokens"
    assert specs["clap_tokens"].modality == "audio"
    with pytest.raises(KeyError, match="features/clip"):
        feature_specs(["nosuch"])


def test_docs_adding_a_backbone_example_is_true(tmp_path, monkeypatch):
    """The worked example of docs/architecture.md registers, declares, extracts and loads weights as shown."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    section = text[text.index("## Adding a backbone"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("mybackbone_doc_example")  # as if it were avvp/extract/backbones/mybackbone.py
    monkeypatch.setitem(sys.modules, module.__name__, module)
    try:
        exec(compile(code, "docs/architecture.md", "exec", dont_inherit=True), module.__dict__)
        cls = BACKBONES.get("mybackbone")
        assert feature_specs(["mybackbone"])["mybackbone"].shape == (10, 3)
        video = ArrayVideo(make_frames(6, 8, seed=3))
        random = cls(BackboneConfig(weights="random").with_options(batch_frames="8"))
        assert random.options.batch_frames == 8
        assert random.extract_batch([video])[0]["features/mybackbone"].shape == (10, 3)
        torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "mybackbone-v1.pth")
        loaded = cls(BackboneConfig(weights_dir=str(tmp_path)))
        assert loaded.weights_id() == "me:mybackbone-v1" and loaded.load_model().weight.shape == (3, 3)
    finally:
        BACKBONES._entries.pop("mybackbone", None)


def test_inherited_options_are_recorded_in_the_feature_attrs(clip_b32):
    """avvp-parse reads these back from the training store: each must be written with the features."""
    attrs = {s.path: s.attrs for s in clip_b32.outputs()}["features/clip"]
    assert ClipBackbone.inherited_options and all(k in attrs for k in ClipBackbone.inherited_options)
    assert attrs["model"] == "ViT-B-32" and attrs["quick_gelu"] is True  # the openai tag's default


def test_typed_options_parse_strings_and_name_the_valid_keys():
    opts = options_from_pairs(ClipBackbone.Options, (("quick_gelu", "false"), ("batch_frames", "8")), "clip")
    assert opts.quick_gelu is False and opts.batch_frames == 8 and opts.model == "ViT-L-14"
    assert options_from_pairs(ClipBackbone.Options, {"quick_gelu": "none"}, "clip").quick_gelu is None
    with pytest.raises(ValueError, match=r"clip: unknown option\(s\) \['modle'\]; known options: antialias: .*model: "):
        options_from_pairs(ClipBackbone.Options, {"modle": "ViT-B-32"}, "clip")
    with pytest.raises(ValueError, match="expected true or false"):
        options_from_pairs(ClipBackbone.Options, {"antialias": "maybe"}, "clip")
    with pytest.raises(ValueError, match=r"r2plus1d: batch_frames must be >= 8"):
        R2Plus1DBackbone(BackboneConfig(weights="random").with_options(batch_frames=4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.model = "x"


def test_bad_frames_and_options_are_rejected_before_any_forward(resnet_random, clip_b32):
    with pytest.raises(ValueError, match=r"\(80, H, W, 3\) uint8"):
        resnet_random.extract_batch([ArrayVideo(np.zeros((79, 48, 64, 3), np.uint8))])
    with pytest.raises(ValueError, match=r"\(80, H, W, 3\) uint8"):
        clip_b32.extract_batch([ArrayVideo(np.zeros((80, 48, 64, 3), np.float32))])
    with pytest.raises(ValueError, match="unknown option"):
        ResNet152Backbone(BackboneConfig(weights="random").with_options(batch_frame=8))
    with pytest.raises(ValueError, match="weights must be one of"):
        R2Plus1DBackbone(BackboneConfig(weights="imagenet"))


# ------------------------------------------------------------------------------------------------
# weights


@pytest.mark.parametrize("cls", [ResNet152Backbone, R2Plus1DBackbone, ClipBackbone])
def test_random_weights_print_a_notice_and_are_flagged(cls, capsys):
    backbone = cls(BackboneConfig(weights="random"))
    err = capsys.readouterr().err
    assert f"backbone {cls.name!r} uses RANDOM weights" in err and len(err.strip().splitlines()) == 1
    assert backbone.random_weights and backbone.weights_id() == "random"
    assert all(backbone.store_attrs(s)["random_weights"] is True for s in backbone.outputs())
    assert BACKBONES.get(cls.name) is cls


@pytest.mark.parametrize("cls,filename,url", [
    (ResNet152Backbone, "resnet152-394f9c45.pth", "https://download.pytorch.org/models/resnet152-394f9c45.pth"),
    (R2Plus1DBackbone, "r2plus1d_18-91a641e6.pth", "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth"),
    (ClipBackbone, "ViT-L-14-openai.safetensors", "https://huggingface.co/timm/vit_large_patch14_clip_224.openai"),
])
def test_missing_pretrained_weights_offline_raise_a_helpful_error(cls, filename, url, offline_empty_caches):
    with pytest.raises(WeightsUnavailable) as info:
        cls(BackboneConfig(weights="pretrained"))
    msg = str(info.value)
    for needle in (filename, url, "--weights-dir", "--weights random", "AVVP_ONLINE=1"):
        assert needle in msg, (needle, msg)
    if cls is not ClipBackbone:
        assert str(offline_empty_caches / "torch" / "hub" / "checkpoints" / filename) in msg
    # a weights dir without the canonical file name is not accepted either
    wdir = offline_empty_caches / "weights"
    wdir.mkdir()
    (wdir / "model.pth").write_bytes(b"")
    with pytest.raises(WeightsUnavailable, match=re.escape(str(wdir / filename))):
        cls(BackboneConfig(weights="pretrained", weights_dir=str(wdir)))


def test_standard_caches_are_found_offline(offline_empty_caches):
    ckpt = offline_empty_caches / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "r2plus1d_18-91a641e6.pth").write_bytes(b"not the real weights")
    resolved = resolve_weights_file(R2Plus1DBackbone.weights_spec, None)
    assert resolved.path == ckpt / "r2plus1d_18-91a641e6.pth" and resolved.source == "cache"
    assert resolved.sha256_verified is False and "!= published 91a641e6" in resolved.weights_id
    # huggingface_hub cache layout for open_clip's ViT-B-32 openai weights
    repo = offline_empty_caches / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "open_clip_model.safetensors").write_bytes(b"x")
    backbone = ClipBackbone(BackboneConfig(weights="pretrained").with_options(model="ViT-B-32"))
    assert backbone.resolved.path.name == "open_clip_model.safetensors" and backbone.resolved.source == "cache"
    assert backbone.weights_id() == "open_clip:ViT-B-32:openai"


def test_resnet152_weights_dir_loads_the_file_strictly(tmp_path, resnet_random, capfd):
    torch.manual_seed(123)
    reference = torchvision.models.resnet152(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet152-394f9c45.pth")
    reference.fc = torch.nn.Identity()
    reference.eval()
    backbone = ResNet152Backbone(BackboneConfig(weights="pretrained", weights_dir=str(tmp_path)))
    err = capfd.readouterr().err
    assert "does not match the published SHA-256 prefix 394f9c45" in err  # our file is not the real one
    assert backbone.resolved.source == "weights_dir" and not backbone.random_weights
    assert backbone.weights_id().startswith("torchvision:ResNet152_Weights.IMAGENET1K_V1 [sha256 ")
    images = backbone.preprocess(make_frames(48, 64, seed=6, n=2))
    got = backbone.embed(images)
    with torch.inference_mode():
        want = reference(normalize_on_device(images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "cpu"))
    assert_close(got, want)
    other_init = resnet_random.embed(images).numpy()
    assert np.abs(other_init - want.numpy()).max() > 1e-2 * np.abs(want.numpy()).max()


def test_r2plus1d_weights_dir_loads_the_file_strictly(tmp_path, r2p_random, videos):
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(321)
    reference = r2plus1d_18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r2plus1d_18-91a641e6.pth")
    reference.fc = torch.nn.Identity()
    reference.eval()
    backbone = R2Plus1DBackbone(BackboneConfig(weights="pretrained", weights_dir=str(tmp_path)))
    assert backbone.weights_id().startswith("torchvision:R2Plus1D_18_Weights.KINETICS400_V1")
    clips = backbone.preprocess(videos[0].frames)[:2]
    got = backbone.embed(clips)
    frames = clips.permute(0, 2, 1, 3, 4).reshape(16, 3, 112, 112)
    x = normalize_on_device(frames, (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), "cpu")
    with torch.inference_mode():
        want = reference(x.reshape(2, 8, 3, 112, 112).permute(0, 2, 1, 3, 4))
    assert_close(got, want)
    other_init = r2p_random.embed(clips).numpy()
    assert np.abs(other_init - want.numpy()).max() > 1e-2 * np.abs(want.numpy()).max()
    # strict loading: a state dict with a missing key is refused
    state = reference.state_dict()
    state.pop("layer1.0.conv1.0.0.weight")
    torch.save(state, tmp_path / "r2plus1d_18-91a641e6.pth")
    broken = R2Plus1DBackbone(BackboneConfig(weights="pretrained", weights_dir=str(tmp_path)))
    with pytest.raises(RuntimeError, match="Missing key"):
        broken.load_model()


def test_clip_weights_dir_loads_an_open_clip_checkpoint(tmp_path, clip_b32, videos):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in clip_b32.load_model().state_dict().items()}
    save_file(state, str(tmp_path / "ViT-B-32-openai.safetensors"))
    # default random_seed 0 ≠ the fixture's 7: equal outputs prove the file was loaded
    loaded = ClipBackbone(BackboneConfig(weights="pretrained", weights_dir=str(tmp_path)).with_options(model="ViT-B-32"))
    assert loaded.weights_id() == "open_clip:ViT-B-32:openai" and loaded.resolved.source == "weights_dir"
    (want,) = clip_b32.extract_batch([videos[0]])
    (got,) = loaded.extract_batch([videos[0]])
    for path in ("features/clip", "zeroshot/clip"):
        assert_close(got[path], want[path])
    np.testing.assert_allclose(loaded.dataset_arrays()["text/clip"][0], clip_b32.dataset_arrays()["text/clip"][0],
                               atol=1e-6, rtol=0)
