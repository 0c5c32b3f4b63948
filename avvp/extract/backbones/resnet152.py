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

This module also holds the frame helpers that the other image backbones (`r2plus1d`, `clip`) reuse.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from avvp.extract.backbones.base import (
    BACKBONES,
    Backbone,
    BackboneConfig,
    OutputSpec,
    VideoInput,
)
from avvp.extract.backbones.weights import (
    InputRecipe,
    ResolvedWeights,
    WeightsSpec,
    announce_random_weights,
    autocast_for,
    check_options,
    check_weights_mode,
    chunked,
    load_state_dict_file,
    require_network,
    resolve_weights_file,
    seeded_init,
    torch_device,
)

FRAMES_PER_VIDEO = 80  # the reference selection: 8 fps over 10 s
FRAME_FPS = 8

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
    recipes=RESNET152_RECIPES,
)

COMMON_OPTIONS = {
    "batch_frames": "images per forward pass (default 64)",
    "random_seed": "seed of the random init with --weights random (default 0)",
}


# ------------------------------------------------------------------------------------------------
# frame helpers (shared with r2plus1d and clip)


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


def pretrainedmodels_to_torchvision_keys(state: dict) -> dict:
    """A state dict saved from a pretrainedmodels ResNet (`last_linear.*`) in torchvision's layout (`fc.*`)."""
    return {("fc." + k[len("last_linear."):] if k.startswith("last_linear.") else k): v for k, v in state.items()}


def normalize_on_device(images_uint8, mean: Sequence[float], std: Sequence[float], device):
    """uint8 (N, 3, H, W) → float32 on `device`, scaled to [0, 1] (ToTensor) and mean/std-normalised."""
    import torch

    x = images_uint8.to(device, non_blocking=True).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return x.sub_(mean_t).div_(std_t)


# ------------------------------------------------------------------------------------------------


@BACKBONES.register("resnet152")
class ResNet152Backbone(Backbone):
    """ImageNet ResNet-152, fc = identity: (80, 2048) per video, one row per 8 fps frame."""

    name = "resnet152"
    needs_frames = True
    weights_spec = RESNET152_IMAGENET1K_V1
    feature_dim = 2048

    def __init__(self, config: BackboneConfig):
        super().__init__(config)
        check_weights_mode(config)
        check_options(config, self.name, COMMON_OPTIONS)
        self.batch_frames = int(config.option("batch_frames", 64))
        if self.batch_frames < 1:
            raise ValueError(f"{self.name}: batch_frames must be >= 1, got {self.batch_frames}")
        self.random_seed = int(config.option("random_seed", 0))
        self.device = torch_device(config)
        # Weights are resolved now (a missing file fails at construction, before any decoding);
        # the network itself is built on first use.
        self.resolved: ResolvedWeights | None = None
        if self.random_weights:
            announce_random_weights(self.name)
        elif not self.inputs_only:
            self.resolved = resolve_weights_file(self.weights_spec, config.weights_dir)
        self._model = None

    recipes = RESNET152_RECIPES

    def outputs(self) -> list[OutputSpec]:
        attrs: dict[str, Any] = {"fps": FRAME_FPS, **self.weights_spec.preprocessing}
        if self.profile == "reference":
            attrs["interpolation"] = "bilinear, PIL Image.resize (pretrainedmodels TransformImage)"
        if self.random_weights:
            attrs["random_seed"] = self.random_seed
        return [OutputSpec(f"features/{self.name}", (FRAMES_PER_VIDEO, self.feature_dim), "float32",
                           "frame(8 fps, 80) x dim", attrs)]

    # -- model ------------------------------------------------------------------------------

    def load_model(self):
        """The eval-mode network on `self.device` (built once, on first call)."""
        if self._model is None:
            import torch
            import torchvision

            require_network(self)
            with seeded_init(self.random_seed):
                model = torchvision.models.resnet152(weights=None)
            if self.resolved is not None:
                state = pretrainedmodels_to_torchvision_keys(load_state_dict_file(self.resolved.path))
                model.load_state_dict(state, strict=True)
            model.fc = torch.nn.Identity()
            # channels_last: faster convolutions on CPU (oneDNN) and on CUDA tensor cores
            model = model.to(memory_format=torch.channels_last)
            self._model = model.eval().requires_grad_(False).to(self.device)
        return self._model

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
            for part in chunked(images_uint8.shape[0], self.batch_frames):
                x = normalize_on_device(images_uint8[part], pre["mean"], pre["std"], self.device)
                out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.feature_dim)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        import torch

        if not videos:
            return []
        for v in videos:
            self.check_profile(v)
        # frames of all videos go through the network together (each video resized at its own size)
        images = torch.cat([self.preprocess(check_frames(v, self.name)) for v in videos])
        feats = self.embed(images).numpy()
        return [{f"features/{self.name}": np.ascontiguousarray(feats[i * FRAMES_PER_VIDEO:(i + 1) * FRAMES_PER_VIDEO])}
                for i in range(len(videos))]
