"""`vggish`: the AudioSet VGGish embedding, (10, 128) per video, as the official AVVP audio features.

Reference (reference-methods §1c, extraction-anchors §3.4): AVVP's audio features come from the
TF-slim VGGish of the AudioSet release run on the 16 kHz wav of each clip: `vggish_input` log-mel
examples (see `vggish_frontend`), 10 non-overlapping 0.96 s examples → the `vggish/embedding` output,
(10, 128), raw (whether the released arrays were additionally PCA-whitened/quantised is unverified).

Network (our own module, the VGGish layer spec): conv 3×3 (stride 1, padding 1) + ReLU blocks
64 | pool | 128 | pool | 256, 256 | pool | 512, 512 | pool (2×2 max-pools, stride 2), flattened in
(time, freq, channel) order like TF's NHWC tensors (512·6·4 = 12288), then FC 4096 + ReLU,
FC 4096 + ReLU, FC 128 + ReLU.

The final ReLU: the released TF model (2017 - Aug 2020) applied slim's default ReLU to fc2, so its
`vggish/embedding` was post-activation; tensorflow/models PR #9080 (2020-08-10) removed it
("VGGish embeddings are pre-activation, not post-activation"). AVVP's features (ECCV 2020, AVE-era
2018 scripts) predate that change, and both PyTorch ports (torchvggish, torchaudio) keep the ReLU,
so the default is post-ReLU; option `final_relu=False` gives the current pre-activation output.

Weights: the torchvggish port `vggish-10086976.pth` (keys `features.*`, `embeddings.*`) or
torchaudio's `vggish.pt` (keys `features_network.*`, `embedding_network.*`, mapped by
`torchaudio_to_torchvggish_keys`). Both are direct conversions of the TF checkpoint. The TF release
itself (`vggish_model.ckpt`, `vggish_pca_params.npz`) is converted once into the torchvggish files by
`avvp-convert-weights vggish` (`vggish_tf`); the `weights` attribute then says so.

Optional postprocess (option `postprocess=True`): the AudioSet release's PCA + whitening
(`vggish_pca_params-970ea276.pth`: `pca_eigen_vectors` (128, 128), `pca_means` (128,)), clip to
[-2, 2], scale to [0, 255] and TRUNCATE to 8 bit as TF's `vggish_postprocess` does (`astype(uint8)`;
torchvggish rounds instead). The values 0..255 are stored as float32.

Input profiles (`VGGISH_RECIPES`): the frontend is the same; the 16 kHz waveform differs. "reference"
is the decoder's port of AVVP `scripts/extract_audio.py` (moviepy 1.0.3 `write_audiofile(fps=16000)`:
44.1 kHz stereo picked by index, no anti-alias filter, clipped to ±0.99, int16), channels averaged as
VGGish's wav reader does, `int(16000 * duration)` samples; "clean" is soxr resampling of the window's
exact 160000 samples.

Windows: exactly 10 examples are required per video (the reference asserts (10, 96, 64) and skips
other clips); a 10 s window at 16 kHz gives exactly 10.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avvp.data.classes import NUM_SEGMENTS
from avvp.data.layouts import SEGMENTS
from avvp.extract.backbones import vggish_frontend as frontend
from avvp.extract.backbones.base import (
    BACKBONES,
    Backbone,
    BackboneOptions,
    OutputSpec,
    VideoInput,
    WeightsUnavailable,
    option_field,
    rows_per_video,
)
from avvp.extract.backbones.weights import (
    InputRecipe,
    ResolvedWeights,
    WeightsSpec,
    autocast_for,
    chunked,
    load_state_dict_file,
    resolve_weights_file,
)

EMBEDDING_SIZE = 128
FLATTENED_SIZE = 512 * 6 * 4  # 96×64 input after four 2×2 pools → 6×4, 512 channels
CONV_CHANNELS: tuple[Any, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0

VGGISH_RECIPES = {
    "reference": InputRecipe(
        "AVVP scripts/extract_audio.py (moviepy 1.0.3 write_audiofile fps=16000) + VGGish wavfile_to_examples",
        ("ffmpeg -ar 44100 -ac 2 s16", "sample round(44100 k / 16000), moviepy buffer", "clip +-0.99, x32768, int16",
         "stereo mean / 32768", "log-mel 25 ms / 10 ms, 64 bands 125-7500 Hz, log(x + 0.01)", "10 examples of 0.96 s")),
    "clean": InputRecipe(
        "avvp clean",
        ("ffmpeg int16 + soxr HQ to 16 kHz, channel mean, window cut to 160000 samples",
         "log-mel 25 ms / 10 ms, 64 bands 125-7500 Hz, log(x + 0.01)", "10 examples of 0.96 s")),
}

# The file names carry what looks like a hash suffix, but it is not verified here (no hash is
# published with them), so no sha256_prefix is set.
VGGISH_TORCHVGGISH = WeightsSpec(
    backbone="vggish",
    weights_name="torchvggish:vggish-10086976",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    cache="torch_hub",
)
VGGISH_TORCHAUDIO = WeightsSpec(
    backbone="vggish",
    weights_name="torchaudio:vggish",
    filename="vggish.pt",
    url="https://download.pytorch.org/torchaudio/models/vggish.pt",
    cache="none",
)
VGGISH_PCA = WeightsSpec(
    backbone="vggish",
    weights_name="torchvggish:vggish_pca_params-970ea276",
    filename="vggish_pca_params-970ea276.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth",
    cache="torch_hub",
)


@dataclass(frozen=True)
class VGGishOptions(BackboneOptions):
    batch_examples: int = option_field(256, "0.96 s examples per forward pass (default 256)")
    postprocess: bool = option_field(
        False, "apply the AudioSet PCA/whitening + 8-bit quantisation (default False: raw embeddings)")
    final_relu: bool = option_field(
        True, "ReLU on the 128-d layer, as the pre-2020 TF release and both torch ports (default True)")

    def __post_init__(self) -> None:
        if self.batch_examples < 1:
            raise ValueError(f"batch_examples must be >= 1, got {self.batch_examples}")

TORCHAUDIO_PREFIXES = {"features_network.": "features.", "embedding_network.": "embeddings."}


# ------------------------------------------------------------------------------ network
def build_vggish_network(final_relu: bool = True):
    """The VGGish torch module; state-dict keys `features.{0,3,6,8,11,13}.*` and
    `embeddings.{0,2,4}.*`, as the torchvggish port."""
    import torch
    from torch import nn

    class VGGishNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            layers: list[nn.Module] = []
            channels = 1
            for spec in CONV_CHANNELS:
                if spec == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    channels = spec
            self.features = nn.Sequential(*layers)
            self.embeddings = nn.Sequential(
                nn.Linear(FLATTENED_SIZE, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, EMBEDDING_SIZE), nn.ReLU(inplace=True) if final_relu else nn.Identity(),
            )

        def forward(self, examples: torch.Tensor) -> torch.Tensor:
            """(N, 1, 96, 64) log-mel examples → (N, 128)."""
            x = self.features(examples)
            # TF flattens NHWC: (N, C, T, F) → (N, T, F, C) before the fully connected layers
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return self.embeddings(x)

    return VGGishNetwork()


def torchaudio_to_torchvggish_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename torchaudio's `features_network.*` / `embedding_network.*` keys to torchvggish's
    `features.*` / `embeddings.*`; keys already in torchvggish layout pass through."""
    renamed = {}
    for key, value in state.items():
        for old, new in TORCHAUDIO_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def read_vggish_state_dict(path: Path | str) -> dict[str, Any]:
    """A VGGish state dict (either published layout) in torchvggish key layout. A torchvggish model
    saved with its postprocessor also holds `pproc.*` entries; they are not part of the network."""
    state = torchaudio_to_torchvggish_keys(load_state_dict_file(path))
    return {k: v for k, v in state.items() if not k.startswith("pproc.")}


def read_pca_params(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(eigen_vectors (128, 128), means (128,)) float64 from the torchvggish PCA file (a torch pickle
    of numpy arrays or tensors) or the TF release's `vggish_pca_params.npz`."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as params:
            eigen, means = params["pca_eigen_vectors"], params["pca_means"]
    else:
        import torch

        try:  # numpy >= 2 moved the reconstructor
            from numpy._core.multiarray import _reconstruct
        except ImportError:
            from numpy.core.multiarray import _reconstruct
        # numpy arrays in a torch pickle need their reconstructors allow-listed for weights_only
        numpy_globals = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32))]
        with torch.serialization.safe_globals(numpy_globals):
            params = torch.load(str(path), map_location="cpu", weights_only=True)
        eigen, means = params["pca_eigen_vectors"], params["pca_means"]
    eigen = np.asarray(eigen, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    if eigen.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"{path}: bad PCA parameter shapes {eigen.shape}, {means.shape}")
    return eigen, means


def pca_quantize(embeddings: np.ndarray, eigen_vectors: np.ndarray, means: np.ndarray) -> np.ndarray:
    """TF `vggish_postprocess`: PCA (eigen · (x - means)), clip to [-2, 2], scale to [0, 255],
    truncate to uint8. Returns float32 values in 0..255."""
    pca = (eigen_vectors @ (np.asarray(embeddings, dtype=np.float64).T - means.reshape(-1, 1))).T
    clipped = np.clip(pca, QUANTIZE_MIN, QUANTIZE_MAX)
    quantized = ((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN))).astype(np.uint8)
    return quantized.astype(np.float32)


def resolve_vggish_weights(weights_dir: str | None) -> ResolvedWeights:
    """torchvggish's file, else torchaudio's; one WeightsUnavailable naming both when neither exists."""
    try:
        return resolve_weights_file(VGGISH_TORCHVGGISH, weights_dir)
    except WeightsUnavailable as first:
        if weights_dir is not None:
            candidates = [Path(weights_dir) / VGGISH_TORCHAUDIO.filename]
        else:
            import torch

            # where torchaudio's VGGISH bundle caches its weights
            candidates = [Path(torch.hub.get_dir()) / "torchaudio" / "models" / VGGISH_TORCHAUDIO.filename]
        for path in candidates:
            if path.is_file():
                return ResolvedWeights(path, VGGISH_TORCHAUDIO.weights_name, "weights_dir" if weights_dir else "cache", None)
        raise WeightsUnavailable(
            f"{first}\n  also accepted: torchaudio's {VGGISH_TORCHAUDIO.filename} "
            f"(from {VGGISH_TORCHAUDIO.url}), looked in: {', '.join(str(p) for p in candidates)}"
        ) from None


PROVENANCE_FILE = "avvp-converted.json"  # written next to converted files by avvp-convert-weights (vggish_tf)


def converted_from(path: Path) -> str | None:
    """The source recorded by `convert_vggish_release` for a file in its output folder (None: not converted)."""
    record = path.parent / PROVENANCE_FILE
    if not record.is_file():
        return None
    try:
        entry = json.loads(record.read_text()).get(path.name)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or "source" not in entry:
        return None
    return f"converted by avvp-convert-weights from {entry.get('kind', 'file')} {Path(entry['source']).name}"


def described(resolved: ResolvedWeights) -> str:
    """The weights id, plus the source `avvp-convert-weights vggish` recorded for a file it wrote."""
    note = converted_from(Path(resolved.path))
    return f"{resolved.weights_id} ({note})" if note else resolved.weights_id


# ------------------------------------------------------------------------------ backbone
@BACKBONES.register("vggish")
class VGGishBackbone(Backbone):
    """VGGish on the 16 kHz track: (10, 128) per video, one row per 0.96 s example."""

    name = "vggish"
    needs_audio_16k = True

    Options = VGGishOptions
    OUTPUTS = (OutputSpec("features/vggish", (NUM_SEGMENTS, EMBEDDING_SIZE), SEGMENTS, "example(0.96 s) x dim"),)
    recipes = VGGISH_RECIPES
    # both change the numbers (PCA + 8-bit quantisation; pre-/post-ReLU): a parse must use the training store's
    inherited_options = ("postprocess", "final_relu")

    def configure(self) -> None:
        self.pca: ResolvedWeights | None = None
        self._pca_params: tuple[np.ndarray, np.ndarray] | None = None

    def resolve_weights(self) -> ResolvedWeights:
        resolved = resolve_vggish_weights(self.config.weights_dir)
        if self.options.postprocess:
            # only with pretrained weights: with random ones the PCA parameters are random too (pca_params)
            self.pca = resolve_weights_file(VGGISH_PCA, self.config.weights_dir)
        return resolved

    def weights_id(self) -> str:
        base = "random" if self.resolved is None else described(self.resolved)
        return base + (f" + {described(self.pca)}" if self.pca is not None else "")

    def output_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        return {"sample_rate": frontend.SAMPLE_RATE, "example_seconds": 0.96,
                "postprocess": self.options.postprocess, "final_relu": self.options.final_relu}

    # -- model -------------------------------------------------------------------------------
    def build_network(self):
        import torch

        if self.resolved is not None:
            # no point initialising 72 M parameters that the file overwrites: build on the meta
            # device and adopt the loaded tensors in load_weights
            with torch.device("meta"):
                return build_vggish_network(self.options.final_relu)
        return build_vggish_network(self.options.final_relu)

    def load_weights(self, model, path):
        model.load_state_dict(read_vggish_state_dict(path), strict=True, assign=True)
        return model

    def pca_params(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pca_params is None:
            if self.pca is not None:
                self._pca_params = read_pca_params(self.pca.path)
            else:  # random weights: a seeded orthonormal rotation and zero means
                rng = np.random.default_rng(self.options.random_seed)
                rotation, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_SIZE, EMBEDDING_SIZE)))
                self._pca_params = (rotation, np.zeros(EMBEDDING_SIZE))
        return self._pca_params

    # -- extraction --------------------------------------------------------------------------
    def examples(self, video: VideoInput) -> np.ndarray:
        """(10, 96, 64) float32 log-mel examples of one video; ValueError for another count."""
        audio = np.asarray(video.audio_16k)
        ex = frontend.waveform_to_examples(audio)
        if ex.shape[0] != NUM_SEGMENTS:
            raise ValueError(
                f"vggish: {len(audio)} samples at 16 kHz give {ex.shape[0]} examples of 0.96 s, need exactly "
                f"{NUM_SEGMENTS} (between {frontend.STFT_WINDOW_SAMPLES + (NUM_SEGMENTS * 96 - 1) * 160} and "
                f"{frontend.STFT_WINDOW_SAMPLES + ((NUM_SEGMENTS + 1) * 96 - 1) * 160 - 1} samples)"
                + ("; the official AVVP pipeline skips such clips (profile 'clean' pads the window instead)"
                   if self.profile == "reference" else "")
            )
        return ex.astype(np.float32)

    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """{"log_mel": (10, 96, 64) float32}: the examples the network sees (zeros without audio)."""
        self.check_profile(video)
        if not video.has_audio:
            return {"log_mel": np.zeros((NUM_SEGMENTS, frontend.EXAMPLE_FRAMES, frontend.NUM_MEL_BANDS), np.float32)}
        return {"log_mel": self.examples(video)}

    def embed(self, examples: np.ndarray) -> np.ndarray:
        """(N, 96, 64) float32 examples → (N, 128) float32 raw embeddings."""
        import torch

        model = self.load_model()
        out = []
        with torch.inference_mode(), autocast_for(self.config, self.device):
            for part in chunked(len(examples), self.options.batch_examples):
                x = torch.from_numpy(examples[part]).unsqueeze(1).to(self.device)
                out.append(model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_SIZE), np.float32)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        results = [{"features/vggish": np.zeros((NUM_SEGMENTS, EMBEDDING_SIZE), np.float32)} for _ in videos]
        self.check_profiles(videos)
        audible = [i for i, v in enumerate(videos) if v.has_audio]
        if not audible:
            return results
        examples = np.concatenate([self.examples(videos[i]) for i in audible])
        embeddings = self.embed(examples)
        if self.options.postprocess:
            embeddings = pca_quantize(embeddings, *self.pca_params())
        for i, rows in zip(audible, rows_per_video(embeddings.astype(np.float32, copy=False), len(audible))):
            results[i] = {"features/vggish": rows}
        return results
