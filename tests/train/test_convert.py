"""Official checkpoints → avvp: every official key of each network (layouts pinned in reference_nets.py from
the public code) converts, the converted model's outputs equal the official forward pass (transcribed
oracles, same weights), a bad checkpoint is refused with the offending keys, the round trip is exact, and
the written checkpoint is accepted by the trainer's prediction path and `load_model` (avvp-parse)."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import reference_nets as ref
from avvp.models import build_model
from avvp.models.base import Batch
from avvp.train.config import preset
from avvp.train.convert import (
    LAYOUTS,
    ConversionError,
    convert_state_dict,
    to_official,
)

LAYOUT_TABLES = {
    "han": lambda: ref.han_layout(),
    "ma": lambda: ref.han_layout(extra_ma=True),
    "valor": lambda: ref.valor_layout(128, 2048, 512, 1024, 1),
    "valor+": lambda: ref.valor_layout(128, 2048, 256, 1024, 4),
    "valor++": lambda: ref.valor_layout(768, 768, 256, 1024, 4),
    "mmpyr": ref.mmpyr_layout,
    "leap": ref.leap_layout,
    "mmcse": ref.mmcse_layout,
    "cvcms": ref.cvcms_layout,
}
# official parameter counts of the tensors the forward uses (distinct tensors; MM-Pyramid's net.0/net.2
# are conv1/conv2 again), = avvp's parameter count for the same preset
USED_PARAMS = {"han": 4_569_675, "ma": 4_569_675, "valor": 5_094_475, "valor+": 5_051_211, "valor++": 4_887_371,
               "mmpyr": 40_827_469, "leap": 47_256_068, "mmcse": 6_160_333, "cvcms": 8_005_940}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def inputs(source: str, b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    if source in ("valor++", "mmcse"):
        audio, visual = torch.randn(b, 64, 768, generator=g), torch.randn(b, 10, 768, generator=g)
    else:
        audio, visual = torch.randn(b, 10, 128, generator=g), torch.randn(b, 80, 2048, generator=g)
    st = torch.randn(b, 10, 512, generator=g)
    batch = Batch(audio=audio, visual=visual, motion=st, weak=torch.zeros(b, 25), index=torch.arange(b))
    return batch, (audio, visual, st)


def assert_official_outputs(out, video, audio_video, visual_video, audio_seg, visual_seg) -> None:
    """Our five outputs equal the official network's (fp32 arithmetic order only)."""
    for ours, theirs in ((out.video, video), (out.audio_video, audio_video), (out.visual_video, visual_video),
                         (out.audio_seg, audio_seg), (out.visual_seg, visual_seg)):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_every_source_is_registered():
    assert set(LAYOUTS.names()) == set(LAYOUT_TABLES)


@pytest.mark.parametrize("source", sorted(LAYOUT_TABLES))
def test_every_official_key_converts_and_the_round_trip_is_exact(source):
    table = LAYOUT_TABLES[source]()
    official = ref.random_state(table)
    model, report = convert_state_dict(source, official)
    assert report.parameters == USED_PARAMS[source]
    ignored_and_aliases = set(report.ignored) | set(report.aliases)
    back = to_official(source, model)
    # every official key is either written back with the same value, or a documented unused module
    assert set(back) | ignored_and_aliases == set(table)
    for key, value in back.items():
        assert torch.equal(value, official[key]), key
    used = {k: v for k, v in table.items() if k in back and k not in report.aliases}
    assert sum(torch.Size(s).numel() for s in used.values()) == USED_PARAMS[source]
    model2, _ = convert_state_dict(source, back)  # avvp → official → avvp
    for key, value in model.state_dict().items():
        assert torch.equal(value, model2.state_dict()[key]), key


def test_unused_modules_are_the_documented_ones():
    _, report = convert_state_dict("han", ref.random_state(ref.han_layout()))
    assert {k.split(".")[0] for k in report.ignored} == {"audio_encoder", "visual_encoder", "cmt_encoder", "hat_encoder"}
    assert all(k.startswith(("hat_encoder.norm1", "hat_encoder.norm2")) for k in report.ignored if k.startswith("hat_"))
    _, report = convert_state_dict("mmpyr", ref.random_state(ref.mmpyr_layout()))
    assert all("layer_norm" in k or "multiheadattn" in k or "feedforward" in k for k in report.ignored)
    assert len(report.aliases) == 32  # net.0 / net.2 of 8 TemporalBlocks, weight + bias


@torch.no_grad()
@pytest.mark.parametrize("source", ["han", "ma", "valor", "valor++"])
def test_mmil_networks_match_the_official_forward(source):
    official = ref.random_state(LAYOUT_TABLES[source]())
    model, _ = convert_state_dict(source, official)
    batch, (a, v, st) = inputs(source)
    kwargs = {"han": {}, "ma": {}, "valor": dict(sequential=True, heads=8),
              "valor++": dict(sequential=True, heads=8, layers=4)}[source]
    g, pa, pv, fp = ref.mmil_forward(official, a, v, st, **kwargs)
    out = model(batch)
    assert_official_outputs(out, g, pa, pv, fp[:, :, 0], fp[:, :, 1])


@torch.no_grad()
def test_mmpyramid_matches_the_official_forward_in_its_output_order():
    """Catches: swapped self/cross gates, softmax-normalised level weights, the output-order default
    (the official AVVPNet stacks [v_o, a_o], so a_prob comes from the visual stream)."""
    official = ref.random_state(ref.mmpyr_layout(), scale=0.1)
    converted, _ = convert_state_dict("mmpyr", official)
    # the model as the PRESET builds it (no converter option on top) must give the official outputs
    cfg = preset("mmpyr")
    model = build_model("mmpyr", cfg.model.options, converted.dims).eval()
    model.load_state_dict(converted.state_dict())
    batch, (a, v, st) = inputs("mmpyr")
    g, pa, pv, fp = ref.mmpyr_forward(official, a, v, st)
    out = model(batch)
    assert_official_outputs(out, g, pa, pv, fp[:, :, 0], fp[:, :, 1])


@torch.no_grad()
def test_leap_matches_the_official_forward_with_its_glove_rows():
    official = ref.random_state(ref.leap_layout(), scale=0.1)
    model, _ = convert_state_dict("leap", official)
    batch, (a, v, st) = inputs("leap")
    g, pa, pv, fa, fv = ref.leap_forward(official, a, v, st, model.labels.table)
    out = model(batch)
    assert_official_outputs(out, g, pa, pv, fa, fv)


@torch.no_grad()
def test_mmcse_matches_the_official_forward():
    """Catches: a residual after the FGSE FFN, a sequential (visual sees updated audio) layer update."""
    official = ref.random_state(ref.mmcse_layout(), scale=0.1)
    model, _ = convert_state_dict("mmcse", official)
    batch, (a, v, st) = inputs("mmcse")
    g, pa, pv, fp = ref.mmcse_forward(official, a, v, st)
    out = model(batch)
    assert_official_outputs(out, g, pa, pv, fp[:, :, 0], fp[:, :, 1])


@torch.no_grad()
def test_cvcms_matches_the_official_forward():
    """Catches: a sequential class-token update (the official av_class_encoder updates both from the
    pre-update tokens)."""
    official = ref.random_state(ref.cvcms_layout(), scale=0.1)
    model, _ = convert_state_dict("cvcms", official)
    batch, (a, v, st) = inputs("cvcms")
    g, pa, pv, fp = ref.cvcms_forward(official, a, v, st)
    out = model(batch)
    assert_official_outputs(out, g, pa, pv, fp[:, :, 0], fp[:, :, 1])


def test_bad_checkpoints_are_refused_with_the_offending_keys():
    good = ref.random_state(ref.han_layout())
    extra = {**good, "fc_new.weight": torch.zeros(3)}
    with pytest.raises(ConversionError, match=r"1 official key\(s\) with no place.*fc_new\.weight"):
        convert_state_dict("han", extra)
    missing = {k: v for k, v in good.items() if k != "fc_prob.bias"}
    with pytest.raises(ConversionError, match=r"absent: \['fc_prob\.bias'\]"):
        convert_state_dict("han", missing)
    wrong = {**good, "fc_a.weight": torch.zeros(512, 768)}
    with pytest.raises(ConversionError, match=r"mis-shaped.*fc_a\.weight \(512, 768\) -> projection\.fc_a\.weight expects \(512, 128\)"):
        convert_state_dict("han", wrong)
    with pytest.raises(ConversionError, match="no place"):  # a HAN file is not an MM-Pyramid one
        convert_state_dict("mmpyr", good)
    pyr = ref.random_state(ref.mmpyr_layout())
    pyr["MMP.capture.vnetwork.0.net.0.bias"] = pyr["MMP.capture.vnetwork.0.net.0.bias"] + 1
    with pytest.raises(ConversionError, match="disagree"):
        convert_state_dict("mmpyr", pyr)
    # wrappers: {"state_dict": ...} and DataParallel's "module." prefix
    model, _ = convert_state_dict("han", {"state_dict": {f"module.{k}": v for k, v in good.items()}})
    torch.testing.assert_close(model.head.fc_prob.weight, good["fc_prob.weight"])


def test_written_checkpoint_is_loaded_by_the_trainer_and_predicts(tmp_path, capsys):
    from avvp.cli.convert_checkpoint import main
    from avvp.train.loop import load_model

    official = ref.random_state(ref.han_layout())
    torch.save(official, tmp_path / "MMIL_Net.pt")
    assert main(["--from", "han", str(tmp_path / "MMIL_Net.pt"), "--out", str(tmp_path / "avvp.pt")]) == 0
    assert "converted" in capsys.readouterr().out
    model, ckpt = load_model(tmp_path / "avvp.pt")
    assert ckpt.features == {"audio": "vggish", "visual": "resnet152", "motion": "r2plus1d"}
    converted = ckpt.origin["converted_from"]
    assert converted["source"] == "han" and len(converted["sha256"]) == 64
    # trained on the released AVVP features: the provenance names that release and its recipe
    assert {p.release for p in ckpt.provenance} == {"avvp-feats"}
    assert {p.profile for p in ckpt.provenance} == {"reference"} and not any(p.random_weights for p in ckpt.provenance)
    batch, (a, v, st) = inputs("han")
    with torch.no_grad():
        torch.testing.assert_close(model(batch).video, ref.mmil_forward(official, a, v, st)[0], rtol=1e-5, atol=1e-6)
    torch.save({"fc_x.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    assert main(["--from", "han", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no place" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
