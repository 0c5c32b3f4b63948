"""`resnet152`: per-frame 2048-d ImageNet ResNet-152 features, as the official AVVP "res152" arrays.

Reference (AVVP-ECCV20 `scripts/extract_rgb_feat.py`, reference-methods §1c): the 80 frames of the
8 fps selection, each through Cadene `pretrainedmodels.resnet152('imagenet')` with `last_linear`
replaced by identity; preprocessing `LoadTransformImage` = PIL `Resize(256)` (shorter side, bilinear,
PIL's antialiasing) → `CenterCrop(224)` → ToTensor → ImageNet mean/std. Output (80, 2048) float32 per
video; the parsers average every 8 frames after their own projection.

We use torchvision's `ResNet152_Weights.IMAGENET1K_V1` (`resnet152-394f9c45.pth`), `fc` replaced by
identity, i.e. the 2048-d global-average-pooled activation. The file the official script loaded is
`resnet152-b121ed2d.pth`: pretrainedmodels' `resnet152('imagenet')` downloads torchvision's original
URL of that name (keys `fc.*`) and only renames the module to `last_linear` after loading; it is
accepted under --weights-dir and in the torch cache, and a state dict saved from a pretrainedmodels
model (keys `last_linear.*`) is mapped back to `fc.*` (`pretrainedmodels_to_torchvision_keys`).

Input profiles (`RESNET152_RECIPES`): "reference" resizes each frame with PIL itself
(`Image.resize((w, h), BILINEAR)`, what torchvision's `Resize` does on a PIL image, so the pixels are
pretrainedmodels' to the bit; the frames are the PIL-decoded JPEGs of the decoder's reference profile).
"clean" runs in torch on uint8 tensors, vectorised over all frames of a video: `resize_like_pil` uses torch's antialiased bilinear uint8 kernel, which reproduces PIL's
`Image.resize(BILINEAR)` to within 1/255 (measured: max |diff| = 1 grey level on ≤0.4 % of pixels
for downscaling 640x360/320x240 → 455x256/341x256; the float path of `F.interpolate` followed by
rounding differs on 10-20 % of pixels, so it is not used). The resize always runs on the CPU, so the
preprocessed pixels are identical whichever device runs the network.

The frame helpers shared with the other image backbones (`r2plus1d`, `clip`) live in `frames.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from avvp.data.layouts import FRAMES
from avvp.extract.backbones.base import (
    BACKBONES, Backbone, BackboneOptions, OutputSpec, VideoInput, option_field, rows_per_video,
)
from avvp.extract.backbones.frames import (
    FRAME_FPS,
    FRAMES_PER_VIDEO,
    center_crop,
    check_frames,
    frames_to_nchw,
    normalize_on_device,
    resize_like_pil,
    resize_with_pil,
    shorter_side_size,
)
from avvp.extract.backbones.weights import InputRecipe, WeightsSpec, autocast_for, chunked, load_state_dict_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET152_RECIPES = {
    "reference": InputRecipe(
        "AVVP scripts/extract_rgb_feat.py + pretrainedmodels LoadTransformImage",
        ("ffmpeg -r 8 JPEGs decoded by PIL", "frames round(linspace(0, N-1, 80))",
         "PIL Resize(256) shorter side, bilinear", "CenterCrop(224)", "ToTensor", "Normalize(ImageNet)")),
    "clean": InputRecipe(
        "avvp clean",
        ("raw decoded frames (no JPEG)", "frames round(linspace(0, N-1, 80)), time rule for short clips",
         "torch uint8 antialiased bilinear Resize(256) shorter side (PIL to 1 grey level)", "CenterCrop(224)",
         "ToTensor", "Normalize(ImageNet)")),
}

RESNET152_IMAGENET1K_V1 = WeightsSpec(
    backbone="resnet152",
    weights_name="torchvision:ResNet152_Weights.IMAGENET1K_V1",
    filename="resnet152-394f9c45.pth",
    url="https://download.pytorch.org/models/resnet152-394f9c45.pth",
    cache="torch_hub",
    sha256_prefix="394f9c45",
    # the file pretrainedmodels (the reference) downloads; believed to hold the same V1 weights
    alt_filenames=("resnet152-b121ed2d.pth",),
    preprocessing={
        "resize_shorter_side": 256,
        "crop": 224,
        "interpolation": "bilinear, antialiased (PIL-equivalent, uint8)",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    },
)


@dataclass(frozen=True)
class FrameBatchOptions(BackboneOptions):
    """Options of ResNet-152 (and, with its own bound, R(2+1)D)."""

    batch_frames: int = option_field(64, "images per forward pass (default 64)")

    def __post_init__(self) -> None:
        if self.batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {self.batch_frames}")


def pretrainedmodels_to_torchvision_keys(state: dict) -> dict:
    """A state dict saved from a pretrainedmodels ResNet (`last_linear.*`) in torchvision's layout (`fc.*`)."""
    return {("fc." + k[len("last_linear."):] if k.startswith("last_linear.") else k): v for k, v in state.items()}


# ------------------------------------------------------------------------------------------------


@BACKBONES.register("resnet152")
class ResNet152Backbone(Backbone):
    """ImageNet ResNet-152, fc = identity: (80, 2048) per video, one row per 8 fps frame."""

    name = "resnet152"
    needs_frames = True
    weights_spec = RESNET152_IMAGENET1K_V1
    feature_dim = 2048
    Options = FrameBatchOptions
    OUTPUTS = (OutputSpec("features/resnet152", (FRAMES_PER_VIDEO, feature_dim), FRAMES, "frame(8 fps, 80) x dim"),)
    recipes = RESNET152_RECIPES

    def output_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        attrs: dict[str, Any] = {"fps": FRAME_FPS, **self.weights_spec.preprocessing}
        if self.profile == "reference":
            attrs["interpolation"] = "bilinear, PIL Image.resize (pretrainedmodels TransformImage)"
        return attrs

    # -- model ------------------------------------------------------------------------------

    def build_network(self):
        import torchvision

        return torchvision.models.resnet152(weights=None)

    def load_weights(self, model, path):
        model.load_state_dict(pretrainedmodels_to_torchvision_keys(load_state_dict_file(path)), strict=True)
        return model

    def finish_network(self, model):
        import torch

        model.fc = torch.nn.Identity()
        # channels_last: faster convolutions on CPU (oneDNN) and on CUDA tensor cores
        return model.to(memory_format=torch.channels_last)

    # -- extraction -------------------------------------------------------------------------

    def preprocess(self, frames: np.ndarray):
        """(N, H, W, 3) uint8 → (N, 3, 224, 224) uint8 CPU tensor: Resize(256) + CenterCrop(224), with PIL
        (reference profile) or torch's uint8 kernel (clean)."""
        pre = self.weights_spec.preprocessing
        size = shorter_side_size(frames.shape[1], frames.shape[2], pre["resize_shorter_side"])
        if self.profile == "reference":
            return center_crop(resize_with_pil(frames, size), pre["crop"])
        return center_crop(resize_like_pil(frames_to_nchw(frames), size), pre["crop"])

    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """{"pixels": (80, 3, 224, 224) float32}: the normalised images the network sees."""
        import torch

        self.check_profile(video)
        pre = self.weights_spec.preprocessing
        images = self.preprocess(check_frames(video, self.name))
        return {"pixels": normalize_on_device(images, pre["mean"], pre["std"], torch.device("cpu")).numpy()}

    def embed(self, images_uint8):
        """Preprocessed uint8 (N, 3, 224, 224) → (N, 2048) float32 CPU tensor, `batch_frames` at a time."""
        import torch

        model = self.load_model()
        pre = self.weights_spec.preprocessing
        out = []
        with torch.inference_mode(), autocast_for(self.config, self.device):
            for part in chunked(images_uint8.shape[0], self.options.batch_frames):
                x = normalize_on_device(images_uint8[part], pre["mean"], pre["std"], self.device)
                out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.feature_dim)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        import torch

        self.check_profiles(videos)
        if not videos:
            return []
        # frames of all videos go through the network together (each video resized at its own size)
        images = torch.cat([self.preprocess(check_frames(v, self.name)) for v in videos])
        return [{f"features/{self.name}": rows} for rows in rows_per_video(self.embed(images).numpy(), len(videos))]
