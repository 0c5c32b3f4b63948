"""The audio backbones `vggish` and `clap`: shapes, attributes, weight loading in every published
layout, the VALOR waveform recipe (pinned by hand values), equivalence with laion_clap's own code
paths, zero-shot scores, videos without audio, offline construction, and missing-weight errors.

Cost control: one random CLAP model for the whole module (built under a no-network socket guard),
ONE audible video through it (11 HTS-AT passes), and one 605 MB checkpoint round trip.
"""
from __future__ import annotations

import json
import math
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avvp.data.classes import NUM_CLASSES
from avvp.extract.backbones import BACKBONES, BackboneConfig, WeightsUnavailable
from avvp.extract.backbones import clap as clap_mod
from avvp.extract.backbones import clap_offline
from avvp.extract.backbones import vggish as vggish_mod
from avvp.extract.backbones import vggish_frontend
from avvp.extract.backbones.prompts import CLAP_TEXTS
from avvp.extract.backbones.weights import seeded_init


def make_video(seconds: float = 10.0, seed: int = 0, has_audio: bool = True):
    """A decoded-video stand-in: tones + noise at 16 kHz and 48 kHz (the same signal at both rates)."""
    rng = np.random.default_rng(seed)

    def signal(rate):
        t = np.arange(int(round(seconds * rate))) / rate
        x = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.2 * np.sin(2 * np.pi * 2500 * t)
        return (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)

    return SimpleNamespace(audio_16k=signal(16000), audio_48k=signal(48000), has_audio=has_audio, frames=None)


def silent_video():
    return SimpleNamespace(audio_16k=np.zeros(160000, np.float32), audio_48k=np.zeros(480000, np.float32),
                           has_audio=False, frames=None)


# =============================================================================== VGGish
EXPECTED_VGGISH_SHAPES = {  # the published layer spec, torchvggish key layout
    "features.0.weight": (64, 1, 3, 3), "features.3.weight": (128, 64, 3, 3),
    "features.6.weight": (256, 128, 3, 3), "features.8.weight": (256, 256, 3, 3),
    "features.11.weight": (512, 256, 3, 3), "features.13.weight": (512, 512, 3, 3),
    "embeddings.0.weight": (4096, 12288), "embeddings.2.weight": (4096, 4096), "embeddings.4.weight": (128, 4096),
}


@pytest.fixture(scope="module")
def vggish_files(tmp_path_factory):
    """A seeded random VGGish state dict saved in both published layouts (+ a PCA parameter file)."""
    with seeded_init(123):
        net = vggish_mod.build_vggish_network()
    state = net.state_dict()
    torchvggish_dir = tmp_path_factory.mktemp("torchvggish")
    torch.save(state, torchvggish_dir / "vggish-10086976.pth")
    torchaudio_dir = tmp_path_factory.mktemp("torchaudio")
    renamed = {k.replace("features.", "features_network.").replace("embeddings.", "embedding_network."): v
               for k, v in state.items()}
    torch.save(renamed, torchaudio_dir / "vggish.pt")
    # PCA file as torchvggish ships it: a torch pickle of numpy arrays
    rng = np.random.default_rng(5)
    eigen, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    means = rng.standard_normal(128) * 0.1
    torch.save({"pca_eigen_vectors": eigen * 3.0, "pca_means": means}, torchvggish_dir / "vggish_pca_params-970ea276.pth")
    return SimpleNamespace(net=net.eval(), state=state, torchvggish_dir=torchvggish_dir,
                           torchaudio_dir=torchaudio_dir, eigen=eigen * 3.0, means=means)


def test_vggish_layout_and_flatten_order(vggish_files):
    state = vggish_files.state
    assert {k: tuple(v.shape) for k, v in state.items() if k.endswith("weight")} == EXPECTED_VGGISH_SHAPES
    assert len(state) == 2 * len(EXPECTED_VGGISH_SHAPES)  # weight + bias each, nothing else
    net = vggish_files.net
    examples = torch.from_numpy(vggish_frontend.waveform_to_examples(make_video().audio_16k).astype(np.float32))
    with torch.inference_mode():
        conv = net.features(examples.unsqueeze(1)).numpy()  # (10, 512, 6, 4)
        out = net(examples.unsqueeze(1)).numpy()
    assert conv.shape == (10, 512, 6, 4)
    # independent FC stack in numpy on the TF (NHWC: time, freq, channel) flattening
    x = conv.transpose(0, 2, 3, 1).reshape(10, -1).astype(np.float64)
    for i, relu in ((0, True), (2, True), (4, True)):
        x = x @ state[f"embeddings.{i}.weight"].numpy().T + state[f"embeddings.{i}.bias"].numpy()
        x = np.maximum(x, 0) if relu else x
    np.testing.assert_allclose(out, x, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def vggish_random():
    return BACKBONES.get("vggish")(BackboneConfig(weights="random"))


def test_vggish_random_shapes_attrs_and_no_audio(vggish_random):
    backbone = vggish_random
    videos = [make_video(seed=1), silent_video()]
    results = backbone.extract_batch(videos)
    assert len(results) == 2 and set(results[0]) == {"features/vggish"}
    feats = results[0]["features/vggish"]
    assert feats.shape == (10, 128) and feats.dtype == np.float32
    assert np.all(feats >= 0) and feats.std() > 0  # post-ReLU embedding, not constant
    np.testing.assert_array_equal(results[1]["features/vggish"], np.zeros((10, 128), np.float32))
    (spec,) = backbone.outputs()
    assert spec.path == "features/vggish" and spec.shape == (10, 128) and spec.layout == "segments"
    # the class-level declaration is what extract_batch produces
    assert {s.path: s.shape for s in type(backbone).declared_outputs()} == {"features/vggish": feats.shape}
    assert type(backbone).streams() == ("audio_16k",)
    attrs = backbone.store_attrs(spec)
    assert attrs["sample_rate"] == 16000 and attrs["random_weights"] is True and attrs["weights"] == "random"
    assert attrs["postprocess"] is False and attrs["final_relu"] is True
    # avvp-parse takes these over from the training store, so each must be recorded with the features
    assert set(type(backbone).inherited_options) == {"postprocess", "final_relu"}
    assert all(k in attrs for k in type(backbone).inherited_options)
    # without the final ReLU the same random net gives the pre-activation values (some negative)
    pre = BACKBONES.get("vggish")(BackboneConfig(weights="random", options=(("final_relu", False),)))
    pre_feats = pre.extract_batch(videos[:1])[0]["features/vggish"]
    assert pre_feats.min() < 0
    np.testing.assert_allclose(np.maximum(pre_feats, 0), feats, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["torchvggish", "torchaudio"])
def test_vggish_loads_both_published_layouts(vggish_files, vggish_random, layout):
    weights_dir = vggish_files.torchvggish_dir if layout == "torchvggish" else vggish_files.torchaudio_dir
    backbone = BACKBONES.get("vggish")(BackboneConfig(weights_dir=str(weights_dir)))
    assert backbone.weights_id().startswith("torchvggish:" if layout == "torchvggish" else "torchaudio:")
    video = make_video(seed=2)
    feats = backbone.extract_batch([video])[0]["features/vggish"]
    examples = torch.from_numpy(vggish_frontend.waveform_to_examples(video.audio_16k).astype(np.float32)).unsqueeze(1)
    with torch.inference_mode():
        expected = vggish_files.net(examples).numpy()
    np.testing.assert_array_equal(feats, expected)  # the saved weights, bit for bit
    random_feats = vggish_random.extract_batch([video])[0]["features/vggish"]
    assert random_feats.shape == feats.shape
    # the loaded weights reach every segment: no 1 s embedding of the random network equals the loaded one's
    assert not np.isclose(feats, random_feats).all(axis=-1).any()


def test_vggish_key_mapping_function():
    mapped = vggish_mod.torchaudio_to_torchvggish_keys(
        {"features_network.0.weight": 1, "embedding_network.4.bias": 2, "features.3.bias": 3})
    assert mapped == {"features.0.weight": 1, "embeddings.4.bias": 2, "features.3.bias": 3}


def test_vggish_missing_weights_names_both_files(tmp_path):
    with pytest.raises(WeightsUnavailable) as err:
        BACKBONES.get("vggish")(BackboneConfig(weights_dir=str(tmp_path)))
    assert "vggish-10086976.pth" in str(err.value) and "vggish.pt" in str(err.value)


def test_vggish_pca_quantisation_hand_values():
    # identity PCA, zero means: clip to [-2, 2], scale by 255/4, TRUNCATE (TF astype(uint8))
    values = np.array([[-3.0, -2.0, -1.0, 0.0, 0.5, 1.999, 2.0, 5.0] + [0.0] * 120])
    out = vggish_mod.pca_quantize(values, np.eye(128), np.zeros(128))
    # -2→0, -1→63.75→63, 0→127.5→127, 0.5→159.375→159, 1.999→254.94→254, 2→255 (rounding would give 64, 128)
    np.testing.assert_array_equal(out[0, :8], [0, 0, 63, 127, 159, 254, 255, 255])
    assert out.dtype == np.float32
    # means are subtracted before the rotation: e = 2·I, means = 1 → 2·(x − 1)
    out2 = vggish_mod.pca_quantize(np.full((1, 128), 1.25), 2 * np.eye(128), np.ones(128))
    assert np.all(out2 == math.floor((0.5 + 2) * 63.75))  # 159


def test_vggish_postprocess_option(vggish_files):
    weights_dir = str(vggish_files.torchvggish_dir)
    raw_backbone = BACKBONES.get("vggish")(BackboneConfig(weights_dir=weights_dir))
    pca_backbone = BACKBONES.get("vggish")(BackboneConfig(weights_dir=weights_dir, options=(("postprocess", True),)))
    assert "vggish_pca_params-970ea276" in pca_backbone.weights_id()
    video = make_video(seed=3)
    raw = raw_backbone.extract_batch([video])[0]["features/vggish"]
    post = pca_backbone.extract_batch([video])[0]["features/vggish"]
    eigen, means = vggish_mod.read_pca_params(vggish_files.torchvggish_dir / "vggish_pca_params-970ea276.pth")
    np.testing.assert_allclose(eigen, vggish_files.eigen)
    np.testing.assert_allclose(means, vggish_files.means)
    expected = np.floor(np.clip((vggish_files.eigen @ (raw.astype(np.float64).T - vggish_files.means[:, None])).T, -2, 2)
                        * 63.75 + 127.5)
    np.testing.assert_array_equal(post, expected.astype(np.float32))
    assert post.min() >= 0 and post.max() <= 255 and len(np.unique(post)) > 10
    # pretrained + postprocess without the PCA file: a clear error naming it
    with pytest.raises(WeightsUnavailable, match="vggish_pca_params-970ea276.pth"):
        BACKBONES.get("vggish")(BackboneConfig(weights_dir=str(vggish_files.torchaudio_dir), options=(("postprocess", True),)))


def test_vggish_rejects_wrong_length_and_unknown_option(vggish_random):
    with pytest.raises(ValueError, match="9 examples"):
        vggish_random.extract_batch([SimpleNamespace(audio_16k=np.zeros(150000, np.float32), has_audio=True)])
    with pytest.raises(ValueError, match="unknown option"):
        BACKBONES.get("vggish")(BackboneConfig(weights="random", options=(("postprocesss", True),)))


# =============================================================================== CLAP: recipe
def test_int16_round_trip_hand_values():
    x = np.array([0.5, -0.5, 1.5, -2.0, 1e-5, -1e-5, 0.99999, 3.0517578125e-05], np.float32)
    out = clap_mod.int16_round_trip(x)
    # ×32767 then truncation toward zero: 16383.5→16383, −16383.5→−16383, 0.33→0, 32766.67→32766, 0.99994→0
    expected = np.array([16383, -16383, 32767, -32767, 0, 0, 32766, 0]) / 32767.0
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    assert out.dtype == np.float32


def test_segment_bounds_hand_values():
    b = clap_mod.segment_bounds(480000)
    np.testing.assert_array_equal(b[:, 0], np.arange(10) * 48000)
    np.testing.assert_array_equal(b[:, 1] - b[:, 0], np.full(10, 48000))
    # L = 480005: starts round(i·48000.5) with numpy's half-to-even, length L // 10 = 48000
    b = clap_mod.segment_bounds(480005)
    np.testing.assert_array_equal(
        b[:, 0], [0, 48000, 96001, 144002, 192002, 240002, 288003, 336004, 384004, 432004])
    assert np.all(b[:, 1] - b[:, 0] == 48000) and b[-1, 1] <= 480005
    # L = 25: starts round(i·2.5) = 0, 2, 5, 8, 10, 12, 15, 18, 20, 22 (half-to-even), length 2
    np.testing.assert_array_equal(clap_mod.segment_bounds(25)[:, 0], [0, 2, 5, 8, 10, 12, 15, 18, 20, 22])
    with pytest.raises(ValueError, match="too short"):
        clap_mod.segment_bounds(9)


def test_repeat_pad_and_resample_by_index():
    piece = np.arange(1, 48001, dtype=np.float32)
    padded = clap_mod.repeat_pad(piece)
    assert padded.shape == (480000,) and padded[0] == 1 and padded[47999] == 48000 and padded[48000] == 1
    assert padded[-1] == 48000  # exactly 10 copies
    odd = clap_mod.repeat_pad(np.arange(1, 48002, dtype=np.float32))  # 48001 samples: 9 copies + zeros
    assert odd[9 * 48001 - 1] == 48001 and np.all(odd[9 * 48001:] == 0) and 9 * 48001 == 432009
    with pytest.raises(ValueError):
        clap_mod.repeat_pad(np.zeros(480001, np.float32))
    same = np.arange(480000, dtype=np.float32)
    np.testing.assert_array_equal(clap_mod.resample_by_index(same), same)
    # 240000 samples → each index round(k·239999/479999): 0, 0(0.49999), 1(0.99999), ..., last 239999
    r = clap_mod.resample_by_index(np.arange(240000, dtype=np.float32))
    assert r.shape == (480000,) and r[0] == 0 and r[1] == 0 and r[2] == 1 and r[-1] == 239999


def test_video_waveforms_follow_valor_order():
    audio = make_video(seed=4).audio_48k
    rows = clap_mod.video_waveforms(audio)
    assert rows.shape == (11, 480000) and rows.dtype == np.float32
    q = lambda x: (np.clip(x, -1, 1) * 32767.0).astype(np.int16) / 32767.0  # noqa: E731
    np.testing.assert_array_equal(rows[3], np.tile(q(audio[144000:192000]), 10).astype(np.float32))
    np.testing.assert_array_equal(rows[10], q(audio).astype(np.float32))  # 480000 samples: index map is identity


def numpy_clap_log_mel(wave):
    """Independent float64 numpy version of torchaudio MelSpectrogram(48 kHz, 1024, hop 480, center,
    reflect, power 2, HTK, norm None, 50–14000 Hz) + AmplitudeToDB: Hz-domain triangles."""
    n_fft, hop = 1024, 480
    x = np.pad(wave.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([x[t * hop: t * hop + n_fft] * window for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, 513)
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    mel_pts = np.linspace(hz_to_mel(50.0), hz_to_mel(14000.0), 66)
    f_pts = 700.0 * (10 ** (mel_pts / 2595.0) - 1.0)
    freqs = np.linspace(0, 24000, 513)
    fb = np.zeros((513, 64))
    for m in range(64):
        lo, c, hi = f_pts[m], f_pts[m + 1], f_pts[m + 2]
        fb[:, m] = np.maximum(0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)))
    return 10 * np.log10(np.maximum(power @ fb, 1e-10))


def test_clap_log_mel_matches_independent_numpy():
    wave = clap_mod.int16_round_trip(make_video(seed=6).audio_48k)
    ours = clap_mod.log_mel(torch.from_numpy(wave)[None])[0].numpy()
    ref = numpy_clap_log_mel(wave)
    assert ours.shape == ref.shape == (1001, 64)
    assert np.max(np.abs(ours - ref)) < 2e-3  # dB; float32 STFT vs float64
    assert ref.max() > 20 and ref.min() > -60  # a real signal, far from the 1e-10 floor


# =============================================================================== CLAP: model
class NetworkGuard:
    """socket.connect replacement that records and refuses every connection attempt."""

    def __init__(self):
        self.attempts = []

    def __call__(self, sock, address, *args):
        self.attempts.append(address)
        raise OSError(f"network access attempted during the test: {address}")


@pytest.fixture(scope="module")
def clap_random():
    """One random CLAP backbone for the module, built (and its text embedded) with no network."""
    guard = NetworkGuard()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guard)
        started = time.process_time()
        backbone = BACKBONES.get("clap")(BackboneConfig(weights="random"))
        backbone.load_model()
        backbone.text_embeddings()
        build_cpu = time.process_time() - started
    return SimpleNamespace(backbone=backbone, guard=guard, build_cpu=build_cpu)


@pytest.fixture(scope="module")
def clap_outputs(clap_random):
    video = make_video(seed=7)
    started = time.process_time()
    results = clap_random.backbone.extract_batch([video, silent_video()])
    cpu = time.process_time() - started
    print(f"\nclap: random build {clap_random.build_cpu:.1f} CPU s; one audible video {cpu:.1f} CPU s (11 passes)")
    return SimpleNamespace(video=video, results=results, cpu=cpu)


def test_clap_built_offline(clap_random):
    assert clap_random.guard.attempts == []
    module = clap_random.backbone.load_model()
    assert module.enable_fusion and module.model.audio_branch.fusion_type == "aff_2d"
    assert sum(p.numel() for p in module.model.parameters()) == pytest.approx(158.3e6, rel=1e-3)


def test_clap_shapes_and_no_audio(clap_random, clap_outputs):
    audible, silent = clap_outputs.results
    assert set(audible) == {"features/clap", "zeroshot/clap", "features/clap_tokens"}
    specs = {s.path: s for s in clap_random.backbone.outputs()}
    for path, array in audible.items():
        assert array.shape == specs[path].shape and array.dtype == np.float32
        np.testing.assert_array_equal(silent[path], np.zeros(specs[path].shape, np.float32))
    assert audible["features/clap"].shape == (10, 512) and audible["zeroshot/clap"].shape == (10, NUM_CLASSES)
    assert audible["features/clap_tokens"].shape == (64, 768)
    # the class-level declarations (no network needed to read them) are what extract_batch produces
    declared = type(clap_random.backbone).declared_outputs()
    assert {s.path: s.shape for s in declared} == {path: array.shape for path, array in audible.items()}
    assert {s.path: s.layout for s in declared} == {"features/clap": "segments", "zeroshot/clap": "segments",
                                                    "features/clap_tokens": "tokens"}
    np.testing.assert_allclose(np.linalg.norm(audible["features/clap"], axis=1), 1.0, rtol=1e-5)
    assert specs["features/clap"].attrs["sample_rate"] == 48000
    # pieces differ from each other (the signal is amplitude-modulated at 0.5 Hz)
    assert np.abs(audible["features/clap"][0] - audible["features/clap"][1]).max() > 1e-4


def test_clap_zeroshot_is_scaled_cosine(clap_random, clap_outputs):
    backbone = clap_random.backbone
    text, attrs = backbone.dataset_arrays()["text/clap"]
    assert text.shape == (25, 512) and attrs["texts"] == list(CLAP_TEXTS) and attrs["real_tokenizer"] is False
    # the text array says how it was made like the per-video arrays do (the common attribute path)
    per_video = backbone.store_attrs(backbone.outputs()[0])
    provenance = ("backbone", "weights", "random_weights", "random_seed", "precision", "avvp_version")
    assert {k: attrs[k] for k in provenance} == {k: per_video[k] for k in provenance}
    assert (attrs["weights"], attrs["random_seed"], attrs["layout"]) == ("random", 0, "class x dim")
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    scale = attrs["logit_scale"]
    assert scale == pytest.approx(1 / 0.07, rel=1e-6)  # laion_clap's init value log(1/0.07)
    audio = clap_outputs.results[0]["features/clap"].astype(np.float64)
    cosine = (audio / np.linalg.norm(audio, axis=1, keepdims=True)) @ (text / np.linalg.norm(text, axis=1, keepdims=True)).T
    np.testing.assert_allclose(clap_outputs.results[0]["zeroshot/clap"], scale * cosine, rtol=1e-5, atol=1e-5)


def test_clap_matches_laion_code_paths(clap_random, clap_outputs):
    """Piece 0 through laion_clap's own `get_audio_embedding`, and the whole clip through HTS-AT with
    VALOR's hand-written token reshape of the final-norm output, equal our batched outputs."""
    module = clap_random.backbone.load_model()
    rows = clap_mod.video_waveforms(clap_outputs.video.audio_48k)[[0, 10]]
    captured = []
    hook = module.model.audio_branch.norm.register_forward_hook(lambda _m, _a, out: captured.append(out))
    try:
        with torch.no_grad():
            samples = []
            for row in rows:  # laion's per-sample input dicts (mel from our get_mel equivalent)
                mel = clap_mod.log_mel(torch.from_numpy(row)[None])[0]
                samples.append({"mel_fusion": torch.stack([mel] * 4), "longer": torch.tensor([False]),
                                "waveform": torch.from_numpy(row)})
            laion_emb = module.model.get_audio_embedding(samples).numpy()
    finally:
        hook.remove()
    np.testing.assert_allclose(laion_emb[0], clap_outputs.results[0]["features/clap"][0], rtol=1e-5, atol=1e-6)
    x = captured[0][1:2]  # (1, 64, 768) after the final norm, whole-clip row
    b, n, c = x.shape
    x = x.permute(0, 2, 1).reshape(b, c, 8, 8).reshape(b, c, 4, 2, 8).permute(0, 1, 3, 2, 4).reshape(b, c, 2, 32)
    valor_tokens = x.flatten(2).permute(0, 2, 1)[0].numpy()
    np.testing.assert_allclose(valor_tokens, clap_outputs.results[0]["features/clap_tokens"], rtol=1e-5, atol=1e-5)


def test_clap_missing_checkpoint_and_tokenizer(tmp_path):
    with pytest.raises(WeightsUnavailable, match="630k-fusion-best.pt"):
        BACKBONES.get("clap")(BackboneConfig(weights_dir=str(tmp_path)))
    # checkpoint found but no roberta-base tokenizer: refuse (text embeddings would be wrong)
    (tmp_path / "630k-fusion-best.pt").write_bytes(b"")
    with pytest.raises(WeightsUnavailable, match="vocab.json"):
        BACKBONES.get("clap")(BackboneConfig(weights_dir=str(tmp_path)))
    # a tokenizer that is not roberta-base's (wrong vocabulary size) is refused too, before any build
    (tmp_path / "roberta-base").mkdir()
    (tmp_path / "roberta-base" / "vocab.json").write_text(json.dumps({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}))
    (tmp_path / "roberta-base" / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(WeightsUnavailable, match="tokens, roberta-base has 50265"):
        BACKBONES.get("clap")(BackboneConfig(weights_dir=str(tmp_path)))


def test_clap_weights_resolve_through_its_weights_spec(tmp_path, monkeypatch):
    """CLAP finds its checkpoint like every backbone (resolve_weights_file with its WeightsSpec): in
    --weights-dir only when given, else in the spec's cache, laion_clap's download directory; a `ckpt`
    path names its own directory. The stored weights id is "laion_clap:<file name>" either way."""
    from avvp.extract.backbones import weights as weights_mod

    write_fake_roberta_tokenizer(tmp_path / "roberta-base")
    laion_dir = tmp_path / "laion_clap_pkg"
    laion_dir.mkdir()
    monkeypatch.setattr(weights_mod, "package_dir", lambda package: {"laion_clap": laion_dir}[package])
    tokenizer = (("tokenizer_dir", str(tmp_path / "roberta-base")),)
    spec = clap_mod.CLAP_630K_FUSION
    assert (spec.cache, spec.package, spec.weights_name) == ("package", "laion_clap", "laion_clap:630k-fusion-best.pt")
    # offline, not in the cache: the message names the file and laion_clap's directory
    with pytest.raises(WeightsUnavailable, match=f"(?s)630k-fusion-best.pt.*looked in: {laion_dir}") as err:
        BACKBONES.get("clap")(BackboneConfig(options=tokenizer))
    assert "laion_clap's download directory" in str(err.value)
    (laion_dir / "630k-fusion-best.pt").write_bytes(b"")
    cached = BACKBONES.get("clap")(BackboneConfig(options=tokenizer))
    assert (cached.checkpoint, cached.resolved.source) == (laion_dir / "630k-fusion-best.pt", "cache")
    assert cached.weights_id() == "laion_clap:630k-fusion-best.pt"
    # --weights-dir given: only there, as for every backbone (the cached file is not taken instead)
    with pytest.raises(WeightsUnavailable, match="file not found"):
        BACKBONES.get("clap")(BackboneConfig(weights_dir=str(tmp_path / "roberta-base"), options=tokenizer))
    # a path: its directory, whatever --weights-dir says
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "630k-audioset-best.pt").write_bytes(b"")
    by_path = BACKBONES.get("clap")(BackboneConfig(weights_dir=str(tmp_path), options=(
        ("ckpt", str(tmp_path / "ckpts" / "630k-audioset-best.pt")),)))
    assert by_path.checkpoint == tmp_path / "ckpts" / "630k-audioset-best.pt"
    assert by_path.weights_id() == "laion_clap:630k-audioset-best.pt" and by_path.resolved.source == "weights_dir"


def test_checkpoint_reader_with_and_without_position_ids(tmp_path):
    tensors = {"audio_branch.x": torch.ones(2), "text_branch.y": torch.zeros(3)}
    with_key = {"state_dict": {"module." + k: v for k, v in
                               {**tensors, clap_offline.POSITION_IDS_KEY: torch.arange(514)[None]}.items()}}
    torch.save(with_key, tmp_path / "with.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in tensors.items()}}, tmp_path / "without.pt")
    model_keys = set(tensors)  # a transformers >= 4.31 model: no position_ids entry
    for name in ("with.pt", "without.pt"):
        state = clap_offline.read_checkpoint_state_dict(tmp_path / name, model_keys)
        assert set(state) == model_keys
    # an older-transformers model that keeps the entry gets it from the checkpoint
    assert clap_offline.POSITION_IDS_KEY in clap_offline.read_checkpoint_state_dict(
        tmp_path / "with.pt", model_keys | {clap_offline.POSITION_IDS_KEY})
    # laion_clap's own reader fails on a checkpoint without the key: why the tolerant reader exists
    clap_offline.import_laion_clap()  # puts laion's `clap_module` on sys.path
    from clap_module.factory import load_state_dict as laion_reader

    with pytest.raises(KeyError):
        laion_reader(str(tmp_path / "without.pt"))


def write_fake_roberta_tokenizer(directory):
    """vocab.json with roberta-base's size (50265: specials, 256 byte symbols, fillers) + merges.txt."""
    directory.mkdir()
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in clap_offline._bytes_to_unicode():
        vocab.setdefault(symbol, len(vocab))
    while len(vocab) < clap_offline.ROBERTA_VOCAB_SIZE - 1:
        vocab[f"filler{len(vocab)}"] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")


@pytest.mark.slow
def test_clap_checkpoint_round_trip_bit_identical(clap_random, clap_outputs, tmp_path):
    """The random model saved as a laion-style checkpoint (DataParallel prefix, position_ids key,
    605 MB) loads through the real `load_ckpt(ckpt=path)` into a differently seeded model with
    every parameter and the outputs bit-identical. Runs by default; measured ~1 min on 2 busy cores."""
    source = clap_random.backbone.load_model().model
    state = {"module." + k: v for k, v in source.state_dict().items()}
    state["module." + clap_offline.POSITION_IDS_KEY] = torch.arange(514)[None]  # as in real checkpoints
    started = time.perf_counter()
    torch.save({"epoch": 45, "state_dict": state}, tmp_path / "630k-fusion-best.pt")
    save_s = time.perf_counter() - started
    del state
    write_fake_roberta_tokenizer(tmp_path / "roberta-base")
    guard = NetworkGuard()
    load_ckpt_calls = []
    real_load_ckpt = type(clap_random.backbone.load_model()).load_ckpt

    def spy_load_ckpt(self, *args, **kwargs):
        load_ckpt_calls.append(kwargs.get("ckpt"))
        return real_load_ckpt(self, *args, **kwargs)

    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guard)
        mp.setattr(type(clap_random.backbone.load_model()), "load_ckpt", spy_load_ckpt)
        loaded = BACKBONES.get("clap")(BackboneConfig(weights_dir=str(tmp_path), options=(("random_seed", 1),)))
        module = loaded.load_model()
    load_s = time.perf_counter() - started
    print(f"\nclap checkpoint round trip: save {save_s:.1f} s, build+load {load_s:.1f} s "
          f"({(tmp_path / '630k-fusion-best.pt').stat().st_size / 1e6:.0f} MB)")
    assert guard.attempts == []
    assert load_ckpt_calls == [str(tmp_path / "630k-fusion-best.pt")]  # laion_clap's own loader ran
    assert loaded.weights_id() == "laion_clap:630k-fusion-best.pt" and loaded.tokenizer_dir == tmp_path / "roberta-base"
    src_state, new_state = source.state_dict(), module.model.state_dict()
    assert set(src_state) == set(new_state)
    assert all(torch.equal(src_state[k], new_state[k]) for k in src_state)
    # the same waveform through both models: bit-identical embedding and tokens
    row = clap_mod.video_waveforms(clap_outputs.video.audio_48k)[[0]]
    emb, tokens = loaded.encode_waveforms(row)
    ref_emb, ref_tokens = clap_random.backbone.encode_waveforms(row)
    np.testing.assert_array_equal(emb, ref_emb)
    np.testing.assert_array_equal(tokens, ref_tokens)
