"""`r2plus1d`: 512-d Kinetics-400 R(2+1)D-18 clip features, as the official AVVP "r2plus1d_18" arrays.

Reference (AVVP-ECCV20 `scripts/extract_3D_feat.py` + its `scripts/utils.py`, reference-methods §1c):
the 80 frames of the 8 fps selection, each PIL `Resize((112, 112))` (a squash to 112x112, bilinear with
PIL's antialiasing, NO crop — not the 128x171 + crop that torchvision's weights were trained with) →
ToTensor → Kinetics mean [0.43216, 0.394666, 0.37645] / std [0.22803, 0.22145, 0.216989]; then 10
clips of 8 consecutive frames, each (3, 8, 112, 112) through torchvision `r2plus1d_18(pretrained=True)`
without its final fc → (10, 512) float32 per video: one row per 1 s segment.

Weights: torchvision `R2Plus1D_18_Weights.KINETICS400_V1` (`r2plus1d_18-91a641e6.pth`), fc = identity.
Input profiles (`R2PLUS1D_RECIPES`): "reference" resizes with PIL itself (`frames.resize_with_pil`,
the official `transforms.Resize((112, 112))` on PIL images) on the PIL-decoded JPEG frames; "clean"
uses `frames.resize_like_pil` (torch's uint8 kernel, PIL-equivalent to within one grey level) on the
raw frames. Both run on the CPU, so the pixels fed to the network do not depend on the device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from avvp.data.classes import NUM_SEGMENTS
from avvp.data.layouts import SEGMENTS
from avvp.extract.backbones.base import BACKBONES, Backbone, OutputSpec, VideoInput, rows_per_video
from avvp.extract.backbones.frames import (
    FRAME_FPS,
    FRAMES_PER_VIDEO,
    check_frames,
    frames_to_nchw,
    normalize_on_device,
    resize_like_pil,
    resize_with_pil,
)
from avvp.extract.backbones.resnet152 import FrameBatchOptions
from avvp.extract.backbones.weights import InputRecipe, WeightsSpec, autocast_for, chunked

CLIP_FRAMES = FRAMES_PER_VIDEO // NUM_SEGMENTS  # 8 consecutive frames (1 s at 8 fps) per clip
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

R2PLUS1D_RECIPES = {
    "reference": InputRecipe(
        "AVVP scripts/extract_3D_feat.py + scripts/utils.py TransformImage",
        ("ffmpeg -r 8 JPEGs decoded by PIL", "frames round(linspace(0, N-1, 80))",
         "PIL Resize((112, 112)) bilinear, no crop", "ToTensor", "Normalize(Kinetics)",
         "clip k = frames 8k..8k+7")),
    "clean": InputRecipe(
        "avvp clean",
        ("raw decoded frames (no JPEG)", "frames round(linspace(0, N-1, 80)), time rule for short clips",
         "torch uint8 antialiased bilinear squash to 112x112 (PIL to 1 grey level)", "ToTensor",
         "Normalize(Kinetics)", "clip k = frames 8k..8k+7")),
}

R2PLUS1D_18_KINETICS400_V1 = WeightsSpec(
    backbone="r2plus1d",
    weights_name="torchvision:R2Plus1D_18_Weights.KINETICS400_V1",
    filename="r2plus1d_18-91a641e6.pth",
    url="https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
    cache="torch_hub",
    sha256_prefix="91a641e6",
    preprocessing={
        "resize": [112, 112],  # (height, width), squash, no crop
        "interpolation": "bilinear, antialiased (PIL-equivalent, uint8)",
        "mean": list(KINETICS_MEAN),
        "std": list(KINETICS_STD),
    },
)


@dataclass(frozen=True)
class R2Plus1DOptions(FrameBatchOptions):
    """`batch_frames` counts frames of whole 8-frame clips."""

    def __post_init__(self) -> None:
        if self.batch_frames < CLIP_FRAMES:
            raise ValueError(f"batch_frames must be >= {CLIP_FRAMES} (one clip), got {self.batch_frames}")


@BACKBONES.register("r2plus1d")
class R2Plus1DBackbone(Backbone):
    """Kinetics-400 R(2+1)D-18, fc = identity: (10, 512) per video, one 8-frame clip per segment."""

    name = "r2plus1d"
    needs_frames = True
    weights_spec = R2PLUS1D_18_KINETICS400_V1
    feature_dim = 512

    Options = R2Plus1DOptions
    OUTPUTS = (OutputSpec("features/r2plus1d", (NUM_SEGMENTS, feature_dim), SEGMENTS,
                          "segment(8-frame clip at 8 fps) x dim"),)
    recipes = R2PLUS1D_RECIPES

    @property
    def batch_clips(self) -> int:
        return self.options.batch_frames // CLIP_FRAMES

    def output_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        attrs: dict[str, Any] = {"fps": FRAME_FPS, "clip_frames": CLIP_FRAMES, **self.weights_spec.preprocessing}
        if self.profile == "reference":
            attrs["interpolation"] = "bilinear, PIL Image.resize (AVVP scripts/utils.py TransformImage)"
        return attrs

    def build_network(self):
        from torchvision.models.video import r2plus1d_18

        return r2plus1d_18(weights=None)

    def finish_network(self, model):
        import torch

        model.fc = torch.nn.Identity()
        # channels_last_3d: oneDNN's fastest 3D-conv layout on CPU (measured 1.54x for 10 clips on 2
        # cores, features within 4e-7 of the default layout relative to their max; docs/performance.md)
        return model.to(memory_format=torch.channels_last_3d)

    def preprocess(self, frames: np.ndarray):
        """(80, H, W, 3) uint8 → (10, 3, 8, 112, 112) uint8 CPU clips: squash resize, 8 frames a clip."""
        size = tuple(self.weights_spec.preprocessing["resize"])
        if self.profile == "reference":
            images = resize_with_pil(frames, size)
        else:
            images = resize_like_pil(frames_to_nchw(frames), size)
        n, c, h, w = images.shape
        # clip k = frames 8k .. 8k+7, laid out (C, T, H, W) as the video network expects
        return images.reshape(n // CLIP_FRAMES, CLIP_FRAMES, c, h, w).permute(0, 2, 1, 3, 4)

    def normalize(self, clips_uint8, device):
        """uint8 clips (N, 3, T, H, W) → float32 on `device`: ToTensor + Normalize(Kinetics) per frame."""
        pre = self.weights_spec.preprocessing
        n, c, t, h, w = clips_uint8.shape
        # normalise as frames (N*T, C, H, W), then back to (N, C, T, H, W)
        frames = clips_uint8.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        x = normalize_on_device(frames, pre["mean"], pre["std"], device)
        return x.reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()

    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """{"pixels": (10, 3, 8, 112, 112) float32}: the normalised clips the network sees."""
        import torch

        self.check_profile(video)
        return {"pixels": self.normalize(self.preprocess(check_frames(video, self.name)), torch.device("cpu")).numpy()}

    def embed(self, clips_uint8):
        """uint8 clips (N, 3, 8, 112, 112) → (N, 512) float32 CPU tensor, `batch_clips` at a time."""
        import torch

        model = self.load_model()
        out = []
        with torch.inference_mode(), autocast_for(self.config, self.device):
            for part in chunked(clips_uint8.shape[0], self.batch_clips):
                x = self.normalize(clips_uint8[part], self.device).contiguous(memory_format=torch.channels_last_3d)
                out.append(model(x).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.feature_dim)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        import torch

        self.check_profiles(videos)
        if not videos:
            return []
        clips = torch.cat([self.preprocess(check_frames(v, self.name)) for v in videos])
        return [{f"features/{self.name}": rows} for rows in rows_per_video(self.embed(clips).numpy(), len(videos))]
