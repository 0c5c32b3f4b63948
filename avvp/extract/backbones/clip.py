"""`clip`: VALOR's visual teacher — one CLIP image embedding per segment plus zero-shot class scores.

Reference (VALOR `utils/clip_preprocess.py`, reference-methods §2): HF `openai/clip-vit-large-patch14`
(ViT-L/14 at 224 px); from the 80 frames of the 8 fps selection take frames
`round(linspace(0, 79, 10))` = [0, 9, 18, 26, 35, 44, 53, 61, 70, 79] (one per 1 s segment, no
pooling); PIL → ToTensor → `Resize((224, 224))` (a squash, NO center crop) → Normalize(CLIP mean/std);
`get_image_features` → L2-normalise → (10, 768). Zero-shot scores = `logits_per_image` =
logit_scale.exp() (100 for OpenAI CLIP) × cosine(image, text) against the 25 prompts of
`prompts.CLIP_PROMPTS`; VALOR's per-class thresholds (14..20) apply to these raw scaled logits.

Outputs per video: "features/clip" (10, D) L2-normalised, "zeroshot/clip" (10, 25) scaled logits.
Once per dataset: "text/clip" (25, D) L2-normalised prompt embeddings (attrs: prompts, logit_scale).

Input profiles (`CLIP_RECIPES`): "reference" takes VALOR's frames `round(linspace(0, N-1, 10))` over
ALL N JPEGs (`DecodedVideo.segment_frames`; they differ from 10 of the 80 selected frames whenever
N is not 80 or 82), PIL-decoded, as contiguous CHW float tensors like torchvision's ToTensor; "clean"
takes frames [0, 9, 18, 26, 35, 44, 53, 61, 70, 79] of the 80 raw selected frames.

Implementation choices, each pinned by a test:
- Model: open_clip (`model` option, default "ViT-L-14"; `pretrained` tag, default "openai"). OpenAI's
  CLIP uses QuickGELU, but open_clip's plain "ViT-L-14" config uses GELU; we build with the tag's
  `quick_gelu` flag (True for "openai"), otherwise the network would not be OpenAI's (open_clip only
  warns about the mismatch). The HF checkpoint VALOR used holds the same OpenAI weights.
- Resize: VALOR resized a FLOAT tensor with torchvision 0.13.1 (VALOR's environment.yaml), whose
  tensor `Resize` default is antialias=False: plain bilinear (align_corners=False) interpolation of
  the [0, 1] image, no rounding to uint8. We do exactly that (`F.interpolate(..., antialias=False)`),
  on the CPU. Option `antialias=True` gives the antialiased variant (what torchvision ≥0.17 does by
  default) for users who prefer it; it does not reproduce VALOR's numbers.
- Text embeddings are always computed in exact fp32 (their `precision` attribute says "fp32"). Image
  features are normalised and scored in fp32; the image tower runs in bf16/fp16 autocast only with
  `--precision bf16`/`fp16` (default fp32: reference-exact scores near the pseudo-label thresholds).

Weights: open_clip's pretrained file for (model, tag) — from `--weights-dir` as
`<model>-<tag>.safetensors` (or .bin/.pt/.pth with the same stem; e.g. the `open_clip_model.safetensors`
of https://huggingface.co/timm/vit_large_patch14_clip_224.openai saved as `ViT-L-14-openai.safetensors`),
else from the huggingface_hub cache where `open_clip.create_model_and_transforms(model, pretrained=tag)`
puts it. Loaded with open_clip's checkpoint loader (`load_state_dict(strict=True)` after its format
conversions).
The checkpoint VALOR's users hold, transformers' `openai/clip-vit-large-patch14` (a folder with
config.json + model.safetensors / pytorch_model.bin, or its hub-cache folder), is accepted too
(`hf_clip`): named by option `checkpoint=DIR` (its config then defines the architecture), or found for
ViT-L-14/openai under `--weights-dir` or in the huggingface_hub cache when open_clip's file is absent;
it is converted to open_clip on load and the `weights` attribute names it ("transformers:...").
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avvp.data.classes import LLP_CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.data.layouts import SEGMENTS
from avvp.extract.backbones.base import (
    BACKBONES, Backbone, BackboneOptions, OutputSpec, VideoInput, option_field, rows_per_video,
)
from avvp.extract.backbones.frames import FRAME_FPS, FRAMES_PER_VIDEO, check_frames, frames_to_nchw
from avvp.extract.backbones.prompts import CLIP_PROMPTS
from avvp.extract.backbones import hf_clip
from avvp.extract.backbones.weights import (
    InputRecipe,
    ResolvedWeights,
    WeightsSpec,
    WeightsUnavailable,
    autocast_for,
    chunked,
    exact_fp32,
    hf_hub_cache_dir,
    resolve_weights_file,
)

CLIP_RECIPES = {
    "reference": InputRecipe(
        "VALOR utils/clip_preprocess.py",
        ("ffmpeg -r 8 JPEGs decoded by PIL", "frames round(linspace(0, N-1, 10)) over all N", "ToTensor",
         "tensor Resize((224, 224)) bilinear, no antialias (torchvision 0.13)", "Normalize(CLIP)")),
    "clean": InputRecipe(
        "avvp clean",
        ("raw decoded frames (no JPEG)", "frames round(linspace(0, 79, 10)) of the 80 selected", "ToTensor",
         "tensor Resize((224, 224)) bilinear, antialias per option", "Normalize(CLIP)")),
}

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "openai"
# OpenAI CLIP normalisation (= HF CLIPProcessor image_mean/image_std), used when a tag has none
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# open_clip's Hugging Face weight files, preferred first (the library's own order)
HF_DEFAULT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
WEIGHTS_DIR_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

DEFAULT_EMBED_DIM = 768  # ViT-L-14's; `ClipBackbone.declared_outputs` reads the width of any model


@dataclass(frozen=True)
class ClipOptions(BackboneOptions):
    model: str = option_field(DEFAULT_MODEL, f"open_clip model name (default {DEFAULT_MODEL}; e.g. ViT-L-14-336, ViT-B-32)")
    pretrained: str = option_field(DEFAULT_PRETRAINED, f"open_clip pretrained tag (default {DEFAULT_PRETRAINED})")
    quick_gelu: bool | None = option_field(
        None, "QuickGELU activations (default: the pretrained tag's setting, True for openai)")
    antialias: bool = option_field(False, "antialiased resize (default False = VALOR's torchvision-0.13 tensor Resize)")
    batch_frames: int = option_field(64, "images per forward pass (default 64)")
    checkpoint: str = option_field(
        "", "a transformers CLIP folder (config.json + model.safetensors/pytorch_model.bin, or its hub-cache "
            "folder models--openai--clip-vit-large-patch14) or an open_clip weights file; default: find "
            "open_clip's file")

    def __post_init__(self) -> None:
        if self.batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {self.batch_frames}")


def open_clip_model_config(model: str) -> dict[str, Any]:
    """open_clip's architecture config of `model` (no weights involved); ValueError for an unknown name."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise ValueError(f"clip: unknown open_clip model {model!r}")
    return cfg


def segment_frame_indices(n_frames: int = FRAMES_PER_VIDEO, n_segments: int = NUM_SEGMENTS) -> np.ndarray:
    """VALOR's frame choice: `np.round(np.linspace(0, n-1, 10))` (numpy rounds halves to even)."""
    return np.round(np.linspace(0, n_frames - 1, n_segments)).astype(np.int64)


def open_clip_weights_spec(model: str, tag: str) -> WeightsSpec:
    """The WeightsSpec of open_clip's pretrained (model, tag), from the library's pretrained table."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    hf_hub = cfg.get("hf_hub", "")
    hf_repo, hf_file = os.path.split(hf_hub) if hf_hub else ("", "")
    if hf_file:
        # an explicit file; open_clip tries the .safetensors twin of a .bin/.pth first
        twin = (hf_file[:-4] + ".safetensors",) if hf_file.endswith((".bin", ".pth")) else ()
        hf_files = (*twin, hf_file)
    else:
        hf_files = HF_DEFAULT_FILES
    stem = f"{model}-{tag}"
    return WeightsSpec(
        backbone="clip",
        weights_name=f"open_clip:{model}:{tag}",
        filename=stem + WEIGHTS_DIR_SUFFIXES[0],
        alt_filenames=tuple(stem + s for s in WEIGHTS_DIR_SUFFIXES[1:]),
        url=(f"https://huggingface.co/{hf_repo} (file {hf_files[0]})" if hf_repo else cfg.get("url", "")),
        cache="hf_hub" if hf_repo else "none",
        hf_repo=hf_repo,
        hf_filenames=hf_files if hf_repo else (),
        preprocessing={
            "mean": list(cfg.get("mean", OPENAI_MEAN)),
            "std": list(cfg.get("std", OPENAI_STD)),
            "quick_gelu": bool(cfg.get("quick_gelu", False)),
        },
    )


def seq_major_inputs(module, args, kwargs):
    """Forward pre-hook of a batch_first nn.MultiheadAttention, used under bf16/fp16 autocast only: hands it
    (N, L, D) inputs whose memory is (L, N, D)-contiguous, so that its internal transpose gives contiguous
    tensors. Otherwise the in-projection matmul of a non-contiguous input under CPU autocast expands the
    weight per sequence position and copies it (measured: ViT-L-14 6x SLOWER in bf16 than fp32 on CPU;
    with the hook ViT-B-32 bf16 is 1.3x faster than fp32). Values are unchanged; fp32 runs never get it."""
    import torch

    if not getattr(module, "batch_first", False):
        return None
    seen: dict[int, Any] = {}

    def fix(a):
        if not isinstance(a, torch.Tensor) or a.dim() != 3:
            return a
        if id(a) not in seen:  # self-attention passes one tensor three times: keep them one object
            seen[id(a)] = a.transpose(0, 1).contiguous().transpose(0, 1)
        return seen[id(a)]

    return tuple(fix(a) for a in args), kwargs


def _architecture(cfg: dict[str, Any]) -> dict[str, Any]:
    """The sizes of an open_clip model config that fix its architecture (what two configs must share)."""
    return {"embed_dim": cfg["embed_dim"],
            **{f"vision {k}": cfg["vision_cfg"][k] for k in ("layers", "width", "patch_size", "image_size")},
            **{f"text {k}": cfg["text_cfg"][k] for k in ("layers", "width")}}


@BACKBONES.register("clip")
class ClipBackbone(Backbone):
    """open_clip image tower on one frame per segment, plus zero-shot scores vs VALOR's prompts."""

    name = "clip"
    needs_frames = True
    prompts: tuple[str, ...] = CLIP_PROMPTS

    Options = ClipOptions
    inherited_options = ("model", "pretrained", "quick_gelu")
    OUTPUTS = (
        OutputSpec("features/clip", (NUM_SEGMENTS, DEFAULT_EMBED_DIM), SEGMENTS, "segment x dim"),
        OutputSpec("zeroshot/clip", (NUM_SEGMENTS, NUM_CLASSES), SEGMENTS, "segment x class"),
    )
    recipes = CLIP_RECIPES

    @classmethod
    def declared_outputs(cls, options: Any = None) -> tuple[OutputSpec, ...]:
        """The feature width is the model's embedding width (ViT-L-14: 768, ViT-B-32: 512)."""
        o = cls.parse_options(options)
        hf = hf_clip.find_hf_clip_checkpoint(o.checkpoint) if o.checkpoint else None
        if hf is not None:  # the folder's config defines the architecture
            width = int(hf_clip.read_hf_clip_config(hf.folder).projection_dim)
        else:
            width = int(open_clip_model_config(o.model)["embed_dim"])
        features, scores = cls.OUTPUTS
        return dataclasses.replace(features, shape=(NUM_SEGMENTS, width)), scores

    def configure(self) -> None:
        o = self.options
        model_cfg = open_clip_model_config(o.model)
        self.model_name, self.pretrained_tag = o.model, o.pretrained
        self.weights_spec = open_clip_weights_spec(o.model, o.pretrained)
        self.quick_gelu = bool(self.weights_spec.preprocessing["quick_gelu"] if o.quick_gelu is None else o.quick_gelu)
        self.antialias = o.antialias
        if self.antialias and self.profile == "reference":
            raise ValueError("clip: antialias=True is not VALOR's resize; use it with profile='clean'")
        self.embed_dim = int(model_cfg["embed_dim"])
        size = model_cfg["vision_cfg"]["image_size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = tuple(self.weights_spec.preprocessing["mean"])
        self.std = tuple(self.weights_spec.preprocessing["std"])
        self.frame_indices = segment_frame_indices()
        self._text: np.ndarray | None = None
        self._logit_scale: float | None = None
        self.hf_checkpoint: hf_clip.HFClipCheckpoint | None = None
        self.checkpoint_file = None
        if o.checkpoint:
            if self.random_weights:
                raise ValueError("clip: option checkpoint loads weights; it cannot be combined with --weights random")
            hf = hf_clip.find_hf_clip_checkpoint(o.checkpoint)
            if hf is not None:
                self.use_hf_checkpoint(hf, check_model=False)
            elif os.path.isfile(o.checkpoint):
                self.checkpoint_file = o.checkpoint
            else:
                raise ValueError(f"clip: checkpoint {o.checkpoint} is neither a transformers CLIP folder (config.json + "
                                 f"{' or '.join(hf_clip.HF_WEIGHT_FILES)}, or a hub-cache models--* folder) nor a file")

    def use_hf_checkpoint(self, hf: hf_clip.HFClipCheckpoint, check_model: bool) -> None:
        """Take the architecture and preprocessing from a transformers folder; with `check_model` (found
        without the checkpoint option) its architecture must be the `model` option's."""
        self.hf_config = hf_clip.read_hf_clip_config(hf.folder)
        cfg = hf_clip.open_clip_config(self.hf_config)
        if check_model:
            got, want = _architecture(cfg), _architecture(open_clip_model_config(self.model_name))
            if got != want or cfg["quick_gelu"] != self.quick_gelu:
                raise ValueError(f"clip: the transformers checkpoint {hf.folder} is not model={self.model_name} "
                                 f"(quick_gelu={self.quick_gelu}): {got}, quick_gelu={cfg['quick_gelu']}; pass "
                                 f"--backbone-opt clip.checkpoint={hf.folder} to use its own architecture")
        self.hf_checkpoint = hf
        self.quick_gelu = cfg["quick_gelu"]
        self.embed_dim = cfg["embed_dim"]
        size = cfg["vision_cfg"]["image_size"]
        self.image_size = (size, size)
        pre = hf_clip.preprocessing_of(hf.folder)
        self.mean = tuple(pre.get("mean", OPENAI_MEAN))
        self.std = tuple(pre.get("std", OPENAI_STD))

    def resolve_weights(self) -> ResolvedWeights:
        if self.hf_checkpoint is not None:
            return ResolvedWeights(self.hf_checkpoint.folder, self.hf_checkpoint.weights_id, "checkpoint", None)
        if self.checkpoint_file is not None:
            path = Path(self.checkpoint_file)
            return ResolvedWeights(path, f"{self.weights_spec.weights_name} (file {path.name})", "checkpoint", None)
        try:
            return resolve_weights_file(self.weights_spec, self.config.weights_dir)
        except WeightsUnavailable as missing:
            # VALOR's users hold transformers' openai/clip-vit-large-patch14: accept it where it lies
            if (self.model_name, self.pretrained_tag) != (DEFAULT_MODEL, DEFAULT_PRETRAINED):
                raise
            where = self.config.weights_dir if self.config.weights_dir is not None else hf_hub_cache_dir()
            hf = hf_clip.find_hf_clip_checkpoint(where)
            if hf is None:
                raise WeightsUnavailable(
                    f"{missing}\n   or: the transformers checkpoint {hf_clip.VALOR_HF_REPO} (VALOR's): a folder with "
                    f"config.json + {' or '.join(hf_clip.HF_WEIGHT_FILES)} given as --weights-dir or "
                    f"--backbone-opt clip.checkpoint=DIR (looked in {where})") from None
            self.use_hf_checkpoint(hf, check_model=True)
            return ResolvedWeights(hf.folder, hf.weights_id, "weights_dir" if self.config.weights_dir else "cache", None)

    def _common_attrs(self) -> dict[str, Any]:
        return {"model": self.model_name, "pretrained": self.pretrained_tag, "quick_gelu": self.quick_gelu,
                "checkpoint_format": "transformers" if self.hf_checkpoint is not None else "open_clip"}

    def output_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        if spec.path == "zeroshot/clip":
            return {**self._common_attrs(), "score": "logit_scale.exp() * cosine(features/clip, text/clip)",
                    "classes": list(LLP_CLASSES)}
        return {
            **self._common_attrs(),
            "fps": 1,  # one frame per 1 s segment
            "source_fps": FRAME_FPS,
            "frame_indices": ("round(linspace(0, N-1, 10)) over all N 8 fps frames" if self.profile == "reference"
                              else [int(i) for i in self.frame_indices]),
            "image_size": list(self.image_size),
            "resize": "squash, bilinear, no crop, " + ("antialiased" if self.antialias else "no antialias (VALOR)"),
            "mean": list(self.mean),
            "std": list(self.std),
            "normalized": "l2",
        }

    # -- model ------------------------------------------------------------------------------

    def build_network(self):
        import open_clip

        if self.hf_checkpoint is not None:  # the folder's architecture; its tensors come in load_weights
            return hf_clip.build_open_clip(self.hf_config)
        # open_clip loads the resolved file itself while building (its format conversions included)
        pretrained = None if self.resolved is None else str(self.resolved.path)
        return open_clip.create_model(self.model_name, pretrained=pretrained, force_quick_gelu=self.quick_gelu,
                                      device="cpu")

    def load_weights(self, model, path):
        if self.hf_checkpoint is not None:
            return hf_clip.load_into_open_clip(model, self.hf_checkpoint)
        return model  # already loaded by build_network

    def finish_network(self, model):
        import torch

        if self.config.precision != "fp32":
            for module in model.modules():
                if isinstance(module, torch.nn.MultiheadAttention):
                    module.register_forward_pre_hook(seq_major_inputs, with_kwargs=True)
        return model

    def text_embeddings(self) -> tuple[np.ndarray, float]:
        """(25, D) L2-normalised prompt embeddings (fp32, no autocast) and logit_scale.exp()."""
        if self._text is None:
            import open_clip
            import torch

            model = self.load_model()
            tokens = open_clip.get_tokenizer(self.model_name)(list(self.prompts)).to(self.device)
            with torch.inference_mode(), exact_fp32(self.device):
                text = model.encode_text(tokens).float()
                text = torch.nn.functional.normalize(text, dim=-1)
                self._logit_scale = float(model.logit_scale.float().exp().item())
            self._text = text.cpu().numpy().astype(np.float32)
        return self._text, self._logit_scale

    def dataset_arrays(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        text, scale = self.text_embeddings()
        # the text tower runs in exact fp32 whatever --precision says (text_embeddings)
        attrs = self.text_array_attrs(**self._common_attrs(), precision="fp32", prompts=list(self.prompts),
                                      classes=list(LLP_CLASSES), logit_scale=scale, normalized="l2")
        return {"text/clip": (text, attrs)}

    # -- extraction -------------------------------------------------------------------------

    def segment_frames(self, video: VideoInput) -> np.ndarray:
        """The 10 frames CLIP sees: the decoder's `segment_frames` (reference profile: VALOR's choice over
        all N frames), else frames [0, 9, 18, ...] of the 80 selected ones."""
        frames = check_frames(video, self.name)
        seg = getattr(video, "segment_frames", None) if self.profile == "reference" else None
        if seg is None:
            return frames[self.frame_indices]
        seg = np.asarray(seg)
        if seg.dtype != np.uint8 or seg.shape != (NUM_SEGMENTS, *frames.shape[1:]):
            raise ValueError(f"clip: segment_frames must be ({NUM_SEGMENTS}, H, W, 3) uint8 like the frames, got {seg.shape} {seg.dtype}")
        return seg

    def preprocess(self, frames: np.ndarray):
        """(10, H, W, 3) uint8 segment frames → (10, 3, S, S) float32 CPU: ToTensor, squash bilinear
        resize (align_corners=False, antialias per option), CLIP mean/std."""
        import torch
        import torch.nn.functional as F

        if self.profile == "reference":
            # torchvision ToTensor: a contiguous CHW float image (the resize kernel differs for channels_last)
            x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous().float().div(255)
        else:
            x = frames_to_nchw(frames).float().div_(255.0)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=self.antialias)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()

    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """{"pixels": (10, 3, 224, 224) float32}: the normalised images the image tower sees."""
        self.check_profile(video)
        return {"pixels": self.preprocess(self.segment_frames(video)).numpy()}

    def embed(self, images):
        """Normalised images (N, 3, S, S) → (N, D) L2-normalised float32 CPU tensor."""
        import torch

        model = self.load_model()
        out = []
        with torch.inference_mode():
            for part in chunked(images.shape[0], self.options.batch_frames):
                with autocast_for(self.config, self.device):
                    feats = model.encode_image(images[part].to(self.device, non_blocking=True))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.embed_dim)

    def zeroshot_scores(self, features: np.ndarray) -> np.ndarray:
        """logit_scale.exp() × cosine: features (N, D) L2-normalised → (N, 25) float32."""
        text, scale = self.text_embeddings()
        return (np.float32(scale) * (features.astype(np.float32) @ text.T)).astype(np.float32)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        import torch

        self.check_profiles(videos)
        if not videos:
            return []
        images = torch.cat([self.preprocess(self.segment_frames(v)) for v in videos])
        feats = self.embed(images).numpy()
        scores = self.zeroshot_scores(feats)
        return [{"features/clip": f, "zeroshot/clip": z}
                for f, z in zip(rows_per_video(feats, len(videos)), rows_per_video(scores, len(videos)))]
