"""LINK as VALOR++ plus switches: every switch off is VALOR++ exactly (weights, forward, loss, gradients,
a trained run through the trainer), each switch adds only its own modules/terms, and the readings that keep
a component from hurting its base (TSAM residual, PLSIM zero init, CMIM adapter output) do what they say."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from avvp.models.base import Batch, InputDims
from avvp.models.han import HAN
from avvp.models.link import CMIM, LINK, SWITCHES, TSAM, LINKOptions

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = 25
DIMS = InputDims(audio=(64, 24), visual=(10, 20), motion=(10, 16), text_dims=(("clap", 8), ("clip", 12)))
SIZE = {"hidden": 32, "heads": 2, "ff": 32, "layers": 2, "dropout": 0.1}
VALOR_PP = {**SIZE, "pre_norm": False, "sequential": True, "loss": "valor"}  # the valor++ preset's han options
OFF = LINKOptions(**SIZE, tsam=False, cmim=False, sloss=False, plsim=False)


def batch_of(b: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pa = (torch.rand(b, 10, K, generator=g) > 0.85).float()
    pv = (torch.rand(b, 10, K, generator=g) > 0.85).float()
    return Batch(audio=torch.randn(b, 64, 24, generator=g), visual=torch.randn(b, 10, 20, generator=g),
                 motion=torch.randn(b, 10, 16, generator=g), weak=torch.maximum(pa.amax(1), pv.amax(1)),
                 index=torch.arange(b), pseudo_audio=pa, pseudo_visual=pv,
                 teacher_audio=pa, teacher_visual=pv,
                 text={"clap": torch.randn(K, 8, generator=g), "clip": torch.randn(K, 12, generator=g)})


def seeded(cls, options, seed: int = 0):
    torch.manual_seed(seed)
    return cls(options, DIMS)


def run_step(model, batch, seed: int = 7):
    """Train-mode forward (dropout active, same RNG stream), loss and gradients."""
    model.train()
    torch.manual_seed(seed)
    out = model(batch)
    loss, parts = model.loss(out, batch, 1)
    model.zero_grad()
    loss.backward()
    return out, loss, parts, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_every_switch_off_is_valor_pp_exactly():
    han, link = seeded(HAN, VALOR_PP), seeded(LINK, OFF)
    assert OFF.is_valor_pp and not LINKOptions().is_valor_pp
    sh, sl = han.state_dict(), link.state_dict()
    assert list(sh) == list(sl) and all(torch.equal(sh[k], sl[k]) for k in sh)  # same init, same names
    batch = batch_of()
    oh, lh, ph, gh = run_step(han, batch)
    ol, ll, pl, gl = run_step(link, batch)
    for field in ("video", "audio_seg", "visual_seg", "audio_video", "visual_video"):
        torch.testing.assert_close(getattr(ol, field), getattr(oh, field), rtol=0, atol=1e-6)
    assert abs(ll.item() - lh.item()) <= 1e-6 and pl == pytest.approx(ph, abs=1e-6)
    assert set(gl) == set(gh) and all(torch.allclose(gl[n], gh[n], rtol=0, atol=1e-6) for n in gh)
    # a VALOR++ state dict (han) loads into LINK with the switches off and back, strictly
    link.load_state_dict(han.state_dict())
    han.load_state_dict(link.state_dict())


def test_each_switch_adds_only_its_modules_and_keeps_the_base_weights():
    base = seeded(LINK, OFF).state_dict()
    own = {"tsam": ("tsam_a.", "tsam_v."), "cmim": ("cmim.",), "sloss": ("mu",), "plsim": ("plsim_module.",)}
    for switch in SWITCHES:
        model = seeded(LINK, replace(OFF, **{switch: True}))
        state = model.state_dict()
        extra = set(state) - set(base)
        assert extra and all(k.startswith(own[switch]) for k in extra), (switch, extra)
        assert all(torch.equal(state[k], base[k]) for k in base), switch  # the base is initialised identically


def test_switches_are_independent_and_change_what_they_should():
    batch = batch_of()
    _, base_loss, base_parts, _ = run_step(seeded(LINK, OFF), batch)
    base_out = seeded(LINK, OFF).eval()(batch)
    for switch in ("tsam", "cmim"):  # architecture: the outputs move, the loss keeps its VALOR terms
        out = seeded(LINK, replace(OFF, **{switch: True})).eval()(batch)
        assert not torch.allclose(out.audio_seg, base_out.audio_seg), switch
    _, loss, parts, _ = run_step(seeded(LINK, replace(OFF, sloss=True)), batch)
    assert {"label", "avss", "mu"} <= set(parts) and loss.item() > base_loss.item()
    assert {k: parts[k] for k in base_parts} == pytest.approx(base_parts, abs=1e-6)  # same forward, extra terms
    # PLSIM starts as the identity (zero-initialised Δ output layers) and moves once trained / if not zeroed
    plsim = seeded(LINK, replace(OFF, plsim=True)).eval()
    torch.testing.assert_close(plsim(batch).audio_seg, base_out.audio_seg, rtol=0, atol=1e-6)
    literal = seeded(LINK, replace(OFF, plsim=True, plsim_zero_init=False)).eval()
    assert not torch.allclose(literal(batch).audio_seg, base_out.audio_seg)
    opt = torch.optim.SGD(plsim.parameters(), lr=1.0)
    run_step(plsim, batch)
    opt.step()
    plsim.eval()
    assert not torch.allclose(plsim(batch).audio_seg, seeded(LINK, OFF).eval()(batch).audio_seg)


def test_tsam_residual_and_spatial_readings_hand_checked():
    f = torch.randn(2, 10, 6)
    for spatial in ("conv", "mlp"):
        for residual, factor in ((True, 1.25), (False, 0.25)):
            tsam = TSAM(10, 6, 2, 7, spatial=spatial, residual=residual)
            for p in tsam.parameters():
                torch.nn.init.zeros_(p)
            # zero weights: W = σ(0) = 0.5, S = σ(0) = 0.5 → f̂ = 0.25 f; residual: f + f̂
            torch.testing.assert_close(tsam(f), factor * f)
    # default init: the literal Eq. 3 shrinks the features, the residual reading keeps their scale
    torch.manual_seed(0)
    x = torch.randn(64, 10, 256)
    literal, residual = TSAM(10, 256, 2, 7, residual=False), TSAM(10, 256, 2, 7, residual=True)
    residual.load_state_dict(literal.state_dict())
    assert literal(x).norm() / x.norm() < 0.3 and residual(x).norm() / x.norm() > 1.0


def test_cmim_outputs():
    fa, fv = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    oa, ov = CMIM(6, scaled=True, init=0.0, output="adapter")(fa, fv)  # α = 0: f^c = f̂
    torch.testing.assert_close(oa, fa)
    torch.testing.assert_close(ov, fv)
    oa, _ = CMIM(6, scaled=True, init=0.0, output="sum")(fa, fv)  # Eq. 6: f̂ + f^c
    torch.testing.assert_close(oa, 2 * fa)
    with pytest.raises(ValueError, match="cmim_output"):
        LINKOptions(cmim_output="concat")


def test_pre_change_checkpoint_loads_as_it_computed():
    """Old LINK checkpoints: `proj.*` keys and the literal TSAM (no residual)."""
    literal = seeded(LINK, LINKOptions(**SIZE, tsam_residual=False)).eval()
    old = {("proj." + k[len("projection."):] if k.startswith("projection.") else k): v
           for k, v in literal.state_dict().items()}
    fresh = seeded(LINK, LINKOptions(**SIZE), seed=1).eval()
    fresh.load_state_dict(old)
    assert not fresh.options.tsam_residual and not fresh.options_dict()["tsam_residual"]
    batch = batch_of()
    torch.testing.assert_close(fresh(batch).audio_seg, literal(batch).audio_seg)


@pytest.mark.slow  # two short trainer runs: ~5-10 s idle, much more on a loaded 2-core box
def test_trained_link_all_off_equals_trained_valor_pp(tmp_path, monkeypatch):
    """Through the trainer: the valor++ preset (han) and the link preset with every switch off give the same
    selected epoch and the same val/test numbers (two epochs on a tiny planted store)."""
    import avvp.train.loop as loop
    from avvp.train.config import apply_override, preset
    from avvp.train.loop import Trainer
    from tests.helpers.stores import synthetic_store

    monkeypatch.setattr(loop, "plot_curves", lambda *a, **k: None)  # curves.png is output only; saves time

    store = synthetic_store(tmp_path / "syn.h5", num_train=16, num_val=6, num_test=6)
    finals = {}
    for name in ("valor++", "link"):
        cfg = preset(name)
        cfg.data.store, cfg.train.out, cfg.train.progress, cfg.train.device = str(store), str(tmp_path / name), False, "cpu"
        cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.warmup = 2, 8, 1
        for o in ("hidden=16", "layers=1", "heads=2", "ff=16"):
            cfg = apply_override(cfg, f"model.options.{o}")
        if name == "link":
            cfg.model.options.update({s: False for s in SWITCHES})
        Trainer(cfg).fit()
        finals[name] = json.loads((tmp_path / name / "metrics_final.json").read_text())
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        finals[name]["losses"] = [json.loads(line)["train"] for line in lines]
    a, b = finals["valor++"], finals["link"]
    assert a["best_epoch"] == b["best_epoch"]
    for split in ("val", "test"):
        for level in ("segment", "event"):
            assert b[split][level] == pytest.approx(a[split][level], abs=1e-6)
    for la, lb in zip(a["losses"], b["losses"]):
        assert lb == pytest.approx(la, abs=1e-6)


def test_plsim_label_dropout_only_in_training():
    opts = LINKOptions(**{**SIZE, "dropout": 0.0}, tsam=False, cmim=False, sloss=False, plsim_zero_init=False)
    plain, dropped = seeded(LINK, opts), seeded(LINK, replace(opts, plsim_label_dropout=0.5))
    batch = batch_of()
    torch.testing.assert_close(dropped.eval()(batch).audio_seg, plain.eval()(batch).audio_seg)  # inference: all labels
    torch.manual_seed(3)
    train_out = dropped.train()(batch).audio_seg
    assert not torch.allclose(train_out, plain.train()(batch).audio_seg)
    with pytest.raises(ValueError, match="plsim_label_dropout"):
        LINKOptions(plsim_label_dropout=1.0)
