"""LINK: hand-checked piecewise λ (Eq. 11), S-LOSS value, segment IoU, TSAM/CMIM/PLSIM pieces, the
Table II switches, clear errors, and that a tiny model learns."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers.training import fit_one_batch
from avvp.models.base import MODELS, Batch, InputDims
from avvp.models.link import (
    CMIM, LINK, TSAM, LINKOptions, label_text_features, piecewise_lambda, segment_iou, sloss_avss,
)
from avvp.pseudolabels.eiou import eiou_paper
from avvp.train.config import preset
from tests.helpers.stores import synthetic_store

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = 25
E = math.e
TINY = LINKOptions(hidden=32, heads=2, ff=32, layers=1)
# PLSIM with PyTorch's default init, so that its inputs move the outputs of an untrained model
TINY_P = replace(TINY, plsim_zero_init=False)
DIMS = InputDims(audio=(64, 24), visual=(10, 20), motion=(10, 16), text_dims=(("clap", 8), ("clip", 12)))


def make_batch(b: int = 4, seed: int = 0, planted: bool = False) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pa = (torch.rand(b, 10, K, generator=g) > 0.85).float()
    pv = (torch.rand(b, 10, K, generator=g) > 0.85).float()
    if planted:  # features carry the labels, so a model can learn them
        audio = pa[:, torch.arange(64) * 10 // 64] @ torch.randn(K, 24, generator=g)
        visual = pv @ torch.randn(K, 20, generator=g)
    else:
        audio, visual = torch.randn(b, 64, 24, generator=g), torch.randn(b, 10, 20, generator=g)
    audio = audio + 0.1 * torch.randn(audio.shape, generator=g)
    batch = Batch(audio=audio, visual=visual, motion=torch.randn(b, 10, 16, generator=g),
                  weak=torch.maximum(pa.amax(1), pv.amax(1)), index=torch.arange(b), pseudo_audio=pa, pseudo_visual=pv,
                  text={"clap": torch.randn(K, 8, generator=g), "clip": torch.randn(K, 12, generator=g)})
    # unmasked teacher labels for PLSIM: the pseudo-labels plus teacher false positives outside the weak label
    batch.teacher_audio = torch.maximum(pa, (torch.rand(b, 10, K, generator=g) > 0.97).float())
    batch.teacher_visual = torch.maximum(pv, (torch.rand(b, 10, K, generator=g) > 0.97).float())
    return batch


def build(opts: LINKOptions, seed: int = 0) -> LINK:
    torch.manual_seed(seed)
    return LINK(opts, DIMS)


def test_registered_and_preset():
    assert MODELS.get("link") is LINK
    cfg = preset("link")
    assert cfg.model.name == "link" and cfg.data.labels == "pseudo" and cfg.train.select == ">"
    assert (cfg.data.audio, cfg.data.visual, cfg.data.motion) == ("clap_tokens", "clip", "r2plus1d")
    assert (cfg.optim.lr, cfg.optim.lr_min, cfg.optim.epochs, cfg.optim.batch_size) == (3e-4, 3e-6, 60, 64)
    full = LINKOptions()
    assert full.tsam and full.sloss and full.plsim and (full.hidden, full.layers, full.heads) == (256, 4, 8)
    with pytest.raises(ValueError, match="plsim_labels"):
        LINKOptions(plsim_labels="gt")


def test_piecewise_lambda_each_piece():
    s = torch.tensor([-1.0, -0.5, -0.2, -0.1, -1e-6, 0.0, 0.5, 1.0])
    got = piecewise_lambda(s, torch.tensor(0.0))  # μ = 0 → e^{|1-μ|} = e
    expected = [1.0, 1.0, 1.0, E, E, E, E + (1 - E) * 0.5, 1.0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    got = piecewise_lambda(torch.tensor([-0.3, -0.1, 0.25]), torch.tensor(3.0))  # |1-3| = 2 → e²
    np.testing.assert_allclose(got.numpy(), [1.0, E**2, E**2 + (1 - E**2) * 0.25], rtol=1e-6)
    # μ = 1 → every piece is 1 (the weighting vanishes)
    np.testing.assert_allclose(piecewise_lambda(s, torch.tensor(1.0)).numpy(), np.ones(8), rtol=1e-6)


def test_sloss_value_hand_checked():
    s = torch.tensor([[[0.5, -0.1], [-0.5, 0.0]]])
    r = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]])
    mu = torch.tensor(0.0, requires_grad=True)
    # λ = [[(1+e)/2, e], [1, e]], (s-r)² = [[0.25, 0.01], [0.25, 0.25]]
    expected = ((1 + E) / 2 * 0.25 + E * 0.01 + 1.0 * 0.25 + E * 0.25) / 4
    loss = sloss_avss(s, r, mu)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # dλ/dμ in the weighted pieces: d e^{|1-μ|}/dμ = -e at μ = 0; the s ≥ 0 piece scales by (1 - s)
    expected_grad = (-E * (1 - 0.5) * 0.25 - E * 0.01 - E * (1 - 0.0) * 0.25) / 4
    assert mu.grad.item() == pytest.approx(expected_grad, rel=1e-6)
    assert sloss_avss(s, r, None).item() == pytest.approx((0.25 + 0.01 + 0.25 + 0.25) / 4)


def test_segment_iou_hand_checked_and_matches_store_definition():
    pa = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    pv = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    # A0={0,1}: V0={1} → 1/2, V1={0,1,2} → 2/3; A1=∅: V0 → 0/1 = 0, V1 → 0
    np.testing.assert_allclose(segment_iou(pa, pv).numpy(), [[[0.5, 2 / 3], [0.0, 0.0]]], rtol=1e-6)
    assert segment_iou(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3)).sum() == 0  # both empty → 0
    g = torch.Generator().manual_seed(0)
    a, v = (torch.rand(3, 10, K, generator=g) > 0.8).float(), (torch.rand(3, 10, K, generator=g) > 0.8).float()
    np.testing.assert_allclose(segment_iou(a, v).numpy(), eiou_paper(a.numpy(), v.numpy()), rtol=1e-6)


def test_tsam_and_cmim_hand_checked():
    tsam = TSAM(10, 6, 2, 7, residual=False)
    for p in tsam.parameters():
        torch.nn.init.zeros_(p)
    f = torch.randn(2, 10, 6)
    # zero MLP and conv: W = σ(0) = 0.5 per segment, S = σ(0) = 0.5 per feature → f̂ = 0.25 f
    torch.testing.assert_close(tsam(f), 0.25 * f)
    cmim = CMIM(6, scaled=True, init=0.0)  # α = 0: no cross-modal term, f_out = f + (f + 0)
    fa, fv = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    oa, ov = cmim(fa, fv)
    torch.testing.assert_close(oa, 2 * fa)
    torch.testing.assert_close(ov, 2 * fv)
    cmim = CMIM(6, scaled=False, init=1.0)
    oa, _ = cmim(fa, fv)
    torch.testing.assert_close(oa, 2 * fa + torch.softmax(fa @ fv.transpose(1, 2), -1) @ fv)


def test_label_text_features():
    labels = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    text = torch.tensor([[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]])
    np.testing.assert_allclose(label_text_features(labels, text, "mean").numpy(), [[[2.0, 2.0], [0.0, 0.0]]])
    np.testing.assert_allclose(label_text_features(labels, text, "sum").numpy(), [[[4.0, 4.0], [0.0, 0.0]]])


def test_shapes_and_probabilities():
    out = build(TINY).eval()(make_batch())
    assert out.audio_seg.shape == out.visual_seg.shape == (4, 10, K)
    assert out.video.shape == out.audio_video.shape == (4, K)
    assert out.extras["similarity"].shape == (4, 10, 10)
    assert torch.all((out.audio_seg >= 0) & (out.audio_seg <= 1))
    torch.testing.assert_close(out.extras["similarity"].abs().amax() <= 1 + 1e-5, torch.tensor(True))


@pytest.mark.parametrize("change", [{"tsam": False}, {"plsim": False}, {"cmim": False}, {"position": "post_encoder"},
                                    {"plsim_pool": "sum"}, {"plsim_labels": "masked"}])
def test_architecture_switches_change_outputs(change):
    batch = make_batch()
    full, ablated = build(TINY_P).eval(), build(replace(TINY_P, **change)).eval()
    a, b = full(batch).audio_seg, ablated(batch).audio_seg
    assert not torch.allclose(a, b)
    assert (~torch.isclose(a, b)).flatten(1).any(dim=1).all()  # the switch changes every video's segments


def test_sloss_switches_change_the_loss():
    batch = make_batch()
    model = build(TINY).train()
    torch.manual_seed(1)
    out = model(batch)
    total, parts = model.loss(out, batch, 1)
    parts["total"] = total.item()
    assert {"label", "avss", "mu"} <= set(parts)
    total.backward()
    assert model.mu.grad is not None and model.mu.grad.item() != 0.0
    for change, gone in (({"sloss": False}, {"label", "avss", "mu"}), ({"label_loss": False}, {"label"}),
                         ({"avss_weighting": "uniform"}, {"mu"})):
        m = build(replace(TINY, **change)).train()
        torch.manual_seed(1)
        t, p = m.loss(m(batch), batch, 1)
        p["total"] = t.item()
        assert not (gone & set(p)) and p["total"] != pytest.approx(parts["total"])
        # the same forward (same seed, same weights): only the switched terms leave or change the total
        kept = {"global", "audio_seg", "visual_seg", "label", "avss"} & set(p)
        assert p["total"] == pytest.approx(sum(p[k] for k in kept), rel=1e-5)
        reweighted = {"avss"} if "mu" in gone else set()  # uniform weighting: AVSS without mu changes
        same = kept - reweighted
        assert {k: p[k] for k in same} == pytest.approx({k: parts[k] for k in same}, rel=1e-5)
        assert all(p[k] != pytest.approx(parts[k]) for k in reweighted & set(p))
    assert "mu" not in dict(build(replace(TINY, sloss=False)).named_parameters())
    # the store's EIoU target is used when asked for, and its absence is a clear error
    m = build(replace(TINY, avss_target="store")).train()
    with pytest.raises(ValueError, match="eiou"):
        m.loss(m(batch), batch, 1)
    batch.eiou = segment_iou(batch.pseudo_audio, batch.pseudo_visual)
    torch.manual_seed(1)
    _, p = m.loss(m(batch), batch, 1)
    assert p["avss"] == pytest.approx(parts["avss"], rel=1e-5)


def test_plsim_needs_teacher_labels_and_texts():
    batch = make_batch()
    del batch.teacher_audio
    with pytest.raises(ValueError, match="teacher_audio"):
        build(TINY)(batch)
    with pytest.raises(ValueError, match="/text/clap"):
        LINK(TINY, replace(DIMS, text_dims=(("clip", 12),)))
    build(replace(TINY, plsim=False))(batch)  # without PLSIM neither is needed


def test_tiny_model_fits_a_batch():
    batch = make_batch(16, seed=3, planted=True)
    model = build(TINY)
    history = fit_one_batch(model, batch, 60, optimizer=torch.optim.AdamW)
    first, basic = (parts["global"] + parts["audio_seg"] + parts["visual_seg"] for _, parts in (history[0], history[-1]))
    assert basic < 0.5 * first


@pytest.fixture(scope="module")
def link_store(tmp_path_factory):
    """Tiny synthetic store (CLAP tokens / CLIP / R(2+1)D, /zeroshot/*, /text/*) + the pseudo-label stage."""
    return synthetic_store(tmp_path_factory.mktemp("link") / "syn.h5")


def tiny_link_cfg(store, out):
    from avvp.train.config import apply_override

    cfg = preset("link")
    cfg.data.store, cfg.train.out, cfg.train.progress, cfg.train.device = str(store), str(out), False, "cpu"
    cfg.optim.epochs, cfg.optim.batch_size = 2, 8
    for o in ("hidden=16", "layers=1", "heads=2", "ff=16"):
        cfg = apply_override(cfg, f"model.options.{o}")
    return cfg


def test_preset_with_plsim_trains_end_to_end_with_the_trainer(link_store, tmp_path):
    """The paper's PLSIM (unmasked teacher labels) through the trainer: the model asks for the "teacher"
    input, the trainer loads it for every split, two epochs train and predict."""
    from avvp.models import required_inputs
    from avvp.train.loop import Trainer, load_model

    cfg = tiny_link_cfg(link_store, tmp_path / "run")
    assert cfg.model.options.get("plsim", True) and required_inputs("link", cfg.model.options) == ("teacher",)
    assert required_inputs("link", {"plsim": False}) == required_inputs("han", {}) == ()
    assert required_inputs("link", {"plsim_labels": "masked"}) == ()
    trainer = Trainer(cfg)
    for split in ("train", "val", "test"):  # PLSIM reads them at inference too
        t = trainer.data[split].targets
        assert t.teacher_audio is not None and t.teacher_visual is not None
        assert t.teacher_audio.shape == (len(trainer.data[split]), 10, K)
    batch = trainer.data["val"].batch(torch.arange(3))
    assert batch.teacher_audio.shape == (3, 10, K) and batch.pseudo_audio is None
    result = trainer.fit()
    assert result.test is not None and 0.0 <= result.val.segment.type <= 100.0
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert isinstance(model, LINK) and ckpt.model_options["tsam"] and ckpt.model_options["plsim"]


def test_teacher_labels_hand_computed_for_a_planted_video(link_store, tmp_path):
    """batch.teacher_* = logit > threshold (strict), NO weak-label mask, thresholds as /pseudo/* records them."""
    import shutil

    import h5py

    from avvp.cli.pseudolabel import main as pseudolabel_main
    from avvp.data.store import Store
    from avvp.data.synthetic import VALOR_CLAP_THRESHOLDS, VALOR_CLIP_THRESHOLDS
    from avvp.train.config import DataConfig
    from avvp.train.data import TrainingData

    store = tmp_path / "planted.h5"
    shutil.copy(link_store, store)
    with Store(store) as s:
        vid = str(s.split_ids("val")[0])
        row = int(s.index([vid])[0])
        weak = s.read("labels/weak", [vid])[0]
        other = int(np.flatnonzero(weak == 0)[0])  # a class NOT in the video's weak label
    clip_thr = np.asarray(VALOR_CLIP_THRESHOLDS, np.float32)
    planted = np.full((10, K), -100.0, np.float32)
    planted[2:5, other] = clip_thr[other] + 0.5  # above threshold outside the weak label: kept (unmasked)
    planted[7, 3] = clip_thr[3]  # exactly the threshold: strict > → 0
    planted[8, 4] = clip_thr[4] + 1e-3
    clap = np.full((10, K), -100.0, np.float32)
    clap[0, :] = np.asarray(VALOR_CLAP_THRESHOLDS, np.float32) + 1.0  # every class on in segment 0
    with h5py.File(store, "r+") as f:
        f["zeroshot/clip"][row] = planted
        f["zeroshot/clap"][row] = clap
    expected_v = np.zeros((10, K), np.float32)
    expected_v[2:5, other] = 1
    expected_v[8, 4] = 1
    expected_a = np.zeros((10, K), np.float32)
    expected_a[0, :] = 1

    def teacher():
        cfg = DataConfig(store=str(store), audio="clap_tokens", visual="clip", labels="pseudo")
        data = TrainingData(cfg, splits=("val",), inputs=("teacher",))
        i = list(data["val"].ids).index(vid)
        b = data["val"].batch(torch.tensor([i]))
        return b.teacher_audio[0].numpy(), b.teacher_visual[0].numpy()

    ta, tv = teacher()
    np.testing.assert_array_equal(tv, expected_v)
    np.testing.assert_array_equal(ta, expected_a)
    assert tv[:, other].sum() == 3 and weak[other] == 0  # the weak-label mask is NOT applied
    # thresholds recorded by avvp-pseudolabel in /pseudo/visual's attributes are the ones used
    custom = clip_thr.copy()
    custom[other] = clip_thr[other] + 1.0  # now the planted +0.5 is below
    assert pseudolabel_main(["--data", str(store), "--clip-thresholds", ",".join(str(float(v)) for v in custom)]) == 0
    ta, tv = teacher()
    expected_v[2:5, other] = 0
    np.testing.assert_array_equal(tv, expected_v)
    np.testing.assert_array_equal(ta, expected_a)


def test_missing_zero_shot_logits_name_the_dataset(link_store, tmp_path):
    import shutil

    import h5py

    from avvp.train.labels import MissingTargetsError
    from avvp.train.loop import Trainer

    store = tmp_path / "no_clap.h5"
    shutil.copy(link_store, store)
    with h5py.File(store, "r+") as f:
        del f["zeroshot/clap"]
    with pytest.raises(MissingTargetsError, match="/zeroshot/clap"):
        Trainer(tiny_link_cfg(store, tmp_path / "run"))
    cfg = tiny_link_cfg(store, tmp_path / "run_off")
    cfg.model.options["plsim"] = False  # without PLSIM the logits are not read
    Trainer(cfg)


def test_freeze_mu_keeps_mu_fixed_and_out_of_the_parameters():
    batch = make_batch()
    frozen = build(replace(TINY, freeze_mu=True, mu_init=0.5)).train()
    assert "mu" not in dict(frozen.named_parameters()) and "mu" in frozen.state_dict()
    total, parts = frozen.loss(frozen(batch), batch, 1)
    total.backward()
    assert parts["mu"] == pytest.approx(0.5)
    opt = torch.optim.AdamW(frozen.parameters(), lr=1e-1)
    opt.step()
    assert float(frozen.mu) == pytest.approx(0.5)
    # the learnable μ is pushed towards 1: d loss / d μ < 0 for μ < 1 (λ's middle/upper pieces shrink)
    free = build(replace(TINY, mu_init=0.0)).train()
    loss, _ = free.loss(free(batch), batch, 1)
    loss.backward()
    assert free.mu.grad.item() < 0


def test_plsim_from_stored_pseudo_labels_and_packaged_glove_rows():
    """The `link-release` variant: no teacher labels and no /text rows needed (released features)."""
    from avvp.models.leap import package_glove_embeddings
    from avvp.train.config import PRESETS

    batch = make_batch()
    batch.teacher_audio = batch.teacher_visual = None
    batch.text = {}
    opts = replace(TINY_P, plsim_labels="stored", plsim_text="glove")
    model = LINK(opts, replace(DIMS, text_dims=())).eval()
    assert LINK.required_inputs(opts) == ("stored_pseudo",)
    with pytest.raises(ValueError, match="stored_pseudo_audio"):
        model(batch)
    batch.stored_pseudo_audio, batch.stored_pseudo_visual = batch.pseudo_audio, batch.pseudo_visual
    out = model(batch)
    torch.testing.assert_close(model.plsim_glove, package_glove_embeddings())
    batch.stored_pseudo_audio = batch.pseudo_audio.clone()
    batch.stored_pseudo_audio[0] = 0  # the labels reach the features: of their own video only
    changed = (~torch.isclose(out.audio_seg, model(batch).audio_seg)).flatten(1).any(dim=1)
    assert changed[0] and not changed[1:].any()
    cfg = PRESETS.get("link-release")()
    assert cfg.model.options == {"plsim_labels": "stored", "plsim_text": "glove", "plsim_label_dropout": 0.8}
    assert cfg.data.labels == "pseudo"
    with pytest.raises(ValueError, match="plsim_text=glove"):
        LINK(TINY, replace(DIMS, text_dims=()))
