"""Released checkpoints of the field → avvp checkpoints (`avvp-convert-checkpoint`).

Each official network's parameters are renamed (and, where avvp keeps K per-class Linear layers as one
`ClassWiseLinear`, stacked) onto avvp's model built with the matching preset. The rules are written from
the public code (key names and shapes; tests/train/test_convert.py pins them):

    han      YapengTian/AVVP-ECCV20 nets/net_audiovisual.py      MMIL_Net
    valor    Franklin905/VALOR main_network.py                  MMIL_Net (valor, valor+, valor++ scripts)
    mmpyr    JustinYuu/MM_Pyramid main_network.py, nets/*.py    AVVPNet (MMP = MultimodalPyramidAttentionalModule)
    leap     jasongief/LEAP main_network_temporal_add_label.py  AVVPNet (MMP + AVL label decoder)
    mmcse    PengchengZhao1001/MM-CSE code/main_network.py      MMCSE_Net
    cvcms    GenjiB/CM-Co-Occurrence-AVVP nets/net_trans.py     MMIL_Net
    ma       Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing step3_retrain/nets/net_audiovisual.py  MMIL_Net

Strict: every official key is either mapped, a duplicate name of a mapped tensor (`aliases`, e.g.
MM-Pyramid's TemporalBlock registers conv1 also as net.0) or a module the official forward never calls
(`ignored`, listed per network: HAN's unused audio_encoder / visual_encoder / cmt_encoder, the LayerNorm
inside MM-Pyramid's MultiHeadAttention, ...). Any other key, any avvp parameter without an official
value, or a shape mismatch stops the conversion with the full list. avvp-only buffers (LEAP's label
table: the packaged GloVe rows, which the official code feeds as an input) come from avvp itself.

`convert_state_dict(source, state_dict)` → (model, report); `convert_checkpoint(source, path, out)` writes
an avvp `Checkpoint` (avvp.train.checkpoint; its provenance: the released features) that prediction,
`--init-from` and `avvp-parse` accept;
`to_official(source, model)` is the inverse (round trip exact).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from avvp._files import sha256_file
from avvp.data.classes import LLP_CLASSES
from avvp.models import build_model
from avvp.models.base import InputDims, ParsingModel
from avvp.registry import Registry
from avvp.train.config import ExperimentConfig, preset

Rule = tuple[str, str]  # (avvp regex, official replacement), first match wins


@dataclass(frozen=True)
class Stack:
    """An avvp (n, ...) tensor (a `ClassWiseLinear` weight or bias) = the n official tensors
    `official.format(i)`, i = 0..n-1 (a list of nn.Linear), stacked on dim 0."""

    avvp: str
    official: str
    n: int


@dataclass(frozen=True)
class OfficialLayout:
    name: str
    preset: str
    repository: str
    rules: tuple[Rule, ...]
    ignored: tuple[str, ...] = ()  # regexes of official keys the official forward never uses
    aliases: tuple[Rule, ...] = ()  # (official alias regex, canonical official key) of shared tensors
    stacks: Callable[[ParsingModel], tuple[Stack, ...]] = lambda model: ()
    avvp_only: tuple[str, ...] = ()  # avvp keys not in the official checkpoint (filled by avvp)
    options: Mapping[str, Any] = field(default_factory=dict)  # on top of the preset's model options


LAYOUTS: Registry[OfficialLayout] = Registry("official checkpoint layout")

PROJECTION: tuple[Rule, ...] = (
    (r"^projection\.fc_a\.fc_a\.", "fc_a."),  # VALOR++ CLAP token pooling holds fc_a
    (r"^projection\.(fc_a|fc_v|fc_st|fc_fusion)\.", r"\1."),
)
MMIL_HEAD: tuple[Rule, ...] = ((r"^head\.(fc_prob|fc_frame_att|fc_av_att)\.", r"\1."),)
HAN_ENCODER: tuple[Rule, ...] = ((r"^encoder\.layers\.", "hat_encoder.layers."),
                                 (r"^encoder\.(final_norm_[av])\.", r"hat_encoder.\1."))
HAN_UNUSED = (r"^audio_encoder\.", r"^visual_encoder\.", r"^cmt_encoder\.", r"^hat_encoder\.norm[12]\.")


def _pyramid_rules(avvp_prefix: str, official: str) -> tuple[Rule, ...]:
    """MM-Pyramid encoder keys under `avvp_prefix` ↔ the official MMP module under `official`."""
    a, o = re.escape(avvp_prefix), official
    layer = (  # PreLNTransformerLayer ↔ TransformerLayer (MultiHeadAttention.linears 0-3 = q, k, v, out)
        (r"attn\.q\.", "self_attn.linears.0."), (r"attn\.k\.", "self_attn.linears.1."),
        (r"attn\.v\.", "self_attn.linears.2."), (r"attn\.out\.", "self_attn.linears.3."),
        (r"ff\.", "feed_forward."), (r"norm1\.", "sublayer.0.norm."), (r"norm2\.", "sublayer.1.norm."),
    )
    rules: list[Rule] = []
    for ours, theirs in (("v_self", "vsablock.layer"), ("a_self", "asablock.layer"), ("cross", "cmablock.layer")):
        rules += [(rf"^{a}msa\.(\d+)\.{ours}\.{x}", rf"{o}capture.msa.\1.{theirs}.{y}") for x, y in layer]
    rules.append((rf"^{a}msa\.(\d+)\.(l[va][12])\.", rf"{o}capture.msa.\1.\2."))
    rules += [(rf"^{a}v_tcn\.(\d+)\.", rf"{o}capture.vnetwork.\1."), (rf"^{a}a_tcn\.(\d+)\.", rf"{o}capture.anetwork.\1.")]
    for ours, theirs in (("v_fuse_attn", "vadaptiveinteraction"), ("a_fuse_attn", "aadaptiveinteraction")):
        rules += [(rf"^{a}{ours}\.{x}", rf"{o}fusion.{theirs}.{y}") for x, y in layer]
    rules += [(rf"^{a}v_select\.", rf"{o}fusion.vselectfusion."), (rf"^{a}a_select\.", rf"{o}fusion.aselectfusion.")]
    return tuple(rules)


def _pyramid_unused(official: str) -> tuple[str, ...]:
    o = re.escape(official)
    # the LayerNorm every MultiHeadAttention builds and never applies; the prototype modules that are
    # deep-copied into each layer but never called themselves
    return (rf"^{o}.*self_attn\.layer_norm\.", rf"^{o}(capture|fusion)\.(multiheadattn|feedforward)\.")


def _pyramid_aliases(official: str) -> tuple[Rule, ...]:
    o = re.escape(official)  # TemporalBlock.net = Sequential(conv1, relu1, conv2): the same tensors twice
    return ((rf"^({o}capture\.[va]network\.\d+\.)net\.0\.(.*)$", r"\1conv1.\2"),
            (rf"^({o}capture\.[va]network\.\d+\.)net\.2\.(.*)$", r"\1conv2.\2"))


LAYOUTS.register("han")(OfficialLayout(
    "han", "han", "YapengTian/AVVP-ECCV20 nets/net_audiovisual.py MMIL_Net",
    PROJECTION + HAN_ENCODER + MMIL_HEAD, ignored=HAN_UNUSED))
for _name in ("valor", "valor+", "valor++"):
    LAYOUTS.register(_name)(OfficialLayout(
        _name, _name, "Franklin905/VALOR main_network.py MMIL_Net",
        PROJECTION + HAN_ENCODER + MMIL_HEAD,
        # the Encoder always builds final_norm_a/v; post-norm (every VALOR script) never applies them
        ignored=(r"^hat_encoder\.final_norm_[av]\.",)))
LAYOUTS.register("ma")(OfficialLayout(
    "ma", "ma", "Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing step3_retrain/nets/net_audiovisual.py MMIL_Net",
    PROJECTION + HAN_ENCODER + MMIL_HEAD,
    ignored=HAN_UNUSED + (r"^t_att2?\.", r"^fc[12]\."), options={"stage": 3}))
LAYOUTS.register("mmpyr")(OfficialLayout(
    "mmpyr", "mmpyr", "JustinYuu/MM_Pyramid main_network.py AVVPNet",
    PROJECTION + MMIL_HEAD + _pyramid_rules("encoder.", "MMP."),
    ignored=_pyramid_unused("MMP."), aliases=_pyramid_aliases("MMP."),
    options={"reference_output_order": True}))


def _leap_decoder_rules() -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for ours, theirs in (("audio_decoder", "la_cma_network"), ("visual_decoder", "lv_cma_network")):
        for x, y in ((r"norm_attn\.", "sublayer.0.norm."), (r"attn\.q_proj\.", "self_attn.linears.0."),
                     (r"attn\.k_proj\.", "self_attn.linears.1."), (r"attn\.v_proj\.", "self_attn.linears.2."),
                     (r"attn\.out_proj\.", "self_attn.linears.3."), (r"norm_ffn\.", "sublayer.1.norm."),
                     (r"ffn\.0\.", "feed_forward.w_1."), (r"ffn\.3\.", "feed_forward.w_2.")):
            rules.append((rf"^{ours}\.blocks\.(\d+)\.{x}", rf"AVL.{theirs}.\1.{y}"))
    return tuple(rules)


LAYOUTS.register("leap")(OfficialLayout(
    "leap", "leap", "jasongief/LEAP main_network_temporal_add_label.py AVVPNet",
    PROJECTION + _pyramid_rules("encoder.", "MMP.") + _leap_decoder_rules()
    + ((r"^labels\.fc_l\.", "fc_l."), (r"^(fc_l[av])\.", r"\1.")),
    ignored=_pyramid_unused("MMP.") + (r"^AVL\..*self_attn\.layer_norm\.", r"^AVL\.(multiheadattn|feedforward)\."),
    aliases=_pyramid_aliases("MMP."), avvp_only=("labels.table",),
    options={"encoder": "mmpyr", "label_source": "glove"}))

LAYOUTS.register("cvcms")(OfficialLayout(
    "cvcms", "cvcms", "GenjiB/CM-Co-Occurrence-AVVP nets/net_trans.py MMIL_Net",
    PROJECTION + HAN_ENCODER + (
        (r"^head\.fc_prob\.fc_class_([av])\.", r"fc_occ_class_\1."),
        (r"^head\.fc_prob\.layer\.", "av_class_encoder.layers.0."),
        (r"^head\.fc_prob\.fc_prob_([av])\.", r"fc_occ_prob_\1."),
        (r"^head\.(fc_frame_att|fc_av_att)\.", r"\1."),
    ),
    # built but never used in forward: HAN's fc_prob (the class tokens give the frame logits), the
    # q/k/v of the unused co_occurrence() method, two more class encoders, the Encoders' norm1/norm2
    ignored=(r"^fc_prob\.", r"^fc_occ_class_av\.", r"^fc_occ_(a|v|av)_[qkv]\.", r"^fc_occ_(frame|modality)_prob\.",
             r"^frame_att_encoder\.", r"^modality_encoder\.", r"^(hat|av_class)_encoder\.norm[12]\."),
))


def _mmcse_stacks(model: ParsingModel) -> tuple[Stack, ...]:
    n = model.cafd_a.first.n
    k = model.k
    out = []
    for p in ("weight", "bias"):
        out += [Stack(f"cafd_a.first.{p}", "a_unmix.{}.1." + p, n), Stack(f"cafd_v.first.{p}", "v_unmix.{}.1." + p, n),
                Stack(f"cafd_v.second.{p}", "v_unmix.{}.4." + p, n)]
        for head in ("fc_prob", "fc_frame_att", "fc_av_att"):  # last_Pred: 25 x Linear(128, 1)
            out.append(Stack(f"{head}.{p}", f"{head}.fc.{{}}.{p}", k))
    return tuple(out)


LAYOUTS.register("mmcse")(OfficialLayout(
    "mmcse", "mmcse", "PengchengZhao1001/MM-CSE code/main_network.py MMCSE_Net",
    (
        (r"^proj\.fc_a\.fc_a\.", "fc_a."), (r"^proj\.(fc_a|fc_v|fc_st|fc_fusion)\.", r"\1."),
        (r"^cafd_([av])\.alpha\.", r"alpha_\1.model."), (r"^cafd_([av])\.blend\.", r"reduce_\1."),
        (r"^layers\.(\d+)\.secm_intra\.", r"av_enhance.layers.\1.SECM_1."),
        (r"^layers\.(\d+)\.secm_cross\.", r"av_enhance.layers.\1.SECM_2."),
        (r"^layers\.(\d+)\.lgsf_intra\.local\.", r"av_enhance.layers.\1.LGSF_1.glob1."),
        (r"^layers\.(\d+)\.lgsf_intra\.glob\.", r"av_enhance.layers.\1.LGSF_1.glob2."),
        (r"^layers\.(\d+)\.lgsf_cross\.(local|glob)\.", r"av_enhance.layers.\1.LGSF_2.glob."),  # one shared Linear
        (r"^layers\.(\d+)\.norm\.", r"av_enhance.layers.\1.norm1."),
        (r"^layers\.(\d+)\.(fc1|fc2|linear1|linear2)\.", r"av_enhance.layers.\1.\2."),
        (r"^rec_a\.", "a_recon."), (r"^rec_v\.", "v_recon.model."),
    ),
    ignored=(r"^av_enhance\.final_norm_[av]\.",), stacks=_mmcse_stacks,
))


# ------------------------------------------------------------------------------------------ conversion
class ConversionError(ValueError):
    """The official state dict does not fit avvp's model; the message lists every offending key."""


@dataclass
class ConversionReport:
    source: str
    mapped: int  # avvp tensors filled
    ignored: list[str]  # official keys of modules the official forward never uses
    aliases: list[str]
    parameters: int  # avvp parameter count


def layout_config(source: str) -> ExperimentConfig:
    layout = LAYOUTS.get(source)
    cfg = preset(layout.preset)
    cfg.model.options = {**cfg.model.options, **dict(layout.options)}
    return cfg


def layout_dims(cfg: ExperimentConfig) -> InputDims:
    """The input dims of a preset's features, as the backbones declare them (default options: the
    released features' shapes)."""
    from avvp.extract.backbones import feature_specs

    d = cfg.data
    roles = {role: name for role, name in (("audio", d.audio), ("visual", d.visual), ("motion", d.motion)) if name}
    try:
        specs = feature_specs(roles.values())
    except KeyError as err:
        raise ConversionError(f"no known per-video shape for the features {sorted(roles.values())}: {err}") from None
    shape = {role: specs[name].shape for role, name in roles.items()}
    return InputDims(audio=shape["audio"], visual=shape["visual"], motion=shape.get("motion"),
                     num_classes=len(LLP_CLASSES),
                     layouts=tuple(sorted((role, specs[name].layout) for role, name in roles.items())))


def build_layout_model(source: str) -> tuple[ParsingModel, ExperimentConfig, InputDims]:
    cfg = layout_config(source)
    dims = layout_dims(cfg)
    return build_model(cfg.model.name, cfg.model.options, dims), cfg, dims


def _official_name(layout: OfficialLayout, key: str) -> str | None:
    for pattern, repl in layout.rules:
        if re.search(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    return None


def key_map(layout: OfficialLayout, model: ParsingModel) -> tuple[dict[str, str], dict[str, Stack]]:
    """avvp key → official key (renames) and avvp key → Stack, for every avvp state-dict entry."""
    stacks = {s.avvp: s for s in layout.stacks(model)}
    renames, unmapped = {}, []
    for key in model.state_dict():
        if key in stacks or key in layout.avvp_only:
            continue
        name = _official_name(layout, key)
        if name is None:
            unmapped.append(key)
        else:
            renames[key] = name
    if unmapped:  # a bug in the rules, not in the user's file
        raise RuntimeError(f"{layout.name}: no rule for avvp keys {unmapped}")
    return renames, stacks


def strip_wrappers(obj: Any) -> dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint object (`avvp.extract.backbones.weights.unwrap_state_dict`,
    avvp's one unwrapping rule), as a ConversionError when there is none."""
    from avvp.extract.backbones.weights import unwrap_state_dict

    try:
        return unwrap_state_dict(obj)
    except ValueError as err:
        raise ConversionError(f"{err} in the checkpoint") from None


def convert_state_dict(source: str, official: Mapping[str, torch.Tensor]) -> tuple[ParsingModel, ConversionReport]:
    """avvp model (built with `source`'s preset) holding the official weights; raises ConversionError
    listing every unmatched, missing or mis-shaped key."""
    layout = LAYOUTS.get(source)
    model, _, _ = build_layout_model(source)
    official = strip_wrappers(official)
    renames, stacks = key_map(layout, model)
    target = model.state_dict()
    used: set[str] = set()
    new: dict[str, torch.Tensor] = {}
    missing, misshaped = [], []
    for key, name in renames.items():
        used.add(name)
        if name not in official:
            missing.append(name)
            continue
        value = official[name]
        if tuple(value.shape) != tuple(target[key].shape):
            misshaped.append(f"{name} {tuple(value.shape)} -> {key} expects {tuple(target[key].shape)}")
            continue
        new[key] = value.detach().to(target[key].dtype).clone()
    for key, st in stacks.items():
        names = [st.official.format(i) for i in range(st.n)]
        used.update(names)
        absent = [n for n in names if n not in official]
        if absent:
            missing.extend(absent)
            continue
        piece = tuple(target[key].shape[1:])
        bad = [f"{n} {tuple(official[n].shape)}" for n in names if tuple(official[n].shape) != piece]
        if bad:
            misshaped.append(f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} -> {key} expects {st.n} x {piece}")
            continue
        new[key] = torch.stack([official[n].detach() for n in names]).to(target[key].dtype)
    aliases, alias_bad = [], []
    ignored = []
    for name in official:
        if name in used:
            continue
        canonical = next((re.sub(p, r, name) for p, r in layout.aliases if re.search(p, name)), None)
        if canonical is not None and canonical in used:
            aliases.append(name)
            if canonical in official and not torch.equal(official[name], official[canonical]):
                alias_bad.append(f"{name} differs from {canonical}")
            continue
        if any(re.search(p, name) for p in layout.ignored):
            ignored.append(name)
    unmatched = sorted(set(official) - used - set(aliases) - set(ignored))
    problems = []
    if unmatched:
        problems.append(f"{len(unmatched)} official key(s) with no place in avvp's {source} model: {unmatched}")
    if missing:
        problems.append(f"{len(missing)} key(s) the {source} layout needs are absent: {sorted(missing)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped key(s): {misshaped}")
    if alias_bad:
        problems.append(f"duplicate names of one tensor disagree: {alias_bad}")
    if problems:
        raise ConversionError(f"cannot convert this checkpoint as --from {source} ({layout.repository}): "
                              + "; ".join(problems))
    for key in layout.avvp_only:
        new[key] = target[key]
    model.load_state_dict(new, strict=True)
    report = ConversionReport(source, len(new), sorted(ignored), sorted(aliases),
                              sum(p.numel() for p in model.parameters()))
    return model.eval(), report


def to_official(source: str, model: ParsingModel) -> dict[str, torch.Tensor]:
    """The official-layout state dict of an avvp model (used keys and their aliases; no unused modules)."""
    layout = LAYOUTS.get(source)
    renames, stacks = key_map(layout, model)
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, name in renames.items():
        out[name] = sd[key].detach().clone()
    for key, st in stacks.items():
        for i, piece in enumerate(sd[key].detach().unbind(0)):
            out[st.official.format(i)] = piece.clone()  # (out, in) / (out,): one nn.Linear of the official list
    _add_aliases(layout, out)
    return out


def _add_aliases(layout: OfficialLayout, out: dict[str, torch.Tensor]) -> None:
    if not layout.aliases:
        return
    # aliases are written as regexes official-alias → canonical; invert the two MM-Pyramid ones by name
    for name in list(out):
        m = re.match(r"^(.*capture\.[va]network\.\d+\.)conv([12])\.(.*)$", name)
        if m:
            out[f"{m.group(1)}net.{0 if m.group(2) == '1' else 2}.{m.group(3)}"] = out[name]


def convert_checkpoint(source: str, official_path: str | Path, out_path: str | Path) -> ConversionReport:
    """Read an official checkpoint file, convert it (`convert_state_dict`) and write an avvp `Checkpoint`
    whose provenance is the released features the official code trained on."""
    from avvp import __version__
    from avvp.train.checkpoint import Checkpoint, released_provenance

    official_path, out_path = Path(official_path), Path(out_path)
    if not official_path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {official_path}")
    try:
        obj = torch.load(official_path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickles of whole modules need their classes; state dicts load safely
        raise ConversionError(f"{official_path}: not a loadable state-dict checkpoint ({type(err).__name__}: {err})") from None
    model, report = convert_state_dict(source, obj)
    cfg = layout_config(source)
    features = {"audio": cfg.data.audio, "visual": cfg.data.visual, "motion": cfg.data.motion}
    Checkpoint(
        model_name=cfg.model.name, model_options=model.options_dict(), config=cfg.to_dict(),
        classes=tuple(LLP_CLASSES), input_dims=layout_dims(cfg),
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        provenance=released_provenance(features), selection={"epoch": 0, "val": None},
        origin={"converted_from": {"source": source, "repository": LAYOUTS.get(source).repository,
                                   "file": str(official_path), "sha256": sha256_file(official_path),
                                   "ignored_keys": report.ignored}},
        avvp_version=__version__,
    ).save(out_path)
    return report


__all__ = ["LAYOUTS", "ConversionError", "ConversionReport", "OfficialLayout", "convert_checkpoint",
           "convert_state_dict", "to_official", "build_layout_model", "strip_wrappers"]
