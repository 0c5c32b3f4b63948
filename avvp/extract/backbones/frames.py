"""Frame helpers shared by the image backbones (`resnet152`, `r2plus1d`, `clip`).

The decoder hands every image backbone the same (80, H, W, 3) uint8 RGB selection (8 fps over 10 s);
these functions validate it and resize / crop / normalise it exactly as the reference transforms do.
Resizes run on the CPU, so the pixels a network sees do not depend on the device it runs on.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from avvp.extract.backbones.base import VideoInput

FRAMES_PER_VIDEO = 80  # the reference selection: 8 fps over 10 s
FRAME_FPS = 8


def check_frames(video: VideoInput, backbone: str):
    """The video's frames as a validated (80, H, W, 3) uint8 numpy array."""
    frames = getattr(video, "frames", None)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[0] != FRAMES_PER_VIDEO or frames.shape[3] != 3:
        got = f"{frames.shape} {frames.dtype}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"{backbone}: frames must be a ({FRAMES_PER_VIDEO}, H, W, 3) uint8 RGB array, got {got}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"{backbone}: frames have an empty spatial size {frames.shape}")
    return frames


def frames_to_nchw(frames: np.ndarray):
    """(N, H, W, 3) uint8 numpy → (N, 3, H, W) uint8 torch view (channels_last memory, no copy).

    The channels_last view is what torch's uint8 antialiased resize kernel reads fastest (40 ms for
    80 frames 640x360 → 455x256 on 2 cores, vs 58 ms for a contiguous NCHW copy).
    """
    import torch

    if not frames.flags.writeable:  # torch.from_numpy warns on read-only buffers
        frames = frames.copy()
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def resize_like_pil(images, size: tuple[int, int]):
    """Bilinear antialiased resize of uint8 (N, 3, H, W) images to `size` = (height, width).

    Equivalent to PIL `Image.resize((w, h), Image.BILINEAR)` per image to within one grey level (torch's
    uint8 antialiased kernel follows PIL's separable fixed-point algorithm). CPU uint8 tensors only.
    """
    import torch
    import torch.nn.functional as F

    if images.dtype != torch.uint8 or images.device.type != "cpu":
        raise ValueError("resize_like_pil expects uint8 CPU tensors")
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def shorter_side_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """Output (height, width) of torchvision/PIL `Resize(shorter)`: the shorter side becomes `shorter`,
    the longer one `int(shorter * long / short)` (truncated, as torchvision computes it)."""
    if width <= height:
        return int(shorter * height / width), shorter
    return shorter, int(shorter * width / height)


def center_crop(images, crop: int):
    """torchvision `CenterCrop(crop)` offsets: top = int(round((H - crop) / 2)), same for left."""
    height, width = images.shape[-2:]
    if height < crop or width < crop:
        raise ValueError(f"cannot center-crop {crop}x{crop} from {height}x{width}")
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return images[..., top:top + crop, left:left + crop]


def resize_with_pil(frames: np.ndarray, size: tuple[int, int]):
    """PIL `Image.resize((w, h), BILINEAR)` of every (H, W, 3) uint8 frame, `size` = (height, width):
    exactly what torchvision's `Resize` computes on PIL images (the official transforms). Returns a
    (N, 3, h, w) uint8 CPU tensor."""
    import torch
    from PIL import Image

    height, width = size
    resized = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()


def normalize_on_device(images_uint8, mean: Sequence[float], std: Sequence[float], device):
    """uint8 (N, 3, H, W) → float32 on `device`, scaled to [0, 1] (ToTensor) and mean/std-normalised."""
    import torch

    x = images_uint8.to(device, non_blocking=True).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return x.sub_(mean_t).div_(std_t)
