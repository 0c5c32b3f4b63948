"""Hugging Face transformers CLIP checkpoints (what a VALOR user holds) loaded as open_clip models.

VALOR ran `CLIPModel.from_pretrained("openai/clip-vit-large-patch14")`, so its users have that checkpoint
as a transformers folder: `config.json` + `model.safetensors` (or `pytorch_model.bin`), often inside the
huggingface_hub cache as `models--openai--clip-vit-large-patch14/snapshots/<revision>/`. The `clip`
backbone runs open_clip; this module finds such a folder, builds the open_clip `CLIP` of the same
architecture from its config, and maps the weights key by key (the same tensors, nothing re-trained):

    HF transformers                                   open_clip
    {text,vision}_model.encoder.layers.i.             transformer.resblocks.i. / visual.transformer.resblocks.i.
        self_attn.{q,k,v}_proj.{weight,bias}              attn.in_proj_{weight,bias} (q, k, v concatenated)
        self_attn.out_proj / layer_norm1 / layer_norm2    attn.out_proj / ln_1 / ln_2
        mlp.fc1 / mlp.fc2                                 mlp.c_fc / mlp.c_proj
    text_model.embeddings.token_embedding             token_embedding
    text_model.embeddings.position_embedding.weight   positional_embedding
    text_model.final_layer_norm                       ln_final
    text_projection.weight (embed, width)             text_projection (width, embed) = transposed
    vision_model.embeddings.class_embedding           visual.class_embedding
    vision_model.embeddings.patch_embedding.weight    visual.conv1.weight
    vision_model.embeddings.position_embedding.weight visual.positional_embedding
    vision_model.pre_layrnorm / post_layernorm        visual.ln_pre / visual.ln_post
    visual_projection.weight (embed, width)           visual.proj (width, embed) = transposed
    logit_scale                                       logit_scale

The architecture must be one open_clip's plain `CLIP` expresses (pre-LN ViT with class-token pooling, a
causal text transformer pooled at the EOT token = the largest token id, LayerNorm eps 1e-5, one
activation for both towers: `quick_gelu` as OpenAI's, or `gelu`); anything else is refused with the
field that differs. Every tensor of the folder must be used and every open_clip parameter filled
(strict load).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

HF_CONFIG_FILE = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # transformers' own order of preference
HF_PREPROCESSOR_FILE = "preprocessor_config.json"
VALOR_HF_REPO = "openai/clip-vit-large-patch14"  # what VALOR's clip_preprocess.py loads
LAYER_NORM_EPS = 1e-5  # open_clip's LayerNorm
ACTIVATIONS = {"quick_gelu": True, "gelu": False}  # HF hidden_act -> open_clip quick_gelu


@dataclass(frozen=True)
class HFClipCheckpoint:
    """A transformers CLIP folder on disk: where it is, what it is called, its weights file."""

    folder: Path
    weights_file: Path
    repo: str  # "openai/clip-vit-large-patch14" from a hub-cache path, else the folder's name

    @property
    def weights_id(self) -> str:
        return f"transformers:{self.repo} ({self.weights_file.name}, converted to open_clip on load)"


def _cache_repo_name(path: Path) -> str | None:
    """`org/name` of a huggingface_hub cache folder `models--org--name` (or a snapshot inside one)."""
    for part in (path, *path.parents):
        if part.name.startswith("models--"):
            return part.name[len("models--"):].replace("--", "/")
    return None


def _snapshot(repo_dir: Path) -> Path | None:
    """The snapshot folder of a hub-cache repository: the revision `refs/main` names, else the newest."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        named = snapshots / ref.read_text().strip()
        if named.is_dir():
            return named
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def is_hf_clip_folder(folder: Path) -> bool:
    """A folder with a CLIP `config.json` and one of the weight files."""
    config = folder / HF_CONFIG_FILE
    if not config.is_file() or not any((folder / n).is_file() for n in HF_WEIGHT_FILES):
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def find_hf_clip_checkpoint(path: str | Path, repo: str = VALOR_HF_REPO) -> HFClipCheckpoint | None:
    """The transformers CLIP checkpoint at `path`, which may be the model folder itself, a hub-cache
    repository folder (`models--org--name`, its `refs/main` snapshot), or a folder holding either
    (`<path>/models--openai--clip-vit-large-patch14`, `<path>/hub/models--...`). None when there is none."""
    path = Path(path).expanduser()
    cache_dir = "models--" + repo.replace("/", "--")
    candidates = [path]
    for repo_dir in (path, path / cache_dir, path / "hub" / cache_dir):
        snap = _snapshot(repo_dir)
        if snap is not None:
            candidates.append(snap)
    for folder in candidates:
        if is_hf_clip_folder(folder):
            weights = next(folder / n for n in HF_WEIGHT_FILES if (folder / n).is_file())
            name = _cache_repo_name(folder) or folder.name
            return HFClipCheckpoint(folder=folder, weights_file=weights, repo=name)
    return None


def read_hf_clip_config(folder: Path):
    """The folder's `transformers.CLIPConfig` (defaults filled in as transformers fills them)."""
    from transformers import CLIPConfig

    return CLIPConfig.from_pretrained(str(folder))


def open_clip_config(hf_config) -> dict[str, Any]:
    """open_clip `CLIP(**cfg)` arguments for the architecture of a transformers `CLIPConfig`;
    ValueError naming the field when open_clip's plain CLIP cannot express it."""
    vision, text = hf_config.vision_config, hf_config.text_config
    for tower, cfg in (("vision", vision), ("text", text)):
        if cfg.hidden_act not in ACTIVATIONS:
            raise ValueError(f"clip: HF {tower}_config.hidden_act={cfg.hidden_act!r} has no open_clip equivalent "
                             f"(supported: {', '.join(ACTIVATIONS)})")
        if abs(float(cfg.layer_norm_eps) - LAYER_NORM_EPS) > 1e-12:
            raise ValueError(f"clip: HF {tower}_config.layer_norm_eps={cfg.layer_norm_eps} differs from open_clip's "
                             f"LayerNorm eps {LAYER_NORM_EPS}")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"clip: HF {tower}_config.hidden_size {cfg.hidden_size} is not a multiple of "
                             f"num_attention_heads {cfg.num_attention_heads}")
    if vision.hidden_act != text.hidden_act:
        raise ValueError(f"clip: HF towers use different activations ({vision.hidden_act} / {text.hidden_act}); "
                         "open_clip's CLIP has one")
    return {
        "embed_dim": int(hf_config.projection_dim),
        "quick_gelu": ACTIVATIONS[vision.hidden_act],
        "vision_cfg": {
            "layers": int(vision.num_hidden_layers),
            "width": int(vision.hidden_size),
            "head_width": int(vision.hidden_size // vision.num_attention_heads),
            "mlp_ratio": float(vision.intermediate_size) / float(vision.hidden_size),
            "patch_size": int(vision.patch_size),
            "image_size": int(vision.image_size),
        },
        "text_cfg": {
            "context_length": int(text.max_position_embeddings),
            "vocab_size": int(text.vocab_size),
            "width": int(text.hidden_size),
            "heads": int(text.num_attention_heads),
            "layers": int(text.num_hidden_layers),
            "mlp_ratio": float(text.intermediate_size) / float(text.hidden_size),
        },
    }


def preprocessing_of(folder: Path) -> dict[str, list[float]]:
    """image_mean / image_std of the folder's `preprocessor_config.json` ({} when it has none)."""
    path = folder / HF_PREPROCESSOR_FILE
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    out = {}
    if "image_mean" in cfg:
        out["mean"] = [float(v) for v in cfg["image_mean"]]
    if "image_std" in cfg:
        out["std"] = [float(v) for v in cfg["image_std"]]
    return out


def _layer_map(hf_prefix: str, oc_prefix: str, state: Mapping[str, Any], out: dict[str, Any],
               used: set[str]) -> None:
    """Map every `{hf_prefix}.encoder.layers.i.*` entry onto `{oc_prefix}transformer.resblocks.i.*`."""
    import torch

    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith(f"{hf_prefix}.encoder.layers.")})
    renames = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
               "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for i in layers:
        src, dst = f"{hf_prefix}.encoder.layers.{i}.", f"{oc_prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [f"{src}self_attn.{p}_proj.{kind}" for p in ("q", "k", "v")]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state[k] for k in qkv], dim=0)
            used.update(qkv)
            for old, new in renames.items():
                out[f"{dst}{new}.{kind}"] = state[f"{src}{old}.{kind}"]
                used.add(f"{src}{old}.{kind}")


def hf_to_open_clip_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """The open_clip `CLIP` state dict holding the tensors of a transformers `CLIPModel` state dict.
    ValueError listing the HF tensors left unused (position_ids buffers aside)."""
    out: dict[str, Any] = {}
    used: set[str] = set()

    def take(hf_key: str, oc_key: str, transpose: bool = False) -> None:
        value = state[hf_key]
        out[oc_key] = value.t().contiguous() if transpose else value
        used.add(hf_key)

    take("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
    take("text_model.embeddings.position_embedding.weight", "positional_embedding")
    for kind in ("weight", "bias"):
        take(f"text_model.final_layer_norm.{kind}", f"ln_final.{kind}")
        take(f"vision_model.pre_layrnorm.{kind}", f"visual.ln_pre.{kind}")
        take(f"vision_model.post_layernorm.{kind}", f"visual.ln_post.{kind}")
    take("text_projection.weight", "text_projection", transpose=True)
    take("visual_projection.weight", "visual.proj", transpose=True)
    take("vision_model.embeddings.class_embedding", "visual.class_embedding")
    take("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight")
    take("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding")
    take("logit_scale", "logit_scale")
    _layer_map("text_model", "", state, out, used)
    _layer_map("vision_model", "visual.", state, out, used)
    left = sorted(k for k in state if k not in used and not k.endswith("position_ids"))
    if left:
        raise ValueError(f"clip: {len(left)} tensors of the HF checkpoint have no open_clip place: {', '.join(left[:8])}"
                         + (" ..." if len(left) > 8 else ""))
    return out


def read_hf_state_dict(weights_file: Path) -> dict[str, Any]:
    """The tensors of `model.safetensors` / `pytorch_model.bin` (torch pickle read with weights_only)."""
    from avvp.extract.backbones.weights import load_state_dict_file

    return load_state_dict_file(weights_file)


def build_open_clip(hf_config):
    """An open_clip `CLIP` of the HF config's architecture (random init; weights are loaded after)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    cfg = open_clip_config(hf_config)
    return CLIP(embed_dim=cfg["embed_dim"], vision_cfg=CLIPVisionCfg(**cfg["vision_cfg"]),
                text_cfg=CLIPTextCfg(**cfg["text_cfg"]), quick_gelu=cfg["quick_gelu"])


def load_into_open_clip(model, checkpoint: HFClipCheckpoint):
    """`model` (from `build_open_clip`) with the checkpoint's tensors, strictly (every key matched)."""
    state = hf_to_open_clip_state_dict(read_hf_state_dict(checkpoint.weights_file))
    model.load_state_dict(state, strict=True)
    return model
