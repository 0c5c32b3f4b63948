"""`r2plus1d`: 512-d Kinetics-400 R(2+1)D-18 clip features, as the official AVVP "r2plus1d_18" arrays.

Reference (AVVP-ECCV20 `scripts/extract_3D_feat.py` + its `scripts/utils.py`, reference-methods §1c):
the 80 frames of the 8 fps selection, each PIL `Resize((112, 112))` (a squash to 112x112, bilinear with
PIL's antialiasing, NO crop — not the 128x171 + crop that torchvision's weights were trained with) →
ToTensor → Kinetics mean [0.43216, 0.394666, 0.37645] / std [0.22803, 0.22145, 0.216989]; then 10
clips of 8 consecutive frames, each (3, 8, 112, 112) through torchvision `r2plus1d_18(pretrained=True)`
without its final fc → (10, 512) float32 per video: one row per 1 s segment.

Weights: torchvision `R2Plus1D_18_Weights.KINETICS400_V1` (`r2plus1d_18-91a641e6.pth`), fc = identity.
The resize is `resnet152.resize_like_pil` (PIL-equivalent to within one grey level, measured in the
tests), on the CPU, so the pixels fed to the network do not depend on the device.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from avvp.data.classes import NUM_SEGMENTS
from avvp.extract.backbones.base import BACKBONES, Backbone, BackboneConfig, OutputSpec, VideoInput
from avvp.extract.backbones.resnet152 import (
    COMMON_OPTIONS,
    FRAME_FPS,
    FRAMES_PER_VIDEO,
    check_frames,
    frames_to_nchw,
    normalize_on_device,
    resize_like_pil,
)
from avvp.extract.backbones.weights import (
    ResolvedWeights,
    WeightsSpec,
    announce_random_weights,
    autocast_for,
    check_options,
    check_weights_mode,
    chunked,
    load_state_dict_file,
    resolve_weights_file,
    seeded_init,
    torch_device,
)

CLIP_FRAMES = FRAMES_PER_VIDEO // NUM_SEGMENTS  # 8 consecutive frames (1 s at 8 fps) per clip
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

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


@BACKBONES.register("r2plus1d")
class R2Plus1DBackbone(Backbone):
    """Kinetics-400 R(2+1)D-18, fc = identity: (10, 512) per video, one 8-frame clip per segment."""

    name = "r2plus1d"
    needs_frames = True
    weights_spec = R2PLUS1D_18_KINETICS400_V1
    feature_dim = 512

    def __init__(self, config: BackboneConfig):
        super().__init__(config)
        check_weights_mode(config)
        check_options(config, self.name, COMMON_OPTIONS)
        batch_frames = int(config.option("batch_frames", 64))
        if batch_frames < CLIP_FRAMES:
            raise ValueError(f"{self.name}: batch_frames must be >= {CLIP_FRAMES} (one clip), got {batch_frames}")
        self.batch_clips = batch_frames // CLIP_FRAMES
        self.random_seed = int(config.option("random_seed", 0))
        self.device = torch_device(config)
        self.resolved: ResolvedWeights | None = None
        if self.random_weights:
            announce_random_weights(self.name)
        else:
            self.resolved = resolve_weights_file(self.weights_spec, config.weights_dir)
        self._model = None

    def outputs(self) -> list[OutputSpec]:
        attrs: dict[str, Any] = {"fps": FRAME_FPS, "clip_frames": CLIP_FRAMES, **self.weights_spec.preprocessing}
        if self.random_weights:
            attrs["random_seed"] = self.random_seed
        return [OutputSpec(f"features/{self.name}", (NUM_SEGMENTS, self.feature_dim), "float32",
                           "segment(8-frame clip at 8 fps) x dim", attrs)]

    def load_model(self):
        """The eval-mode network on `self.device` (built once, on first call)."""
        if self._model is None:
            import torch
            from torchvision.models.video import r2plus1d_18

            with seeded_init(self.random_seed):
                model = r2plus1d_18(weights=None)
            if self.resolved is not None:
                model.load_state_dict(load_state_dict_file(self.resolved.path), strict=True)
            model.fc = torch.nn.Identity()
            # channels_last_3d: oneDNN's fastest 3D-conv layout on CPU (measured 1.54x for 10 clips on 2
            # cores, features within 4e-7 of the default layout relative to their max; docs/performance.md)
            model = model.to(memory_format=torch.channels_last_3d)
            self._model = model.eval().requires_grad_(False).to(self.device)
        return self._model

    def preprocess(self, frames: np.ndarray):
        """(80, H, W, 3) uint8 → (10, 3, 8, 112, 112) uint8 CPU clips: squash resize, 8 frames a clip."""
        images = resize_like_pil(frames_to_nchw(frames), tuple(self.weights_spec.preprocessing["resize"]))
        n, c, h, w = images.shape
        # clip k = frames 8k .. 8k+7, laid out (C, T, H, W) as the video network expects
        return images.reshape(n // CLIP_FRAMES, CLIP_FRAMES, c, h, w).permute(0, 2, 1, 3, 4)

    def embed(self, clips_uint8):
        """uint8 clips (N, 3, 8, 112, 112) → (N, 512) float32 CPU tensor, `batch_clips` at a time."""
        import torch

        model = self.load_model()
        pre = self.weights_spec.preprocessing
        out = []
        with torch.inference_mode(), autocast_for(self.config, self.device):
            for part in chunked(clips_uint8.shape[0], self.batch_clips):
                clips = clips_uint8[part]
                n, c, t, h, w = clips.shape
                # normalise as frames (N*T, C, H, W), then back to (N, C, T, H, W)
                frames = clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
                x = normalize_on_device(frames, pre["mean"], pre["std"], self.device)
                x = x.reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous(memory_format=torch.channels_last_3d)
                out.append(model(x).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.feature_dim)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        import torch

        if not videos:
            return []
        clips = torch.cat([self.preprocess(check_frames(v, self.name)) for v in videos])
        feats = self.embed(clips).numpy()
        return [{f"features/{self.name}": np.ascontiguousarray(feats[i * NUM_SEGMENTS:(i + 1) * NUM_SEGMENTS])}
                for i in range(len(videos))]
