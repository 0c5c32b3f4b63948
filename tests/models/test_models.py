"""Parsing models: shapes for every input combination, and the pinned reference details."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from avvp.models import MODELS, build_model, required_inputs
from avvp.models.base import Batch, InputDims, ModelOutput
from avvp.models.blocks import ClapTokenPooling, HANEncoder, HANEncoderOptions, HANLayer, InputProjection, MMILHead, bce
from avvp.models.han import han_loss, valor_loss
from avvp.models.ma import MA, label_smoothed_ce, pick_partners, refine_labels
from avvp.models.mmpyr import BandedMultiHeadAttention, MMPyramidEncoder, MMPyramidEncoderOptions

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = 25
AUDIO = {"vggish": (10, 12), "clap": (10, 20), "clap_tokens": (64, 8)}
VISUAL = {"resnet152": (80, 24), "clip": (10, 12)}
MOTION = {"r2plus1d": (10, 8), None: None}
TINY = {"han": {"hidden": 16, "ff": 16}, "mmpyr": {"hidden": 16, "ffn": 16, "heads": 2, "levels": 2},
        "ma": {"hidden": 16, "ff": 16, "stage": 1}}


def make_batch(dims: InputDims, b: int = 3, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    weak = (torch.rand(b, K, generator=g) < 0.15).float()
    weak[:, 0] = 1
    return Batch(
        audio=torch.randn(b, *dims.audio, generator=g), visual=torch.randn(b, *dims.visual, generator=g),
        motion=None if dims.motion is None else torch.randn(b, *dims.motion, generator=g), weak=weak,
        index=torch.arange(b), pseudo_audio=(torch.rand(b, 10, K, generator=g) < 0.1).float(),
        pseudo_visual=(torch.rand(b, 10, K, generator=g) < 0.1).float(),
    )


@pytest.mark.parametrize("model_name", sorted(TINY))
def test_output_shapes_every_input_combination(model_name):
    for a, v, m in itertools.product(AUDIO, VISUAL, MOTION):
        dims = InputDims(audio=AUDIO[a], visual=VISUAL[v], motion=MOTION[m])
        torch.manual_seed(0)
        model = build_model(model_name, TINY[model_name], dims)
        batch = make_batch(dims)
        out = model(batch)
        assert out.audio_seg.shape == out.visual_seg.shape == (3, 10, K), (a, v, m)
        assert out.video.shape == out.audio_video.shape == out.visual_video.shape == (3, K)
        assert 0 <= float(out.video.detach().min()) and float(out.video.detach().max()) <= 1 + 1e-6
        loss, parts = model.loss(out, batch, 1)
        loss.backward()
        assert math.isfinite(loss.item()) and parts


def test_registry_has_the_trainer_models():
    assert {"han", "mmpyr", "ma"} <= set(MODELS.names())


def test_only_models_that_ask_for_extra_inputs_get_them():
    """Extra batch inputs (e.g. LINK's unmasked teacher labels) are loaded only when a model declares them."""
    from avvp.train.labels import BATCH_INPUTS

    for name in MODELS.names():
        needed = required_inputs(name, {})
        assert set(needed) <= set(BATCH_INPUTS.names()), name
        assert needed == (("teacher",) if name == "link" else ()), name


def test_unknown_model_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown HANOptions option.*hiden"):
        build_model("han", {"hiden": 8}, InputDims((10, 4), (10, 4), None))


def test_han_defaults_match_the_official_dims():
    model = build_model("han", {}, InputDims((10, 128), (80, 2048), (10, 512)))
    p = model.projection
    assert (p.fc_a.in_features, p.fc_a.out_features) == (128, 512)
    assert (p.fc_v.in_features, p.fc_st.in_features, p.fc_fusion.in_features) == (2048, 512, 1024)
    layers = model.encoder.layers
    assert len(layers) == 1 and layers[0].self_attn.num_heads == 1 and layers[0].linear1.out_features == 512
    assert model.head.fc_prob.out_features == K and layers[0].dropout.p == 0.1


def test_han_shares_one_layer_between_streams_and_updates_in_parallel():
    torch.manual_seed(0)
    enc = HANEncoder(HANEncoderOptions(hidden=8, heads=1, ff=8, layers=1)).eval()
    single = HANLayer(8, 1, 8)
    assert sum(p.numel() for p in enc.parameters()) == sum(p.numel() for p in single.parameters())
    a, v = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    layer = enc.layers[0]
    out_a, out_v = enc(a, v)
    torch.testing.assert_close(out_a, layer(a, v), rtol=0, atol=0)
    torch.testing.assert_close(out_v, layer(v, a), rtol=0, atol=0)  # from the PRE-update audio
    seq = HANEncoder(HANEncoderOptions(hidden=8, heads=1, ff=8, layers=1, sequential=True)).eval()
    seq.load_state_dict(enc.state_dict())
    sa, sv = seq(a, v)
    torch.testing.assert_close(sv, layer(v, layer(a, v)), rtol=0, atol=0)  # VALOR: updated audio


def test_mmil_pooling_sums_by_hand():
    torch.manual_seed(0)
    head = MMILHead(6, 4)
    a, v = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    out = head(a, v)
    x = torch.stack([a, v], 2).double().numpy()
    W = {n: (getattr(head, n).weight.double().detach().numpy(), getattr(head, n).bias.double().detach().numpy())
         for n in ("fc_prob", "fc_frame_att", "fc_av_att")}
    lin = lambda n: x @ W[n][0].T + W[n][1]  # noqa: E731
    prob = 1 / (1 + np.exp(-lin("fc_prob")))
    fa = np.exp(lin("fc_frame_att"))
    fa = fa / fa.sum(axis=1, keepdims=True)  # over time
    ma = np.exp(lin("fc_av_att"))
    ma = ma / ma.sum(axis=2, keepdims=True)  # over modality
    g = np.zeros((2, 4))
    ap = np.zeros((2, 4))
    for t in range(10):
        ap += fa[:, t, 0] * prob[:, t, 0]
        for m in range(2):
            g += fa[:, t, m] * prob[:, t, m] * ma[:, t, m]
    np.testing.assert_allclose(out.global_prob.detach().numpy(), g, rtol=1e-5)
    np.testing.assert_allclose(out.a_prob.detach().numpy(), ap, rtol=1e-5)
    np.testing.assert_allclose(out.frame_prob.detach().numpy(), prob, rtol=1e-5)


def test_han_loss_uses_visual_smoothing_and_clamps():
    y = torch.tensor([[1.0, 0.0, 1.0]])
    p = torch.tensor([[0.8, 0.3, 0.6]])
    out = ModelOutput(video=torch.tensor([[1.0, 0.0, 0.5]]), audio_seg=torch.zeros(1, 10, 3),
                      visual_seg=torch.zeros(1, 10, 3), audio_video=p, visual_video=p)
    batch = Batch(torch.zeros(1), torch.zeros(1), None, y, torch.arange(1))

    class Stub:
        visual_smoothing = 0.9

    loss, parts = han_loss(Stub(), out, batch, 1)
    bce_np = lambda q, t: float(np.mean(-(t * np.log(q) + (1 - t) * np.log(1 - q))))  # noqa: E731
    pv = np.array([0.95, 0.05, 0.95])
    assert parts["visual"] == pytest.approx(bce_np(np.array([0.8, 0.3, 0.6]), pv), rel=1e-6)
    assert parts["audio"] == pytest.approx(bce_np(np.array([0.8, 0.3, 0.6]), np.array([1, 0, 1.0])), rel=1e-6)
    # video probs 1.0 and 0.0 are clamped to 1-1e-7 / 1e-7 (float32), so the loss is finite
    q = np.array([1 - 1e-7, 1e-7, 0.5], dtype=np.float32).astype(np.float64)
    assert parts["global"] == pytest.approx(bce_np(q, np.array([1, 0, 1.0])), rel=1e-4)
    assert bce(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(-math.log(1e-7), rel=1e-3)


def test_valor_loss_is_global_bce_plus_frame_logit_bce():
    torch.manual_seed(0)
    dims = InputDims((10, 6), (10, 6), None)
    model = build_model("han", {"hidden": 8, "ff": 8, "heads": 2, "sequential": True, "loss": "valor"}, dims)
    batch = make_batch(dims)
    out = model(batch)
    loss, parts = model.loss(out, batch, 1)
    logits = out.extras["frame_logits"].detach().double()
    bcel = lambda z, t: float(torch.mean(torch.clamp(z, min=0) - z * t + torch.log1p(torch.exp(-z.abs()))))  # noqa: E731
    assert parts["audio_seg"] == pytest.approx(bcel(logits[:, :, 0], batch.pseudo_audio.double()), rel=1e-5)
    assert parts["visual_seg"] == pytest.approx(bcel(logits[:, :, 1], batch.pseudo_visual.double()), rel=1e-5)
    assert loss.item() == pytest.approx(parts["global"] + parts["audio_seg"] + parts["visual_seg"], rel=1e-6)
    batch.pseudo_audio = None
    with pytest.raises(ValueError, match="avvp-pseudolabel"):
        valor_loss(model, out, batch, 1)


def test_resnet_frames_are_averaged_by_eight():
    proj = InputProjection(InputDims((10, 2), (80, 3), None), hidden=3)
    with torch.no_grad():
        proj.fc_v.weight.copy_(torch.eye(3))
        proj.fc_v.bias.zero_()
    frames = torch.arange(80.0).view(1, 80, 1).repeat(1, 1, 3)
    seg = proj.project_visual(frames, None)
    expected = torch.tensor([8 * s + 3.5 for s in range(10)])
    torch.testing.assert_close(seg[0, :, 0], expected)


def test_clap_token_pooling_shape_and_constant_map():
    pool = ClapTokenPooling(in_dim=5, hidden=4)
    tokens = torch.ones(2, 64, 5) * torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
    out = pool(tokens)
    assert out.shape == (2, 10, 4)
    expected = pool.fc_a(tokens[:, 0])  # bicubic of a constant map is that constant
    torch.testing.assert_close(out, expected[:, None].expand(2, 10, 4), rtol=1e-5, atol=1e-5)
    # time ordering: the last 32 tokens are the 2nd frequency row, time runs inside a row
    ramp = torch.arange(32.0).repeat(2).view(1, 64, 1).expand(1, 64, 5).contiguous()
    with torch.no_grad():
        pool.fc_a.weight.zero_(); pool.fc_a.weight[:, 0] = 1; pool.fc_a.bias.zero_()  # noqa: E702
    r = pool(ramp)[0, :, 0]
    r = r.detach()
    assert torch.all(r[1:] > r[:-1]) and 0 <= float(r[0]) < 3 and 28 < float(r[-1]) <= 31


def test_mmpyramid_attention_band_and_standalone_encoder():
    torch.manual_seed(0)
    att = BandedMultiHeadAttention(8, 2, band=1, attn_dropout=0.0).eval()
    q, k = torch.randn(1, 10, 8), torch.randn(1, 10, 8)
    k2 = k.clone()
    k2[0, 5] += 5.0
    diff = (att(q, k, k) - att(q, k2, k2)).abs().sum(-1)[0]
    assert torch.all(diff[[0, 1, 2, 3, 7, 8, 9]] == 0) and torch.all(diff[[4, 5, 6]] > 0)
    enc = MMPyramidEncoder(MMPyramidEncoderOptions(hidden=16, ffn=16, heads=2, levels=4))
    a, v = enc(torch.randn(2, 10, 16), torch.randn(2, 10, 16))
    assert a.shape == v.shape == (2, 10, 16)
    assert [blk.v_self.attn.band for blk in enc.msa] == [1, 2, 4, 8]
    assert [t.conv1.dilation[0] for t in enc.v_tcn] == [1, 2, 4, 8]


def test_ma_label_smoothed_ce_matches_the_reference_definition():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, 2])
    logp = torch.log_softmax(logits.double(), -1).numpy()
    dist = np.full((2, 3), 0.1 / 2)
    dist[0, 0] = dist[1, 2] = 0.9
    assert label_smoothed_ce(logits, target, 0.1).item() == pytest.approx(float(np.mean(-(dist * logp).sum(1))), rel=1e-6)


class PlantedModel(torch.nn.Module):
    """Test double: a_prob = audio[:, 0, :K], v_prob = visual[:, 0, :K] (inputs carry the planted truth)."""

    def forward(self, b: Batch) -> ModelOutput:
        a, v = b.audio[:, 0, :K], b.visual[:, 0, :K]
        return ModelOutput(video=torch.maximum(a, v), audio_seg=a[:, None].expand(-1, 10, -1),
                           visual_seg=v[:, None].expand(-1, 10, -1), audio_video=a, visual_video=v)


def test_ma_refinement_recovers_planted_modalities():
    rng = np.random.default_rng(0)
    n = 60
    audio_truth = np.zeros((n, K), np.uint8)
    visual_truth = np.zeros((n, K), np.uint8)
    for i in range(n):
        c = rng.choice(K, size=2, replace=False)
        audio_truth[i, c[0]] = 1
        visual_truth[i, c[1]] = 1
        if rng.random() < 0.5:
            visual_truth[i, c[0]] = 1  # an audio-visual class
    weak = np.maximum(audio_truth, visual_truth)
    audio = torch.zeros(n, 10, K)
    visual = torch.zeros(n, 10, K)
    audio[:, 0] = torch.from_numpy(audio_truth * 0.9)
    visual[:, 0] = torch.from_numpy(visual_truth * 0.9)
    batches = [Batch(audio[i:i + 16], visual[i:i + 16], None, torch.from_numpy(weak[i:i + 16]).float(),
                     torch.arange(i, min(i + 16, n))) for i in range(0, n, 16)]
    partners = pick_partners(weak, seed=0)
    assert all((weak[i] & weak[partners[i]]).sum() == 0 for i in range(n))
    ref_a, ref_v, stats = refine_labels(PlantedModel(), batches, weak, partners)
    np.testing.assert_array_equal(ref_a, audio_truth)
    np.testing.assert_array_equal(ref_v, visual_truth)
    assert stats["removed_audio"] == int(weak.sum() - audio_truth.sum())


def test_ma_stage3_loss_is_the_official_step3_composition():
    """step3_retrain/main_avvp.py: loss = BCE(a_prob, Pa) + BCE(v_prob, Pv) + BCE(global, target) + loss4, with
    Pa the refined audio label, Pv = 0.9y + 0.05 with removed visual classes 0, target = Pa (the dataloader's
    `pa = label` alias: audio removals leave the global target too), loss4 = LabelSmoothingLoss(10, 0.1) of
    audio-after-HAN vs visual-before-HAN segment cosines / 0.2 with target t."""
    dims = InputDims(audio=(10, 12), visual=(80, 24), motion=(10, 8))
    batch = make_batch(dims, b=4, seed=3)
    y = batch.weak
    removed_a = torch.zeros_like(y, dtype=torch.bool)
    removed_a[:, 0] = True  # class 0 is labelled in every video: drop it from the audio label
    batch.refined_audio = y.masked_fill(removed_a, 0.0)
    removed_v = torch.zeros_like(y, dtype=torch.bool)
    removed_v[0, 0] = True
    batch.refined_visual = y.masked_fill(removed_v, 0.0)

    def build(**o):
        torch.manual_seed(0)
        return MA({"hidden": 16, "ff": 16, "stage": 3, **o}, dims).eval()

    model = build()
    out = model(batch)
    total, parts = model.loss(out, batch, 1)
    clamp = lambda p: p.clamp(1e-7, 1 - 1e-7)  # noqa: E731
    pa = batch.refined_audio
    pv = (0.9 * y + 0.05).masked_fill(removed_v, 0.0)
    expected_a = torch.nn.functional.binary_cross_entropy(clamp(out.audio_video), pa)
    expected_v = torch.nn.functional.binary_cross_entropy(clamp(out.visual_video), pv)
    expected_g = torch.nn.functional.binary_cross_entropy(clamp(out.video), pa)  # the alias: not y
    a = torch.nn.functional.normalize(out.extras["audio_enc"], dim=-1)
    v = torch.nn.functional.normalize(out.extras["visual_in"], dim=-1)
    sims = (a @ v.transpose(1, 2) / 0.2).reshape(-1, 10).double()
    dist = torch.full_like(sims, 0.1 / 9)
    dist[torch.arange(40), torch.arange(10).repeat(4)] = 0.9
    expected_c = (-(dist * sims.log_softmax(-1)).sum(-1)).mean()
    assert parts["audio"] == pytest.approx(expected_a.item(), rel=1e-5)
    assert parts["visual"] == pytest.approx(expected_v.item(), rel=1e-5)
    assert parts["global"] == pytest.approx(expected_g.item(), rel=1e-5)
    assert parts["contrastive"] == pytest.approx(expected_c.item(), rel=1e-5)
    assert total.item() == pytest.approx((expected_a + expected_v + expected_g + expected_c).item(), rel=1e-5)
    # the switches: without loss4 / with the unaliased global target y
    no_c = build(stage3_contrastive=False)
    t, p = no_c.loss(out, batch, 1)
    assert "contrastive" not in p and t.item() == pytest.approx((expected_a + expected_v + expected_g).item(), rel=1e-5)
    plain = build(global_target_from_audio=False)
    lg_y = torch.nn.functional.binary_cross_entropy(clamp(out.video), y)
    assert plain.loss(out, batch, 1)[1]["global"] == pytest.approx(lg_y.item(), rel=1e-5)
    assert lg_y.item() != pytest.approx(expected_g.item(), rel=1e-3)


def test_input_projection_follows_the_recorded_layout_not_the_length():
    # 32 rows recorded as a CLAP-style token map: token pooling (2 frequency rows of 16 time steps);
    # the length rule alone knows no 32-row input
    dims = InputDims((32, 6), (10, 4), None, layouts=(("audio", "tokens"), ("visual", "segments")))
    proj = InputProjection(dims, hidden=3)
    assert proj.audio_tokens and isinstance(proj.fc_a, ClapTokenPooling)
    audio, visual = proj(torch.randn(2, 32, 6), torch.randn(2, 10, 4), None)
    assert audio.shape == visual.shape == (2, 10, 3)
    with pytest.raises(ValueError, match="length 32"):
        InputProjection(InputDims((32, 6), (10, 4), None), hidden=3)
    # 10 rows recorded as tokens are pooled as tokens, not projected as segments
    assert InputProjection(InputDims((10, 6), (10, 4), None, layouts=(("audio", "tokens"),)), 3).audio_tokens
    # 20 rows recorded as frames: blocks of 2 frames are averaged into the 10 segments
    proj = InputProjection(InputDims((10, 2), (20, 3), None, layouts=(("visual", "frames"),)), hidden=3)
    with torch.no_grad():
        proj.fc_v.weight.copy_(torch.eye(3))
        proj.fc_v.bias.zero_()
    seg = proj.project_visual(torch.arange(20.0).view(1, 20, 1).repeat(1, 1, 3), None)
    torch.testing.assert_close(seg[0, :, 0], torch.tensor([2 * s + 0.5 for s in range(10)]))


def test_input_projection_falls_back_to_the_length_rule_without_a_recorded_layout():
    # layout-less dims (imported/hand-written stores, old checkpoints): 64 -> tokens, 80 -> frames
    proj = InputProjection(InputDims((64, 6), (80, 4), (10, 2)), hidden=3)
    assert proj.audio_tokens and proj.frames_per_segment == 8
    proj = InputProjection(InputDims((10, 6), (10, 4), None), hidden=3)
    assert not proj.audio_tokens and proj.frames_per_segment == 0
    # a free-text `layout` attribute (what older stores and the importer record) also falls back
    dims = InputDims((64, 6), (80, 4), None, layouts=(("audio", "token (2 freq x 32 time) x dim"),))
    assert dims.layout("audio") == "tokens" and dims.layout("visual") == "frames"
