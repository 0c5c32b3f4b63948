"""CVCMS: hand-checked contrastive targets and loss, label-weighted pooling, cross-video augmentation,
smoothing schedule, and that each ablation switch of Tables 2-3 changes the computation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.training import loss_before_and_after
from avvp.models.base import MODELS, Batch, InputDims
from avvp.models.blocks import HANLayer
from avvp.models.cvcms import (
    CVCMS,
    CoOccurrenceLogits,
    SelfOnlyHANLayer,
    cross_modal_contrastive_loss,
    cross_video_soft_targets,
    label_weighted_pooling,
    random_partners,
)
from avvp.train.config import PRESETS

K = 25
DIMS = InputDims(audio=(10, 12), visual=(80, 16), motion=(10, 8))
TINY = dict(hidden=16, ff=16, occ_dim=4)


pytestmark = pytest.mark.usefixtures("single_torch_thread")

def make_batch(b: int = 4, seed: int = 0, refined: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    weak = torch.zeros(b, K)
    for i in range(b):
        weak[i, torch.randperm(K, generator=g)[:2]] = 1.0
    ra = weak * (torch.rand(b, K, generator=g) > 0.3)
    rv = weak * (torch.rand(b, K, generator=g) > 0.3)
    return Batch(
        audio=torch.randn(b, 10, 12, generator=g), visual=torch.randn(b, 80, 16, generator=g),
        motion=torch.randn(b, 10, 8, generator=g), weak=weak, index=torch.arange(b),
        refined_audio=ra if refined else None, refined_visual=rv if refined else None,
    )


def build(**options) -> CVCMS:
    torch.manual_seed(0)
    return CVCMS({**TINY, **options}, DIMS)


# ---------------------------------------------------------------------------------- hand-checked values
# 3 samples, 3 classes. audio labels: s0 {0}, s1 {} , s2 {0, 2}; visual labels: s0 {0, 1}, s1 {2}, s2 {}
AUDIO = torch.tensor([[1.0, 0, 0], [0, 0, 0], [1, 0, 1]])
VISUAL = torch.tensor([[1.0, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_soft_target_matrix_hand_checked():
    # row 0: a{0} meets v0 only; row 1: empty audio meets nothing (row stays zero);
    # row 2: a{0,2} meets v0 (class 0) and v1 (class 2) → 1/2 each
    expected = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0.5, 0.5, 0]])
    torch.testing.assert_close(cross_video_soft_targets(AUDIO, VISUAL), expected, atol=1e-8, rtol=0)
    # several shared classes still count once (the reference clamps the count at 1)
    two = torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(cross_video_soft_targets(two, torch.tensor([[1.0, 1.0], [0.0, 1.0]])),
                               torch.tensor([[0.5, 0.5]]), atol=1e-8, rtol=0)


def test_contrastive_loss_hand_checked():
    sims = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, -1.0]])
    # row 0: −log(e/(e+2)) = log(e+2) − 1 = 0.5514447139
    # row 1: zero target → 0
    # row 2: −½·log p0 − ½·log p1 with p0 = p1 = e^½/(2e^½ + e^−1) → log(2e^½ + e^−1) − ½ = 0.7989161848
    expected = (0.5514447139320509 + 0.0 + 0.7989161848417257) / 3  # = 0.4501202996
    assert expected == pytest.approx((math.log(math.e + 2) - 1 + math.log(2 * math.exp(0.5) + math.exp(-1)) - 0.5) / 3)
    assert cross_modal_contrastive_loss(sims, AUDIO, VISUAL).item() == pytest.approx(expected, abs=1e-6)


def test_label_weighted_pooling_hand_checked():
    features = torch.tensor([[[4.0, 0.0], [0.0, 8.0]]])  # (1, T=2, d=2)
    # class 0 is labelled, class 1 is not: weights = softmax(0, ln 3) = (1/4, 3/4)
    att = torch.tensor([[[0.0, 5.0], [math.log(3.0), 7.0]]])
    pooled = label_weighted_pooling(features, att, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(pooled, torch.tensor([[1.0, 6.0]]))


def test_random_partners_never_self_and_cover_others():
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([random_partners(4, g) for _ in range(200)])
    assert (draws != torch.arange(4)).all()
    for i in range(4):
        assert set(draws[:, i].tolist()) == set(range(4)) - {i}
    with pytest.raises(ValueError, match="two samples"):
        random_partners(1)


# ---------------------------------------------------------------------------------- augmentation
def test_training_forward_doubles_the_batch_with_other_visuals():
    model = build().train()
    batch = make_batch()
    seen = {}
    model.encoder.register_forward_hook(lambda m, inputs, output: seen.update(inputs=inputs))
    out = model(batch)
    partner = out.extras["partner"]
    audio_in, visual_in = seen["inputs"]
    assert audio_in.shape[0] == visual_in.shape[0] == 8
    torch.testing.assert_close(audio_in[4:], audio_in[:4])  # same audio
    torch.testing.assert_close(visual_in[4:], visual_in[:4][partner])  # visual of another sample
    assert (partner != torch.arange(4)).all()
    assert out.audio_seg.shape == (4, 10, K) and out.video.shape == (4, K)  # outputs stay per input sample
    assert out.extras["all_video"].shape == (8, K)
    la, lv = model.labels_of_rows(out, batch)
    torch.testing.assert_close(la, torch.cat([batch.refined_audio, batch.refined_audio]))
    torch.testing.assert_close(lv, torch.cat([batch.refined_visual, batch.refined_visual[partner]]))
    # eval: no augmentation
    model.eval()
    assert "partner" not in model(batch).extras


def test_contrastive_uses_label_weighted_pooled_encoder_outputs():
    model = build().eval()
    batch = make_batch()
    out = model(batch)
    la, lv = batch.refined_audio, batch.refined_visual
    att = model.head.fc_frame_att(torch.stack([out.extras["audio_enc"], out.extras["visual_enc"]], dim=2))
    wa = torch.softmax((att[:, :, 0] * la[:, None]).sum(-1), dim=1)
    wv = torch.softmax((att[:, :, 1] * lv[:, None]).sum(-1), dim=1)
    fa = F.normalize((wa[..., None] * out.extras["audio_enc"]).sum(1), dim=-1)
    fv = F.normalize((wv[..., None] * out.extras["visual_enc"]).sum(1), dim=-1)
    expected = cross_modal_contrastive_loss(fa @ fv.T, la, lv)
    assert model.contrastive_loss(out, la, lv).item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------------------------- loss schedule
def test_smoothing_and_contrastive_schedule():
    model = build(augment=False).eval()
    batch = make_batch()
    out = model(batch)
    clamp = lambda p: p.clamp(1e-7, 1 - 1e-7)  # noqa: E731
    ra, rv = batch.refined_audio, batch.refined_visual
    early_total, early = model.loss(out, batch, epoch=2)
    late_total, late = model.loss(out, batch, epoch=3)
    # epochs <= 2: visual target 0.9y + 0.05, audio unsmoothed; later both unsmoothed
    assert early["bce_visual"] == pytest.approx(F.binary_cross_entropy(clamp(out.visual_video), 0.9 * rv + 0.05).item(), rel=1e-5)
    assert early["bce_audio"] == pytest.approx(F.binary_cross_entropy(clamp(out.audio_video), ra).item(), rel=1e-5)
    assert late["bce_visual"] == pytest.approx(F.binary_cross_entropy(clamp(out.visual_video), rv).item(), rel=1e-5)
    assert late["bce_global"] == pytest.approx(F.binary_cross_entropy(clamp(out.video), torch.maximum(ra, rv)).item(), rel=1e-5)
    # the contrastive term joins with weight 0.85 after epoch 2 only
    assert early_total.item() == pytest.approx(early["bce_global"] + early["bce_audio"] + early["bce_visual"], rel=1e-5)
    assert late_total.item() == pytest.approx(
        late["bce_global"] + late["bce_audio"] + late["bce_visual"] + 0.85 * late["contrastive"], rel=1e-5)


def test_augmented_half_only_in_contrastive_unless_asked():
    batch = make_batch()
    ref = build().train()
    torch.manual_seed(5)
    out = ref(batch)
    _, parts = ref.loss(out, batch, 3)
    clamp = lambda p: p.clamp(1e-7, 1 - 1e-7)  # noqa: E731
    assert parts["bce_audio"] == pytest.approx(F.binary_cross_entropy(clamp(out.audio_video), batch.refined_audio).item(), rel=1e-5)
    ext = build(bce_on_augmented=True).train()
    _, parts_ext = ext.loss(out, batch, 3)
    la, _ = ext.labels_of_rows(out, batch)
    assert parts_ext["bce_audio"] == pytest.approx(
        F.binary_cross_entropy(clamp(out.extras["all_audio_video"]), la).item(), rel=1e-5)


def test_training_step_reduces_loss():
    before, after = loss_before_and_after(build(), make_batch(b=6), 15, epoch=3)
    assert after < before


# ---------------------------------------------------------------------------------- flags
def test_co_occurrence_modes_change_the_computation():
    batch = make_batch()
    outs, layers = {}, {}
    for mode in ("cm_co", "av", "a_only", "v_only", "none"):
        model = build(co_occurrence=mode).eval()
        outs[mode] = model(batch)
        layers[mode] = model.head.fc_prob
    assert isinstance(layers["none"], torch.nn.Linear)
    assert type(layers["cm_co"].layer) is HANLayer
    assert all(isinstance(layers[m].layer, SelfOnlyHANLayer) for m in ("av", "a_only", "v_only"))
    assert not hasattr(layers["av"].layer, "cm_attn")
    for a in outs:
        for b in outs:
            if a < b:
                assert not torch.allclose(outs[a].audio_seg, outs[b].audio_seg) or not torch.allclose(
                    outs[a].visual_seg, outs[b].visual_seg), (a, b)
    # a_only: visual class tokens skip the attention and go straight to the visual Linear
    branch: CoOccurrenceLogits = layers["a_only"]
    x = torch.randn(2, 10, 2, 16)
    _, v_tokens = branch.class_tokens(x)
    torch.testing.assert_close(branch(x)[:, :, 1], branch.fc_prob_v(v_tokens).view(2, 10, K))
    with pytest.raises(KeyError, match="unknown co-occurrence mode"):
        build(co_occurrence="nope")


def test_augment_contrastive_and_label_flags():
    batch = make_batch()
    model = build(augment=False).train()
    assert "partner" not in model(batch).extras
    no_contrast = build(contrastive=False).eval()
    total, parts = no_contrast.loss(no_contrast(batch), batch, 5)
    assert "contrastive" not in parts
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    # one source of truth: the batch carries refined labels exactly when data.labels = refined
    model = build().eval()
    out = model(batch)
    weak_batch = make_batch(refined=False)
    assert model.loss(out, batch, 5)[0].item() != pytest.approx(model.loss(out, weak_batch, 5)[0].item())
    la, lv = model.labels_of_rows(out, weak_batch)
    torch.testing.assert_close(la, weak_batch.weak)
    torch.testing.assert_close(lv, weak_batch.weak)
    la, lv = model.labels_of_rows(out, batch)
    torch.testing.assert_close((la, lv), (batch.refined_audio, batch.refined_visual))
    with pytest.raises(ValueError, match="unknown CVCMSOptions option"):
        build(labels="weak")  # the model has no label setting of its own


# ---------------------------------------------------------------------------------- registry / preset
def test_registered_with_reference_preset():
    assert MODELS.get("cvcms") is CVCMS
    cfg = PRESETS.get("cvcms")()
    cfg.validate()
    assert (cfg.model.name, cfg.data.labels, cfg.train.select) == ("cvcms", "refined", ">=")
    o = cfg.optim
    assert (o.optimizer, o.lr, o.schedule, o.step, o.gamma, o.epochs, o.batch_size) == ("adam", 7e-5, "steplr", 7, 0.5, 40, 64)
    d = CVCMS({}, InputDims(audio=(10, 128), visual=(80, 2048), motion=(10, 512))).options
    assert (d.hidden, d.heads, d.ff, d.dropout, d.occ_dim, d.occ_dropout) == (512, 1, 512, 0.4, 128, 0.25)
    assert (d.contrastive_weight, d.temperature, d.init_epoch, d.early_visual_smoothing) == (0.85, 1.0, 2, 0.9)
