"""LEAP: shapes, the hand-checked avss loss and raw-score segment probabilities, label sources, flags."""
from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.training import loss_before_and_after
from avvp.data.classes import LLP_CLASSES
from avvp.models.base import MODELS, Batch, InputDims
from avvp.models.leap import (
    LEAP_GLOVE_PHRASES,
    LabelEmbeddings,
    LeapModel,
    LeapStack,
    avss_loss,
    load_glove_label_embeddings,
    package_glove_embeddings,
)
from avvp.pseudolabels.eiou import compute_eiou
from avvp.train.config import PRESETS

K = 25
DIMS = InputDims(audio=(10, 12), visual=(80, 16), motion=(10, 8), text_dims=(("clip", 12), ("clap", 10)))
TINY = dict(hidden=16, heads=4, ffn=16, han_ff=16, mmpyr_levels=2, encoder="han")


pytestmark = pytest.mark.usefixtures("single_torch_thread")

def make_batch(b: int = 3, seed: int = 0, eiou: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pa = (torch.rand(b, 10, K, generator=g) > 0.9).float()
    pv = (torch.rand(b, 10, K, generator=g) > 0.9).float()
    return Batch(
        audio=torch.randn(b, 10, 12, generator=g), visual=torch.randn(b, 80, 16, generator=g),
        motion=torch.randn(b, 10, 8, generator=g), weak=torch.maximum(pa.amax(1), pv.amax(1)),
        index=torch.arange(b), pseudo_audio=pa, pseudo_visual=pv,
        eiou=torch.rand(b, 10, 10, generator=g) if eiou else None,
        text={"clip": torch.randn(K, 12, generator=g), "clap": torch.randn(K, 10, generator=g)},
    )


def build(**options) -> LeapModel:
    torch.manual_seed(0)
    return LeapModel({**TINY, **options}, DIMS)


# ---------------------------------------------------------------------------------- hand-checked values
def test_avss_loss_hand_checked():
    # one video, 2 audio and 2 visual segments in 2-d; cosines: a0·v0 = 1, a0·v1 = 1/√2,
    # a1·v0 = 0, a1·v1 = −1/√2 → ReLU → 0
    a = torch.tensor([[[2.0, 0.0], [0.0, -3.0]]])
    v = torch.tensor([[[5.0, 0.0], [1.0, 1.0]]])
    eiou = torch.tensor([[[1.0, 0.5], [0.0, 0.5]]])
    # squared errors: 0, (1/√2 − 0.5)² = 0.75 − 1/√2, 0, 0.25 → mean over 4 entries
    expected = (0.75 - 1 / math.sqrt(2) + 0.25) / 4  # = 0.0732233047
    assert avss_loss(a, v, eiou).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(0.0732233047, abs=1e-9)


def _identity_attention(stack: LeapStack) -> None:
    """q/k projections = identity, v/out projections = 0: the attention adds nothing to the tokens."""
    attn = stack.blocks[-1].attn
    with torch.no_grad():
        for lin, w in ((attn.q_proj, torch.eye(2)), (attn.k_proj, torch.eye(2)),
                       (attn.v_proj, torch.zeros(2, 2)), (attn.out_proj, torch.zeros(2, 2))):
            lin.weight.copy_(w)
            lin.bias.zero_()


def test_raw_score_segment_probs_one_head_hand_checked():
    stack = LeapStack(blocks=1, hidden=2, heads=1, ffn=4, dropout=0.0, attn_dropout=0.0).eval()
    _identity_attention(stack)
    labels = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # K=2 label tokens
    segments = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]]])  # T=3 segments
    _, scores = stack(labels, segments)
    # label 0 · segments = (1, 2, 0), label 1 · segments = (2, 0, −2); scaled by 1/sqrt(d_k = 2)
    r = 1 / math.sqrt(2)
    expected_scores = torch.tensor([[[1 * r, 2 * r, 0.0], [2 * r, 0.0, -2 * r]]])
    torch.testing.assert_close(scores, expected_scores)
    seg_probs = torch.sigmoid(scores.transpose(1, 2))  # (B,T,K) as LeapModel does
    expected_probs = torch.tensor([[[1 / (1 + math.exp(-r)), 1 / (1 + math.exp(-2 * r))],
                                    [1 / (1 + math.exp(-2 * r)), 0.5],
                                    [0.5, 1 / (1 + math.exp(2 * r))]]])
    torch.testing.assert_close(seg_probs, expected_probs)


def test_scores_are_recomputed_from_updated_unnormalised_tokens():
    # with identity v/out projections the attention sublayer moves the tokens; the reference computes the
    # scores from those moved tokens WITHOUT the LayerNorm (and before the FFN)
    stack = LeapStack(blocks=1, hidden=2, heads=1, ffn=4, dropout=0.0, attn_dropout=0.0).eval()
    attn = stack.blocks[0].attn
    with torch.no_grad():
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    labels = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    segments = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]]])
    ln = (labels - labels.mean(-1, keepdim=True)) / torch.sqrt(labels.var(-1, unbiased=False, keepdim=True) + 1e-5)
    attended = torch.softmax(ln @ segments.transpose(1, 2) / math.sqrt(2), dim=-1) @ segments
    updated = labels + attended
    _, scores = stack(labels, segments)
    torch.testing.assert_close(scores, updated @ segments.transpose(1, 2) / math.sqrt(2))


def test_scores_are_averaged_over_heads():
    stack = LeapStack(blocks=1, hidden=4, heads=2, ffn=4, dropout=0.0, attn_dropout=0.0).eval()
    labels, segments = torch.randn(2, 3, 4), torch.randn(2, 10, 4)
    _, scores = stack(labels, segments)
    block = stack.blocks[0]
    updated = labels + block.attn(block.norm_attn(labels), segments, segments)
    per_head = block.attn.raw_scores(updated, segments)
    assert per_head.shape == (2, 2, 3, 10)
    torch.testing.assert_close(scores, per_head.mean(dim=1))


# ---------------------------------------------------------------------------------- model
@pytest.mark.parametrize("encoder", ["han", "mmpyr"])
def test_shapes_and_global_or(encoder):
    model = build(encoder=encoder).eval()
    batch = make_batch()
    out = model(batch)
    assert out.audio_seg.shape == out.visual_seg.shape == (3, 10, K)
    assert out.video.shape == out.audio_video.shape == out.visual_video.shape == (3, K)
    expected = ((out.audio_video >= 0.5) | (out.visual_video >= 0.5)).float()
    torch.testing.assert_close(out.video, expected)
    assert not out.video.requires_grad  # binary OR: no gradient, as in the reference
    torch.testing.assert_close(out.audio_seg, torch.sigmoid(out.extras["audio_scores"]))


def test_loss_parts_match_their_definitions():
    model = build().eval()
    batch = make_batch()
    out = model(batch)
    total, parts = model.loss(out, batch, epoch=1)
    clamp = lambda p: p.clamp(1e-7, 1 - 1e-7)  # noqa: E731
    pa, pv = batch.pseudo_audio.amax(1), batch.pseudo_visual.amax(1)
    assert parts["bce_audio"] == pytest.approx(F.binary_cross_entropy(clamp(out.audio_video), pa).item(), rel=1e-5)
    assert parts["bce_visual"] == pytest.approx(F.binary_cross_entropy(clamp(out.visual_video), pv).item(), rel=1e-5)
    assert parts["bce_seg_visual"] == pytest.approx(
        F.binary_cross_entropy(clamp(out.visual_seg), batch.pseudo_visual).item(), rel=1e-5)
    cos = F.normalize(out.extras["audio_encoded"], dim=-1) @ F.normalize(out.extras["visual_encoded"], dim=-1).transpose(1, 2)
    # default target: the reference code's EIoU computed from the batch's pseudo-labels
    code = torch.from_numpy(compute_eiou(batch.pseudo_audio.numpy(), batch.pseudo_visual.numpy(), "leap-code"))
    assert parts["avss"] == pytest.approx(((cos.relu() - code) ** 2).mean().item(), rel=1e-5)
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    stored = build(eiou="store").eval()
    assert stored.loss(out, batch, 1)[1]["avss"] == pytest.approx(((cos.relu() - batch.eiou) ** 2).mean().item(), rel=1e-5)
    paper = torch.from_numpy(compute_eiou(batch.pseudo_audio.numpy(), batch.pseudo_visual.numpy(), "paper"))
    assert build(eiou="paper").loss(out, batch, 1)[1]["avss"] == pytest.approx(
        ((cos.relu() - paper) ** 2).mean().item(), rel=1e-5)


def test_training_step_reduces_loss():
    before, after = loss_before_and_after(build(), make_batch(b=4), 15, epoch=1)
    assert after < before


def test_missing_targets_raise_clear_errors():
    model = build(eiou="store").eval()
    batch = make_batch(eiou=False)
    with pytest.raises(ValueError, match="eiou"):
        model.loss(model(batch), batch, 1)
    build(avss=False).loss(model(batch), batch, 1)  # no EIoU needed without L_avss
    build().loss(model(batch), batch, 1)  # the default computes it from the pseudo-labels (import stores)
    with pytest.raises(ValueError, match="eiou must be one of"):
        build(eiou="nope")
    batch.pseudo_audio = None
    with pytest.raises(ValueError, match="pseudo"):
        model.loss(model(batch), batch, 1)


# ---------------------------------------------------------------------------------- flags
def test_blocks_flag_changes_parameters_and_outputs():
    counts = {n: sum(p.numel() for p in build(blocks=n).parameters()) for n in (1, 2, 4)}
    assert counts[1] < counts[2] < counts[4]
    batch = make_batch()
    one, two = build(blocks=1).eval(), build(blocks=2).eval()
    a, b = one(batch).audio_seg, two(batch).audio_seg
    assert not torch.allclose(a, b)
    assert (~torch.isclose(a, b)).flatten(1).any(dim=1).all()  # a second block changes every video's segments


def test_avss_flag_changes_loss():
    batch = make_batch()
    on, off = build(avss=True).eval(), build(avss=False).eval()
    out = on(batch)
    l_on, p_on = on.loss(out, batch, 1)
    l_off, p_off = off.loss(out, batch, 1)
    assert "avss" in p_on and "avss" not in p_off
    assert l_on.item() == pytest.approx(l_off.item() + p_on["avss"], rel=1e-6)


def test_encoder_flag_selects_the_encoder():
    from avvp.models.blocks import HANEncoder
    from avvp.models.mmpyr import MMPyramidEncoder

    assert isinstance(build(encoder="han").encoder, HANEncoder)
    assert isinstance(build(encoder="mmpyr").encoder, MMPyramidEncoder)
    with pytest.raises(ValueError, match="unknown LEAP encoder"):
        build(encoder="nope")


def test_label_source_reads_batch_text():
    batch = make_batch()
    clip, clap = build(label_source="clip").eval(), build(label_source="clap").eval()
    assert clip.labels.fc_l.in_features == 12 and clap.labels.fc_l.in_features == 10
    out1, clap_out1 = clip(batch).audio_seg, clap(batch).audio_seg
    batch.text = {**batch.text, "clip": batch.text["clip"] * 2.0}
    out2 = clip(batch).audio_seg
    assert not torch.allclose(out1, out2)
    # the label text feeds every class of every video (a label token per class) ...
    assert (~torch.isclose(out1, out2)).any(dim=1).all()
    # ... and only the model that reads /text/clip: the clap-labelled model ignores it
    torch.testing.assert_close(clap(batch).audio_seg, clap_out1, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"/text/clip.*label_source=glove"):
        LeapModel({**TINY, "label_source": "clip"}, InputDims(audio=(10, 12), visual=(80, 16), motion=(10, 8)))
    with pytest.raises(ValueError, match="label_source"):
        build(label_source="bert")


# ---------------------------------------------------------------------------------- GloVe files
def test_glove_pt_mapping(tmp_path):
    vectors = OrderedDict((phrase, torch.full((6,), float(i))) for i, phrase in enumerate(LEAP_GLOVE_PHRASES))
    torch.save(vectors, tmp_path / "glove.pt")
    table = load_glove_label_embeddings(tmp_path / "glove.pt")
    assert table.shape == (25, 6)
    torch.testing.assert_close(table[:, 0], torch.arange(25, dtype=torch.float32))
    # the LLP class names are accepted too; a shuffled order is refused
    torch.save(OrderedDict((c, torch.zeros(6)) for c in LLP_CLASSES), tmp_path / "llp.pt")
    assert load_glove_label_embeddings(tmp_path / "llp.pt").shape == (25, 6)
    shuffled = OrderedDict(reversed(list(vectors.items())))
    torch.save(shuffled, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="LLP order"):
        load_glove_label_embeddings(tmp_path / "bad.pt")
    model = build(label_source=f"glove:{tmp_path / 'glove.pt'}")
    assert model.labels.fc_l.in_features == 6
    assert model(make_batch()).audio_seg.shape == (3, 10, K)


def test_glove_txt_averages_phrase_words(tmp_path):
    words = sorted({w for p in LEAP_GLOVE_PHRASES for w in p.lower().split()})
    vec = {w: [float(i), float(-i), 1.0] for i, w in enumerate(words)}
    lines = ["the 9 9 9"] + [f"{w} {' '.join(str(x) for x in vec[w])}" for w in words]
    (tmp_path / "glove.txt").write_text("\n".join(lines) + "\n")
    table = load_glove_label_embeddings(tmp_path / "glove.txt")
    cry = LEAP_GLOVE_PHRASES.index("Baby cry infancy cry")
    # (baby + cry + infancy + cry) / 4
    expected = [(vec["baby"][j] + 2 * vec["cry"][j] + vec["infancy"][j]) / 4 for j in range(3)]
    torch.testing.assert_close(table[cry], torch.tensor(expected))
    torch.testing.assert_close(table[LEAP_GLOVE_PHRASES.index("Dog")], torch.tensor(vec["dog"]))
    (tmp_path / "short.txt").write_text("dog 1 2 3\n")
    with pytest.raises(ValueError, match="no vector for"):
        load_glove_label_embeddings(tmp_path / "short.txt")
    with pytest.raises(FileNotFoundError):
        LabelEmbeddings(f"glove:{tmp_path / 'missing.pt'}", DIMS, 8)


def test_label_scale_multiplies_the_fixed_table_before_fc_l():
    batch = make_batch()
    one, hundred = LabelEmbeddings("clip", DIMS, 8), LabelEmbeddings("clip", DIMS, 8, scale=100.0)
    hundred.load_state_dict(one.state_dict())
    torch.testing.assert_close(hundred(batch), one.fc_l(100.0 * batch.text["clip"]))
    assert build(label_scale=100.0).labels.scale == 100.0
    with pytest.raises(ValueError, match="label_scale"):
        build(label_scale=0.0)


def test_unit_norm_label_embeddings_collapse_the_class_tokens_at_init():
    """The benchmark failure mode (docs/models/leap.md): unit-norm text rows (the store's /text/clip)
    give fc_l tokens far smaller than the attention output, so after the stack the 25 label tokens are
    nearly the same vector and neither head can tell classes apart; label_scale restores their identity."""
    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(K, 768, generator=g), dim=-1)  # like CLIP text rows
    dims = InputDims(audio=(10, 12), visual=(80, 16), motion=(10, 8), text_dims=(("clip", 768),))
    batch = dataclasses.replace(make_batch(), text={"clip": text})

    def token_cosine(scale: float, source: str = "clip") -> float:
        torch.manual_seed(0)
        model = LeapModel({**TINY, "hidden": 128, "ffn": 128, "han_ff": 128, "label_scale": scale,
                           "label_source": source}, dims).eval()
        with torch.no_grad():
            tokens = F.normalize(model(batch).extras["audio_label_tokens"][0], dim=-1)
        off = tokens @ tokens.T
        return float((off.sum() - off.diagonal().sum()) / (K * (K - 1)))

    assert token_cosine(1.0) > 0.95  # measured 0.967 here; 0.999 in the trained benchmark run
    assert token_cosine(100.0) < 0.2  # measured 0.025
    assert token_cosine(1.0, "glove") < 0.8  # LEAP's own GloVe rows (norm ~6.15), scale 1: measured 0.636


# ---------------------------------------------------------------------------------- registry / preset
def test_registered_with_reference_preset():
    assert MODELS.get("leap") is LeapModel
    cfg = PRESETS.get("leap")()
    cfg.validate()
    assert (cfg.model.name, cfg.data.labels, cfg.train.seed, cfg.train.select) == ("leap", "pseudo", 1, ">=")
    o = cfg.optim
    assert (o.optimizer, o.lr, o.schedule, o.step, o.gamma, o.epochs, o.batch_size) == ("adam", 1e-4, "steplr", 10, 0.1, 30, 32)
    defaults = LeapModel({}, InputDims(audio=(10, 128), visual=(80, 2048), motion=(10, 512), text_dims=(("clip", 768),))).options
    assert (defaults.encoder, defaults.blocks, defaults.hidden, defaults.heads, defaults.ffn) == ("mmpyr", 2, 512, 8, 512)
    assert (defaults.dropout, defaults.attn_dropout, defaults.avss_weight) == (0.2, 0.1, 1.0)
    # LEAP's own label embeddings by default: the released GloVe 6B 300-d rows, fc_l = Linear(300, 512)
    assert (defaults.label_source, defaults.label_scale, defaults.eiou) == ("glove", 1.0, "leap-code")
    assert cfg.model.options.get("label_scale", 1.0) == 1.0


def test_packaged_glove_rows_are_leaps_release():
    """The package data: (25, 300) float32, LEAP's phrases in LLP order, mean row norm 6.15 (README)."""
    table = package_glove_embeddings()
    assert table.shape == (25, 300) and table.dtype == torch.float32
    assert table.norm(dim=1).mean().item() == pytest.approx(6.15, abs=0.01)
    assert len({tuple(r.tolist()) for r in table}) == 25  # 25 distinct rows
    model = LeapModel({**TINY}, InputDims(audio=(10, 12), visual=(80, 16), motion=(10, 8)))  # no text rows needed
    assert model.labels.fc_l.in_features == 300
    torch.testing.assert_close(model.labels.table, table)
    assert model(make_batch()).audio_seg.shape == (3, 10, K)
    with pytest.raises(ValueError, match="25 LLP classes"):
        LeapModel({**TINY}, InputDims(audio=(10, 12), visual=(80, 16), motion=(10, 8), num_classes=3))
