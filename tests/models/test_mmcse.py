"""MM-CSE: shapes, hand-checked special losses (orthogonality, event co-occurrence), ablation switches,
the Fig. 4 co-occurrence export, and that a tiny model learns."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers.training import fit_one_batch
from avvp.models.base import MODELS, Batch, InputDims, ModelOutput
from avvp.models.mmcse import (
    DECOUPLING_MODES, MMCSE, MMCSEOptions, cooccurrence_map, cooccurrence_targets, orthogonality_loss,
    save_cooccurrence_png,
)
from avvp.train.config import preset
from tests.helpers.stores import synthetic_store

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = 25
TINY = MMCSEOptions(hidden=32, token_dim=16, layers=2, heads=2, ff=32)
DIMS = InputDims(audio=(64, 24), visual=(10, 20), motion=(10, 16))


def make_batch(b: int = 4, seed: int = 0, k: int = K) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        audio=torch.randn(b, 64, 24, generator=g), visual=torch.randn(b, 10, 20, generator=g),
        motion=torch.randn(b, 10, 16, generator=g), weak=(torch.rand(b, k, generator=g) > 0.8).float(),
        index=torch.arange(b), pseudo_audio=(torch.rand(b, 10, k, generator=g) > 0.8).float(),
        pseudo_visual=(torch.rand(b, 10, k, generator=g) > 0.8).float(),
    )


def planted_batch(b: int = 16, seed: int = 0, k: int = K) -> Batch:
    """Labels a model can learn: each feature is the sum of class directions of its segment's labels."""
    g = torch.Generator().manual_seed(seed)
    pa = (torch.rand(b, 10, k, generator=g) > 0.85).float()
    pv = (torch.rand(b, 10, k, generator=g) > 0.85).float()
    seg_of_token = torch.arange(64) * 10 // 64
    audio = pa[:, seg_of_token] @ torch.randn(k, 24, generator=g) + 0.1 * torch.randn(b, 64, 24, generator=g)
    visual = pv @ torch.randn(k, 20, generator=g) + 0.1 * torch.randn(b, 10, 20, generator=g)
    weak = torch.maximum(pa.amax(1), pv.amax(1))
    return Batch(audio=audio, visual=visual, motion=torch.randn(b, 10, 16, generator=g), weak=weak,
                 index=torch.arange(b), pseudo_audio=pa, pseudo_visual=pv)


def build(opts: MMCSEOptions, dims: InputDims = DIMS, seed: int = 0) -> MMCSE:
    torch.manual_seed(seed)
    return MMCSE(opts, dims)


def test_registered_and_preset():
    assert MODELS.get("mmcse") is MMCSE
    cfg = preset("mmcse")
    assert cfg.model.name == "mmcse" and cfg.train.gate == "mmcse" and cfg.train.select == ">"
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.batch_size, cfg.optim.epochs) == (3e-4, 1e-3, 64, 60)
    assert (cfg.data.audio, cfg.data.visual, cfg.data.motion, cfg.data.labels) == ("clap_tokens", "clip", "r2plus1d", "pseudo")
    full = MMCSEOptions()
    assert (full.hidden, full.token_dim, full.layers, full.heads) == (256, 128, 4, 8)
    assert (full.rec_weight, full.ort_weight, full.ec_weight) == (0.5, 0.1, 0.1)
    with pytest.raises(ValueError, match="unknown MMCSEOptions option"):
        MMCSE({"nonsense": 1}, DIMS)
    with pytest.raises(ValueError, match="decoupling"):
        MMCSEOptions(decoupling="bogus")


@pytest.mark.parametrize("mode", DECOUPLING_MODES)
def test_shapes_every_decoupling(mode):
    model = build(replace(TINY, decoupling=mode)).eval()
    out = model(make_batch())
    assert out.audio_seg.shape == out.visual_seg.shape == (4, 10, K)
    assert out.video.shape == out.audio_video.shape == out.visual_video.shape == (4, K)
    for p in (out.audio_seg, out.visual_seg, out.video):
        assert torch.all((p >= 0) & (p <= 1))
    for pair in ("aa", "av", "vv", "va"):
        beta = out.extras[f"map_{pair}"]
        assert beta.shape == (4, 10, K if mode != "none" else 1, K if mode != "none" else 1)
        torch.testing.assert_close(beta.sum(-1), torch.ones(beta.shape[:-1]))  # softmax rows


def test_orthogonality_loss_hand_checked():
    # K = 2 event tokens (3,4), (0,-1) and background (1,0), one segment
    dec = torch.tensor([[[[3.0, 4.0], [0.0, -1.0], [1.0, 0.0]]]])
    # per class (paper Eq. 9, code audio): mean(cos((3,4),(1,0)), cos((0,-1),(1,0))) = mean(3/5, 0) = 0.3
    assert orthogonality_loss(dec, 2, "per_class").item() == pytest.approx(0.3)
    # class mean (code visual): cos((1.5,1.5),(1,0)) = 1/sqrt(2)
    assert orthogonality_loss(dec, 2, "class_mean").item() == pytest.approx(1 / math.sqrt(2))


def test_cooccurrence_targets_hand_checked():
    pa = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])  # (B=1, T=2, K=3)
    pv = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    t = cooccurrence_targets(pa, pv)
    assert t["aa"][0, 0].tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 1]]
    assert t["av"][0, 0].tolist() == [[0, 1, 0], [0, 0, 0], [0, 1, 0]]
    assert t["va"][0, 0].tolist() == [[0, 0, 0], [1, 0, 1], [0, 0, 0]]
    assert t["vv"][0, 0].tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert t["vv"][0, 1].tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert t["aa"][0, 1].sum() == 0 and t["av"][0, 1].sum() == 0


def test_ec_loss_value_hand_checked():
    k = 3
    dims = replace(DIMS, num_classes=k)
    model = build(replace(TINY, basic_loss=False, rec_loss=False, ort_loss=False), dims)
    pa = torch.tensor([[[1.0, 0.0, 1.0]] + [[0.0, 0.0, 0.0]] * 9])
    pv = torch.tensor([[[0.0, 1.0, 0.0]] + [[0.0, 0.0, 0.0]] * 9])
    batch = Batch(audio=torch.zeros(1, 64, 24), visual=torch.zeros(1, 10, 20), motion=None, weak=torch.ones(1, k),
                  index=torch.arange(1), pseudo_audio=pa, pseudo_visual=pv)
    u = torch.full((1, 10, k, k), 1 / k)
    out = ModelOutput(video=torch.full((1, k), 0.5), audio_seg=torch.zeros(1, 10, k), visual_seg=torch.zeros(1, 10, k),
                      extras={"map_aa": u, "map_av": u, "map_vv": u, "map_va": u})
    total, parts = model.loss(out, batch, 1)
    n = 10 * k * k  # entries per map; the targets hold 4 (aa), 2 (av), 1 (vv), 2 (va) ones
    mse = lambda ones: (ones * (1 - 1 / k) ** 2 + (n - ones) * (1 / k) ** 2) / n  # noqa: E731
    expected = mse(4) + mse(2) + mse(1) + mse(2)
    assert parts["ec"] == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(0.1 * expected, rel=1e-6)


def test_losses_present_and_switchable():
    batch = make_batch()
    model = build(TINY).train()
    torch.manual_seed(1)
    _, parts = model.loss(model(batch), batch, 1)
    assert {"video", "seg_audio", "seg_visual", "rec", "ort", "ec", "total"} <= set(parts)
    basic = parts["video"] + parts["seg_audio"] + parts["seg_visual"]
    for flag, part, weighted in (("rec_loss", "rec", TINY.rec_weight * parts["rec"]),
                                 ("ort_loss", "ort", TINY.ort_weight * parts["ort"]),
                                 ("ec_loss", "ec", TINY.ec_weight * parts["ec"]), ("basic_loss", "video", basic)):
        m = build(replace(TINY, **{flag: False})).train()
        torch.manual_seed(1)  # same dropout: the forward is the same, only the loss term goes
        _, p = m.loss(m(batch), batch, 1)
        assert part not in p and p["total"] != pytest.approx(parts["total"])
        # the switch removes exactly its own (weighted) term from the total, and nothing else
        assert p["total"] == pytest.approx(parts["total"] - weighted, rel=1e-5)
        assert {k: v for k, v in p.items() if k != "total"} == pytest.approx(
            {k: v for k, v in parts.items() if k in p and k != "total"}, rel=1e-5)
    # paper weighting of the reconstruction term changes the total by exactly 0.5 * rec
    m = build(replace(TINY, rec_weight=1.0)).train()
    torch.manual_seed(1)
    t1, p1 = m.loss(m(batch), batch, 1)
    m.options = replace(m.options, rec_weight=0.5)
    m.cfg = m.options
    torch.manual_seed(1)
    t2, p2 = m.loss(m(batch), batch, 1)
    assert (t1 - t2).item() == pytest.approx(0.5 * p1["rec"], rel=1e-5)
    # the two ort variants differ
    a = build(replace(TINY, ort_visual="per_class")).train()
    b = build(replace(TINY, ort_visual="class_mean")).train()
    torch.manual_seed(2)
    oa = a(batch).extras["loss_ort_v"]
    torch.manual_seed(2)
    ob = b(batch).extras["loss_ort_v"]
    assert oa.item() != pytest.approx(ob.item())


@pytest.mark.parametrize("change", [
    {"decoupling": "none"}, {"decoupling": "events"}, {"secm": False}, {"lgsf": False},
    {"intra_fgse": False}, {"cross_fgse": False},
])
def test_ablation_switches_change_the_computation(change):
    batch = make_batch()
    full = build(TINY).eval()
    ablated = build(replace(TINY, **change)).eval()
    # same seed: parameters that exist in both start equal, so any output change comes from the switch
    shared = set(full.state_dict()) & set(ablated.state_dict())
    a, b = full(batch).audio_seg, ablated(batch).audio_seg
    assert not torch.allclose(a, b)
    assert (~torch.isclose(a, b)).flatten(1).any(dim=1).all()  # the switch changes every video's segments
    if change.get("decoupling"):
        assert sum(p.numel() for p in ablated.parameters()) < sum(p.numel() for p in full.parameters())
    else:
        assert set(full.state_dict()) == shared  # same parameters, different wiring


def test_cooccurrence_export(tmp_path):
    model = build(TINY)
    batches = [make_batch(3, seed=s) for s in range(2)]
    beta = cooccurrence_map(model, batches, "av")
    assert beta.shape == (K, K)
    assert model.training  # the training flag is restored
    with torch.no_grad():
        model.eval()
        manual = torch.cat([model(b).extras["map_av"] for b in batches]).mean(dim=(0, 1)).numpy()
    np.testing.assert_allclose(beta, manual, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(beta.sum(-1), np.ones(K), rtol=1e-5)
    with pytest.raises(ValueError, match="co-occurrence map"):
        cooccurrence_map(build(replace(TINY, secm=False)), batches)
    pytest.importorskip("matplotlib")
    png = save_cooccurrence_png(beta, tmp_path / "beta.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_pseudo_labels_is_a_clear_error():
    batch = replace(make_batch(), pseudo_audio=None)
    model = build(TINY)
    with pytest.raises(ValueError, match="pseudo"):
        model.loss(model(batch), batch, 1)


def test_tiny_model_fits_a_batch():
    torch.manual_seed(0)
    batch = planted_batch()
    model = build(replace(TINY, layers=1))
    history = fit_one_batch(model, batch, 70, optimizer=torch.optim.AdamW)
    first, basic = (parts["video"] + parts["seg_audio"] + parts["seg_visual"] for _, parts in (history[0], history[-1]))
    assert basic < 0.65 * first  # measured: 2.08 → 1.10 after 60 steps


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("mmcse") / "syn.h5")


def test_preset_trains_end_to_end_with_the_trainer(tiny_store, tmp_path):
    from avvp.train.config import apply_override
    from avvp.train.loop import Trainer, load_model

    cfg = preset("mmcse")
    cfg.data.store, cfg.train.out, cfg.train.progress, cfg.train.device = str(tiny_store), str(tmp_path / "run"), False, "cpu"
    cfg.optim.epochs, cfg.optim.batch_size = 2, 8
    for o in ("hidden=16", "token_dim=8", "layers=1", "heads=2", "ff=16"):
        cfg = apply_override(cfg, f"model.options.{o}")
    result = Trainer(cfg).fit()
    assert result.test is not None and 0.0 <= result.val.segment.type <= 100.0
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert isinstance(model, MMCSE) and ckpt.model_options["token_dim"] == 8 and ckpt.config["train"]["gate"] == "mmcse"
