"""`clap`: LAION-CLAP (HTSAT-tiny, fusion) audio features and zero-shot scores as VALOR computes them.

One backbone, three per-video outputs plus one dataset array (VALOR `utils/clap_preprocess.py`,
`utils/clap_utils.py`; reference-methods §2):

* ``features/clap`` (10, 512): VALOR's per-second pseudo-label embeddings. The 48 kHz waveform of
  length L is cut into 10 pieces, piece i = samples [round(i·L/10), round(i·L/10) + L//10)
  (`np.round(np.linspace(0, L, 11))`, numpy's round-half-even); each piece goes through laion_clap's
  `get_audio_embedding_from_data` recipe: int16 round trip (clip to [-1, 1], ×32767, truncate to
  int16, /32767), repeat-padded to 480000 samples (tile ⌊480000/n⌋ times, then zeros), log-mel,
  4 identical fusion channels (no piece is longer than 10 s), HTS-AT, audio projection, L2-normalised.
* ``zeroshot/clap`` (10, 25): exp(logit_scale_a) · (piece embedding · text embedding), both unit
  vectors, texts = "This is a sound of " + lower-cased VALOR CLAP labels (`prompts.CLAP_TEXTS`). These
  are the raw scores VALOR thresholds into pseudo labels.
* ``features/clap_tokens`` (64, 768): VALOR++'s parser input. The whole clip is resampled BY INDEX to
  exactly 480000 samples (`x[np.round(np.linspace(0, L-1, 480000))]`), int16 round trip, log-mel,
  HTS-AT up to the final norm; the token map entering `tscam_conv` has shape (768, 2, 32)
  (2 frequency groups × 32 time groups, HTS-AT's "group 2D CNN" layout) and is flattened over
  (2, 32) and transposed: row r = f·32 + t. It is captured with a forward pre-hook on
  `audio_branch.tscam_conv`, i.e. the exact tensor VALOR's rewritten forward flattens.
* ``text/clap`` (25, 512) via `dataset_arrays()`: the L2-normalised text embeddings.

Input profiles (`CLAP_RECIPES`): the recipe above is applied to the decoder's 48 kHz waveform of
length L. "reference": `librosa.load(v, sr=48000)` of the whole file, decoder tail included (a 10 s
AAC clip has L = 480,375, pieces of L // 10 = 48,037), exactly VALOR's input; "clean": the window's
exact 480,000 samples (pieces of 48,000).

A video without audio gets all-zero arrays (the store records `has_audio` per video).

The log-mel is computed here, in torch, with the same operations as laion_clap's `get_mel`
(torchaudio `MelSpectrogram(48000, n_fft=1024, win 1024, hop 480, center, reflect, power 2,
htk mel, no norm, 64 mels, 50–14000 Hz)` then `AmplitudeToDB(top_db=None)` = 10·log10(max(x, 1e-10))):
laion_clap imports torchaudio lazily and this project does not install it, and computing it here lets
all pieces of all videos of a batch share one STFT on the model's device.

Model construction is offline (`clap_offline`); the checkpoint is `630k-fusion-best.pt` (VALOR's
`load_ckpt(model_id=2)`), loaded through laion_clap's real `load_ckpt(ckpt=path)`.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avvp.data.classes import NUM_CLASSES, NUM_SEGMENTS
from avvp.data.layouts import SEGMENTS, TOKENS
from avvp.extract.backbones import clap_offline
from avvp.extract.backbones.base import (
    BACKBONES,
    Backbone,
    BackboneOptions,
    OutputSpec,
    VideoInput,
    WeightsUnavailable,
    option_field,
)
from avvp.extract.backbones.prompts import CLAP_TEXTS
from avvp.extract.backbones.weights import (
    InputRecipe,
    ResolvedWeights,
    WeightsSpec,
    autocast_for,
    chunked,
    resolve_weights_file,
)

# laion_clap HTSAT audio_cfg (model_configs/HTSAT-tiny.json), checked against the built model
SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000  # 10 s: every forward sees exactly this many samples
WINDOW_SIZE = 1024
HOP_SIZE = 480
MEL_BINS = 64
FMIN = 50.0
FMAX = 14000.0
MEL_FRAMES = CLIP_SAMPLES // HOP_SIZE + 1  # 1001 with center=True
EMBED_DIM = 512
TOKEN_GRID = (2, 32)  # (frequency groups, time groups) of the HTS-AT token map
TOKEN_DIM = 768
NUM_TOKENS = TOKEN_GRID[0] * TOKEN_GRID[1]

CLAP_RECIPES = {
    "reference": InputRecipe(
        "VALOR utils/clap_preprocess.py (librosa.load sr=48000) + laion_clap get_audio_embedding_from_data",
        ("whole-file librosa.load(sr=48000) waveform of length L", "pieces [round(i L / 10), + L // 10)",
         "token waveform x[round(linspace(0, L-1, 480000))]", "int16 round trip", "repeat-pad pieces to 480000",
         "fusion log-mel")),
    "clean": InputRecipe(
        "avvp clean",
        ("window cut to 480000 samples (ffmpeg int16 + soxr HQ)", "pieces [round(i L / 10), + L // 10)",
         "token waveform x[round(linspace(0, L-1, 480000))]", "int16 round trip", "repeat-pad pieces to 480000",
         "fusion log-mel")),
}


def clap_weights_spec(filename: str) -> WeightsSpec:
    """The WeightsSpec of one of laion's checkpoint files. Its cache is laion_clap's own download location
    (the package directory, where `load_ckpt(model_id=...)` puts it); the stored id is
    "laion_clap:<file name>"."""
    return WeightsSpec(backbone="clap", weights_name=f"laion_clap:{filename}", filename=filename,
                       url=f"https://huggingface.co/lukewys/laion_clap/resolve/main/{filename}",
                       cache="package", package="laion_clap")


CLAP_630K_FUSION = clap_weights_spec("630k-fusion-best.pt")  # VALOR's load_ckpt(model_id=2)
TOKENIZER_SUBDIR = "roberta-base"  # <weights_dir>/roberta-base/{vocab.json, merges.txt}
TOKENIZER_HF_REPOS = ("FacebookAI/roberta-base", "roberta-base")
DEFAULT_BATCH_ITEMS = 32  # 10 s waveforms per HTS-AT forward (11 per video)


# ------------------------------------------------------------------------------ waveform recipe
def int16_round_trip(waveform: np.ndarray) -> np.ndarray:
    """laion_clap's `int16_to_float32(float32_to_int16(x))`: clip to [-1, 1], ×32767, truncate to
    int16, then /32767 in float64 and cast to float32 — the same operations in the same dtypes."""
    quantised = (np.clip(np.asarray(waveform, dtype=np.float32), a_min=-1.0, a_max=1.0) * 32767.0).astype(np.int16)
    return (quantised / 32767.0).astype(np.float32)


def segment_bounds(num_samples: int, num_segments: int = NUM_SEGMENTS) -> np.ndarray:
    """(num_segments, 2) [start, stop) sample indices of VALOR's per-second pieces:
    start_i = np.round(np.linspace(0, L, num_segments + 1))[i] (half-to-even), length L // num_segments."""
    step = num_samples // num_segments
    if step < 1:
        raise ValueError(f"audio of {num_samples} samples is too short for {num_segments} segments")
    starts = np.round(np.linspace(0, num_samples, num_segments + 1)).astype(np.int64)[:num_segments]
    return np.stack([starts, starts + step], axis=1)


def repeat_pad(waveform: np.ndarray, target: int = CLIP_SAMPLES) -> np.ndarray:
    """laion_clap's 'repeatpad': tile the waveform ⌊target / n⌋ times, then zero-pad to `target`."""
    n = len(waveform)
    if n == 0:
        raise ValueError("cannot repeat-pad an empty waveform")
    if n > target:
        raise ValueError(f"a CLAP piece of {n} samples is longer than {target}; fusion of longer audio is not used")
    out = np.zeros(target, dtype=np.float32)
    tiled = np.tile(waveform, target // n)
    out[: len(tiled)] = tiled
    return out


def resample_by_index(waveform: np.ndarray, target: int = CLIP_SAMPLES) -> np.ndarray:
    """VALOR's fixed-length resampling for the token features: x[round(linspace(0, n-1, target))]."""
    if len(waveform) == 0:
        raise ValueError("cannot resample an empty waveform")
    index = np.round(np.linspace(0, len(waveform) - 1, target)).astype(np.int32)
    return np.asarray(waveform, dtype=np.float32)[index]


def clap_inputs(audio_48k: np.ndarray) -> dict[str, np.ndarray]:
    """VALOR's two CLAP inputs before int16 quantisation and padding: "clap_segments" (10, L // 10)
    (the per-second pieces) and "clap_tokens" (480000,) (the whole clip resampled by index)."""
    audio = np.asarray(audio_48k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio_48k must be mono (n,), got shape {audio.shape}")
    pieces = np.stack([audio[start:stop] for start, stop in segment_bounds(len(audio))])
    return {"clap_segments": pieces, "clap_tokens": resample_by_index(audio)}


def video_waveforms(audio_48k: np.ndarray) -> np.ndarray:
    """(11, 480000) float32: the 10 padded pieces (rows 0-9) and the whole clip (row 10), each after
    the int16 round trip, in the order VALOR applies the operations."""
    inputs = clap_inputs(audio_48k)
    rows = [repeat_pad(int16_round_trip(piece)) for piece in inputs["clap_segments"]]
    rows.append(int16_round_trip(inputs["clap_tokens"]))
    return np.stack(rows)


# ------------------------------------------------------------------------------ log-mel
def mel_filterbank(device=None):
    """(513, 64) float32 HTK triangular filterbank, no normalisation, built with the same float32
    operations as torchaudio's `melscale_fbanks(513, 50, 14000, 64, 48000, None, "htk")`."""
    import torch

    n_freqs = WINDOW_SIZE // 2 + 1
    all_freqs = torch.linspace(0, SAMPLE_RATE // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + FMIN / 700.0)
    m_max = 2595.0 * math.log10(1.0 + FMAX / 700.0)
    m_pts = torch.linspace(m_min, m_max, MEL_BINS + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.max(torch.zeros(1), torch.min(down, up))
    return fb.to(device) if device is not None else fb


def log_mel(waveforms, filterbank=None):
    """(B, 480000) float32 tensor → (B, 1001, 64) log-mel in dB, laion_clap `get_mel` per row."""
    import torch

    if filterbank is None:
        filterbank = mel_filterbank(waveforms.device)
    window = torch.hann_window(WINDOW_SIZE, device=waveforms.device, dtype=waveforms.dtype)
    spec = torch.stft(
        waveforms, n_fft=WINDOW_SIZE, hop_length=HOP_SIZE, win_length=WINDOW_SIZE, window=window,
        center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    power = spec.abs().pow(2.0)  # (B, 513, T)
    mel = torch.matmul(power.transpose(-1, -2), filterbank)  # (B, T, 64)
    return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


def check_audio_config(audio_cfg: dict[str, Any]) -> None:
    """The built model must use the front-end constants this module implements."""
    expected = dict(sample_rate=SAMPLE_RATE, clip_samples=CLIP_SAMPLES, window_size=WINDOW_SIZE,
                    hop_size=HOP_SIZE, mel_bins=MEL_BINS, fmin=FMIN, fmax=FMAX)
    wrong = {k: audio_cfg.get(k) for k, v in expected.items() if audio_cfg.get(k) != v}
    if wrong:
        raise ValueError(f"clap: model audio config {wrong} differs from the recipe implemented here {expected}")


# ------------------------------------------------------------------------------ weights lookup
def find_tokenizer_dir(weights_dir: str | None, explicit: str | None) -> Path | None:
    """A directory with roberta-base's vocab.json + merges.txt: the `tokenizer_dir` option, then
    <weights_dir>/roberta-base, then the huggingface_hub cache. None when there is none."""
    if explicit:
        if not clap_offline.has_tokenizer_files(explicit):
            raise WeightsUnavailable(f"clap: tokenizer_dir {explicit} must hold {' and '.join(clap_offline.TOKENIZER_FILES)}")
        return Path(explicit)
    if weights_dir and clap_offline.has_tokenizer_files(Path(weights_dir) / TOKENIZER_SUBDIR):
        return Path(weights_dir) / TOKENIZER_SUBDIR
    try:
        from huggingface_hub import try_to_load_from_cache

        from avvp.extract.backbones.weights import hf_hub_cache_dir

        for repo in TOKENIZER_HF_REPOS:
            hit = try_to_load_from_cache(repo, "vocab.json", cache_dir=str(hf_hub_cache_dir()))
            if isinstance(hit, str) and clap_offline.has_tokenizer_files(Path(hit).parent):
                return Path(hit).parent
    except ImportError:  # huggingface_hub missing: no cache to look in
        pass
    return None


def missing_tokenizer_message(weights_dir: str | None) -> str:
    where = Path(weights_dir) / TOKENIZER_SUBDIR if weights_dir else Path("DIR") / TOKENIZER_SUBDIR
    return (
        "clap: pretrained weights need roberta-base's real tokenizer (otherwise the text embeddings "
        "and zero-shot scores are silently wrong), and none was found offline.\n"
        f"  expected files: {where / 'vocab.json'} and {where / 'merges.txt'}\n"
        "  download from: https://huggingface.co/FacebookAI/roberta-base (vocab.json, merges.txt)\n"
        f"  fix: put both files in {where} and pass --weights-dir {where.parent}, or set the clap option "
        "tokenizer_dir, or set AVVP_ONLINE=1 once so huggingface_hub caches roberta-base\n"
        "   or: pass --weights random (byte-level tokenizer, meaningless outputs, tests only)"
    )


# ------------------------------------------------------------------------------ backbone
CLAP_OUTPUT_ATTRS: dict[str, dict[str, Any]] = {
    "features/clap": {"recipe": "VALOR 1 s pieces: int16 round trip, repeat-pad to 10 s, fusion log-mel, HTS-AT, "
                                "audio projection, L2-normalised"},
    "zeroshot/clap": {"score": "exp(logit_scale_a) * cosine(features/clap, text/clap)"},
    "features/clap_tokens": {"token_grid": list(TOKEN_GRID),
                             "recipe": "whole clip resampled by index to 480000, int16 round trip, fusion log-mel, "
                                       "HTS-AT token map entering tscam_conv (768, 2, 32) flattened and transposed"},
}


@dataclass(frozen=True)
class ClapOptions(BackboneOptions):
    ckpt: str = option_field(
        CLAP_630K_FUSION.filename, "checkpoint file name (in --weights-dir when given, else laion_clap's download "
        f"directory) or path (default {CLAP_630K_FUSION.filename})")
    amodel: str = option_field("HTSAT-tiny", "laion_clap audio model config (default HTSAT-tiny)")
    enable_fusion: bool = option_field(True, "build the fusion model (default True; the 630k-fusion checkpoint needs it)")
    tokenizer_dir: str | None = option_field(
        None, "directory with roberta-base's vocab.json and merges.txt (default <weights-dir>/roberta-base)")
    batch_items: int = option_field(DEFAULT_BATCH_ITEMS, "10 s waveforms per HTS-AT forward pass, 11 per video (default 32)")

    def __post_init__(self) -> None:
        if self.batch_items < 1:
            raise ValueError(f"batch_items must be >= 1, got {self.batch_items}")


@BACKBONES.register("clap")
class ClapBackbone(Backbone):
    """laion_clap CLAP (HTSAT-tiny, fusion) → features/clap, zeroshot/clap, features/clap_tokens
    per video and text/clap per dataset."""

    name = "clap"
    needs_audio_48k = True
    Options = ClapOptions
    OUTPUTS = (
        OutputSpec("features/clap", (NUM_SEGMENTS, EMBED_DIM), SEGMENTS, "segment x dim"),
        OutputSpec("zeroshot/clap", (NUM_SEGMENTS, NUM_CLASSES), SEGMENTS, "segment x class"),
        OutputSpec("features/clap_tokens", (NUM_TOKENS, TOKEN_DIM), TOKENS, "token(freq*32+time) x dim"),
    )
    recipes = CLAP_RECIPES

    def configure(self) -> None:
        # every file is resolved at construction, so a missing one fails before any decoding; the model
        # (slow to build) is built on first use. A `ckpt` path names its own directory; a file name is
        # looked up like every backbone's weights (--weights-dir, else the cache of its WeightsSpec).
        ckpt = Path(self.options.ckpt).expanduser()
        self.weights_spec = clap_weights_spec(ckpt.name)
        self.checkpoint_dir = str(ckpt.parent) if ckpt.is_absolute() or os.sep in self.options.ckpt else None
        self.tokenizer_dir = find_tokenizer_dir(self.config.weights_dir, self.options.tokenizer_dir)
        self._tokenizer = None
        if self.tokenizer_dir is not None:
            self._tokenizer = clap_offline.load_roberta_tokenizer(self.tokenizer_dir)
            if not self.random_weights and len(self._tokenizer) != clap_offline.ROBERTA_VOCAB_SIZE:
                raise WeightsUnavailable(
                    f"clap: the tokenizer in {self.tokenizer_dir} has {len(self._tokenizer)} tokens, roberta-base "
                    f"has {clap_offline.ROBERTA_VOCAB_SIZE}; the CLAP text branch needs roberta-base's own "
                    "vocab.json and merges.txt"
                )
        self._filterbank = None
        self._text_embeddings: np.ndarray | None = None

    def announce_random_weights(self) -> None:
        super().announce_random_weights()
        if self.tokenizer_dir is None:
            print(
                "avvp: NOTICE: clap uses a BYTE-LEVEL stand-in tokenizer (no roberta-base vocab.json/"
                "merges.txt found): its token ids are not roberta's, text embeddings are meaningless",
                file=sys.stderr, flush=True,
            )

    def resolve_weights(self) -> ResolvedWeights:
        resolved = resolve_weights_file(self.weights_spec, self.checkpoint_dir or self.config.weights_dir)
        if self.tokenizer_dir is None:
            raise WeightsUnavailable(missing_tokenizer_message(self.config.weights_dir))
        return resolved

    @property
    def checkpoint(self) -> Path | None:
        """The resolved checkpoint file (None with random weights or inputs only)."""
        return None if self.resolved is None else self.resolved.path

    # -- model -------------------------------------------------------------------------------
    def build_network(self):
        tokenizer = self._tokenizer if self._tokenizer is not None else clap_offline.byte_level_roberta_tokenizer()
        return clap_offline.build_clap_module(tokenizer, enable_fusion=self.options.enable_fusion,
                                              amodel=self.options.amodel, device=str(self.device))

    def load_weights(self, model, path):
        clap_offline.load_clap_checkpoint(model, path)
        return model

    def place_network(self, model):
        model.eval().requires_grad_(False)  # built on self.device already
        check_audio_config(model.model_cfg["audio_cfg"])
        self._filterbank = mel_filterbank(self.device)
        return model

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale_a), the factor VALOR multiplies cosine similarities by."""
        return float(self.load_model().model.logit_scale_a.detach().exp().float().cpu())

    # -- contract ----------------------------------------------------------------------------
    def output_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        attrs: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "clip_samples": CLIP_SAMPLES}
        return {**attrs, **CLAP_OUTPUT_ATTRS[spec.path]}

    def dataset_arrays(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        attrs = self.text_array_attrs(texts=list(CLAP_TEXTS), logit_scale=self.logit_scale,
                                      real_tokenizer=self.tokenizer_dir is not None)
        return {"text/clap": (self.text_embeddings().copy(), attrs)}

    def text_embeddings(self) -> np.ndarray:
        """(25, 512) L2-normalised embeddings of `prompts.CLAP_TEXTS` (computed once)."""
        if self._text_embeddings is None:
            import torch

            module = self.load_model()
            with torch.inference_mode(), autocast_for(self.config, self.device):
                emb = module.get_text_embedding(list(CLAP_TEXTS), use_tensor=True)
            self._text_embeddings = emb.float().cpu().numpy()
        return self._text_embeddings

    # -------------------------------------------------------------------------------- forward
    def encode_waveforms(self, waveforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 480000) prepared waveforms → ((N, 512) unit audio embeddings, (N, 64, 768) token maps),
        in forward chunks of `batch_items`."""
        import torch
        import torch.nn.functional as F

        model = self.load_model().model
        captured: list[torch.Tensor] = []
        # the input of tscam_conv is HTS-AT's (B, 768, 2, 32) grouped token map after the final norm
        hook = model.audio_branch.tscam_conv.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        embeddings, tokens = [], []
        try:
            for part in chunked(len(waveforms), self.options.batch_items):
                with torch.inference_mode():
                    wave = torch.from_numpy(np.ascontiguousarray(waveforms[part])).to(self.device)
                    mel = log_mel(wave, self._filterbank)  # fp32, outside autocast
                    batch = {"mel_fusion": mel.unsqueeze(1).expand(-1, 4, -1, -1).contiguous(),
                             "longer": torch.zeros(len(mel), 1, dtype=torch.bool, device=self.device)}
                    captured.clear()
                    with autocast_for(self.config, self.device):
                        out = model.encode_audio(batch, device=self.device)
                        emb = F.normalize(model.audio_projection(out["embedding"]).float(), dim=-1)
                    token_map = captured[0].float()
                    embeddings.append(emb.cpu().numpy())
                    tokens.append(token_map.flatten(2).transpose(1, 2).cpu().numpy())
        finally:
            hook.remove()
        return np.concatenate(embeddings), np.concatenate(tokens)

    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        import torch

        self.check_profiles(videos)
        results = [self._zeros() for _ in videos]
        audible = [i for i, v in enumerate(videos) if v.has_audio]
        if not audible:
            return results
        waveforms = np.concatenate([video_waveforms(videos[i].audio_48k) for i in audible])
        embeddings, tokens = self.encode_waveforms(waveforms)
        text = torch.from_numpy(self.text_embeddings())
        scale = self.load_model().model.logit_scale_a.detach().exp().float().cpu()
        per_video = NUM_SEGMENTS + 1
        for k, i in enumerate(audible):
            rows = slice(k * per_video, k * per_video + NUM_SEGMENTS)
            pieces = embeddings[rows]
            # VALOR: `logit_scale_a * audio_embeds @ text_embeds.t()` (left to right: scale first)
            scores = scale * torch.from_numpy(pieces) @ text.T
            results[i] = {
                "features/clap": pieces.astype(np.float32),
                "zeroshot/clap": scores.numpy().astype(np.float32),
                "features/clap_tokens": tokens[k * per_video + NUM_SEGMENTS].astype(np.float32),
            }
        return results

    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """{"clap_segments": (10, L // 10), "clap_tokens": (480000,)} float32, before the int16 round trip
        and repeat-padding (zeros of the clean shapes without audio)."""
        self.check_profile(video)
        if not video.has_audio:
            return {"clap_segments": np.zeros((NUM_SEGMENTS, CLIP_SAMPLES // NUM_SEGMENTS), np.float32),
                    "clap_tokens": np.zeros(CLIP_SAMPLES, np.float32)}
        return clap_inputs(video.audio_48k)

    def _zeros(self) -> dict[str, np.ndarray]:
        return {spec.path: np.zeros(spec.shape, dtype=spec.dtype) for spec in self.outputs()}
