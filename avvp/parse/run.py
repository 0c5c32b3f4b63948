"""`avvp-parse` end to end: a trained checkpoint + any video(s) → timeline JSON, PNG (and HTML).

1. `load_parser` needs only the checkpoint (`avvp.train.checkpoint.Checkpoint`): it rebuilds the model
   and, from the checkpoint's feature provenance, the backbones that remake its features (`extraction_plan`:
   which backbones, weights random or pretrained, the options that change the numbers, the input profile,
   the precision; features imported from a release use that release's recipe). Explicit settings win, and
   then every way the features would differ from the training ones (`feature_differences`) stops the
   parse with one line naming each, unless `accept_feature_mismatch` (`--accept-feature-mismatch`), which
   the timeline's `meta` records next to the profile and the provenance.
2. `parse_video` covers the whole duration with consecutive windows (0, 10, 20, ... s; the decoder pads
   the last, partial one) and runs, per window, exactly the extraction code of `avvp-extract`
   (`avvp.pipeline.core.decode_job` + `run_backbones`), so the features equal what the store holds for
   the same window.
3. The model runs once on the batch of windows; `avvp.parse.timeline.build_timeline` gates, thresholds and
   merges the segments into events; the JSON, the PNG (with frame thumbnails from the decoded frames) and
   optionally the HTML page are written next to each other in the output folder.

A video that cannot be decoded or extracted gives a `ParseFailure` (stage + message) and the run goes on.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avvp.data.classes import NUM_SEGMENTS
from avvp.data.store import Failure
from avvp.parse.timeline import Timeline, TimelineConfig, WindowPrediction, build_timeline

THUMBNAIL_HEIGHT = 54  # px, the figure's thumbnail strip


def window_starts(duration: float, window: float = 10.0, fps: int = 8) -> list[float]:
    """Starts of the consecutive windows covering the video: 0, window, 2·window, ... — the decoder's own
    rule (`avvp.extract.decode.num_windows`: a last window with less than one frame period of content
    is not started), so every start decodes."""
    from avvp.extract.decode import num_windows

    return [k * window for k in range(num_windows(duration, window, fps))]


@dataclass(frozen=True)
class ParseConfig:
    checkpoint: str
    out: str = "parse_out"
    html: bool = False
    embed_video: bool = False
    max_embed_bytes: int = 20 * 1024 * 1024
    weights: str | None = None  # "pretrained" | "random"; None = what the checkpoint's features were made with
    weights_dir: str | None = None
    device: str = "auto"
    precision: str | None = None  # "fp32" | "bf16" | "fp16"; None = the checkpoint's (fp32 for releases)
    decoder: str | None = None
    gate: str | None = None  # None = the checkpoint's evaluation gate (train.gate); "none" disables gating
    threshold: float = 0.5
    window: float = 10.0
    # explicit backbone options, e.g. (("clip", (("model", "ViT-B-32"),)),); they win over the checkpoint's
    backbone_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    thumbnails: bool = True
    profile: str | None = None  # network-input profile; None = the checkpoint's features' profile
    accept_feature_mismatch: bool = False  # parse even when the features differ from the training ones


class FeatureMismatch(ValueError):
    """What a parse would compute differs from what the model was trained on (one line, every difference)."""

    def __init__(self, differences: Sequence[str]):
        self.differences = list(differences)
        super().__init__("the features this parse would compute differ from the model's training features: "
                         + "; ".join(self.differences)
                         + " (give the checkpoint's settings, or pass --accept-feature-mismatch to parse anyway; "
                           "it is recorded in the timeline)")


@dataclass
class Parser:
    """A loaded checkpoint, ready to parse videos: the model, what it needs, and the built backbones."""

    model: Any
    checkpoint: Any  # avvp.train.checkpoint.Checkpoint
    features: dict[str, str | None]  # role → feature name
    classes: list[str]
    extraction: Any  # ExtractionConfig of the needed backbones
    backbones: list[Any]
    text: dict[str, Any] = field(default_factory=dict)  # label-text embeddings for models that read them
    device: str = "cpu"
    accepted: list[str] = field(default_factory=list)  # feature differences accepted by the user

    @property
    def random_weights(self) -> bool:
        return self.extraction.weights == "random"


@dataclass
class ParseOutput:
    video: str
    timeline: Timeline
    json_path: Path
    png_path: Path
    html_path: Path | None
    seconds: dict[str, float]


class ParseFailure(Failure):
    """A video avvp-parse could not parse: the store's failure row (id = the video path, stage, message)."""

    @property
    def video(self) -> str:
        return self.id


def backbone_for_feature(feature: str) -> str:
    """The backbone that declares the store array `features/<feature>` (KeyError when none does)."""
    from avvp.extract.backbones import backbone_of_output

    return backbone_of_output(f"features/{feature}")


def needed_backbones(features: dict[str, str | None]) -> tuple[str, ...]:
    """Backbones that produce the features of the roles (audio, visual, motion), in that order, unique."""
    return tuple(dict.fromkeys(backbone_for_feature(f) for f in features.values() if f))


def load_parser(cfg: ParseConfig) -> Parser:
    """Load the checkpoint, build the backbones its feature provenance names, and check that they make the
    features the model was trained on (FeatureMismatch otherwise, unless cfg.accept_feature_mismatch)."""
    from avvp.pipeline.core import ExtractionConfig, load_backbones
    from avvp.train.checkpoint import Checkpoint, extraction_plan, feature_differences

    device = ExtractionConfig(device=cfg.device).resolved_device()
    ckpt = Checkpoint.load(cfg.checkpoint)
    features = ckpt.features
    if not features.get("audio") or not features.get("visual"):
        raise ValueError(f"{cfg.checkpoint}: the checkpoint does not name its audio/visual features ({features})")
    plan = extraction_plan(ckpt, weights=cfg.weights, profile=cfg.profile, precision=cfg.precision,
                           backbone_options=cfg.backbone_options)
    extraction = ExtractionConfig(
        backbones=plan.backbones, weights=plan.weights, weights_dir=cfg.weights_dir, device=device,
        precision=plan.precision, decoder=cfg.decoder, start=0.0, window=cfg.window,
        backbone_options=plan.options, profile=plan.profile,
    )
    backbones = load_backbones(extraction)
    differences = feature_differences(ckpt, backbones)
    if differences and not cfg.accept_feature_mismatch:
        raise FeatureMismatch(differences)
    parser = Parser(model=ckpt.build_model(device), checkpoint=ckpt, features=features, classes=list(ckpt.classes),
                    extraction=extraction, backbones=backbones, device=device, accepted=differences)
    parser.text = _label_text(parser)
    return parser


def _label_text(parser: Parser) -> dict[str, Any]:
    """Label-text embeddings for models that consume them (LEAP, LINK): the checkpoint carries the ones it
    was trained with; a migrated version-1 checkpoint falls back to its training store, else the backbone."""
    import torch

    ckpt = parser.checkpoint
    wanted = [name for name, _ in ckpt.input_dims.text_dims]
    text: dict[str, Any] = {n: ckpt.label_text[n].float() for n in wanted if n in ckpt.label_text}
    store_path = (ckpt.config.get("data") or {}).get("store")
    missing = [n for n in wanted if n not in text]
    if missing and store_path and Path(store_path).exists():
        from avvp.data.store import Store

        with Store(store_path) as store:
            for name in missing:
                if store.has(f"text/{name}"):
                    text[name] = torch.from_numpy(np.asarray(store.read(f"text/{name}"), dtype=np.float32))
    for name in (n for n in wanted if n not in text):
        from avvp.extract.backbones import BACKBONES

        backbone = next((b for b in parser.backbones if b.name == name), None) or \
            BACKBONES.get(name)(parser.extraction.backbone_config(name))
        arrays = backbone.dataset_arrays()
        if f"text/{name}" not in arrays:
            raise ValueError(f"the model needs text/{name} label embeddings, which neither the checkpoint nor the "
                             f"{name} backbone provides")
        text[name] = torch.from_numpy(np.asarray(arrays[f"text/{name}"][0], dtype=np.float32))
    return {k: v.to(parser.device) for k, v in text.items()}


def _thumbnails(decoded: Any, start: float, duration: float, window: float) -> list[tuple[float, np.ndarray]]:
    """One small frame per segment (the middle frame of its 8-frame block), up to the video's end."""
    from PIL import Image

    frames = np.asarray(decoded.frames)
    per_segment = frames.shape[0] // NUM_SEGMENTS
    seg = window / NUM_SEGMENTS
    out = []
    for s in range(NUM_SEGMENTS):
        t = start + (s + 0.5) * seg
        if t >= duration or per_segment == 0:
            break
        image = Image.fromarray(frames[s * per_segment + per_segment // 2])
        w = max(1, round(image.width * THUMBNAIL_HEIGHT / max(image.height, 1)))
        out.append((t, np.asarray(image.resize((w, THUMBNAIL_HEIGHT), Image.BILINEAR))))
    return out


def _features_for_window(parser: Parser, video: str, start: float) -> tuple[dict[str, np.ndarray], Any] | ParseFailure:
    """Decode one window and run the backbones: the avvp-extract code path, one video."""
    from avvp.pipeline.core import decode_job
    from avvp.pipeline.jobs import VideoJob

    cfg = dataclasses.replace(parser.extraction, start=float(start))
    decoded = decode_job(VideoJob(id=video, path=video), cfg)
    return _window_features(parser, video, start, decoded)


def _window_features(parser: Parser, video: str, start: float, decoded: Any) -> tuple[dict[str, np.ndarray], Any] | ParseFailure:
    """Run the backbones on one decoded window (a checkpoint always has a visual feature, so the frames
    for the thumbnails are decoded too)."""
    from avvp.pipeline.core import StageFailure, run_backbones
    from avvp.pipeline.jobs import VideoJob

    if isinstance(decoded, StageFailure):
        return ParseFailure(video, decoded.stage, f"window at {start:g} s: {decoded.message}")
    job = VideoJob(id=video, path=video)
    (result,) = run_backbones(parser.backbones, [job], [decoded])
    if result.failures:
        f = result.failures[0]
        return ParseFailure(video, f.stage, f"window at {start:g} s: {f.message}")
    arrays: dict[str, np.ndarray] = {}
    for out in result.arrays.values():
        arrays.update(out)
    return arrays, decoded


def _predict(parser: Parser, per_window: list[dict[str, np.ndarray]], starts: list[float]) -> list[WindowPrediction]:
    """One forward over the batch of windows; probabilities clipped to [0, 1] as the trainer does."""
    import torch

    from avvp.models.base import Batch

    dims = parser.checkpoint.input_dims

    def stack(role: str) -> torch.Tensor | None:
        feature = parser.features.get(role)
        if not feature:
            return None
        arr = np.stack([w[f"features/{feature}"] for w in per_window]).astype(np.float32)
        expected = tuple(getattr(dims, role))
        if arr.shape[1:] != expected:
            raise ValueError(
                f"the checkpoint expects {role} features {expected} from features/{feature}, extraction gave "
                f"{arr.shape[1:]}; parse with the backbone options the model was trained with (avvp-info "
                f"CHECKPOINT lists them)"
            )
        return torch.from_numpy(arr).to(parser.device)

    n = len(per_window)
    batch = Batch(audio=stack("audio"), visual=stack("visual"), motion=stack("motion"),
                  weak=torch.zeros(n, len(parser.classes), device=parser.device),
                  index=torch.arange(n, device=parser.device), text=parser.text)
    with torch.no_grad():
        out = parser.model(batch)

    def np01(x: torch.Tensor | None) -> np.ndarray | None:
        return None if x is None else np.clip(x.float().cpu().numpy(), 0.0, 1.0)

    a, v, g = np01(out.audio_seg), np01(out.visual_seg), np01(out.video)
    av, vv = np01(out.audio_video), np01(out.visual_video)
    return [WindowPrediction(starts[i], a[i], v[i], g[i], None if av is None else av[i], None if vv is None else vv[i])
            for i in range(n)]


def output_stem(video: str, taken: set[str]) -> str:
    """A file stem for the video's outputs, unique within one run (clip.mp4 and other/clip.mp4 differ)."""
    stem = Path(video).stem or "video"
    candidate, i = stem, 2
    while candidate in taken:
        candidate, i = f"{stem}_{i}", i + 1
    taken.add(candidate)
    return candidate


def parse_video(parser: Parser, video: str, cfg: ParseConfig, stem: str | None = None) -> ParseOutput | ParseFailure:
    """Parse one video of any length into `cfg.out` (see the module docstring)."""
    from avvp.parse.figure import draw_figure
    from avvp.parse.html import write_html

    video = str(video)
    if not Path(video).is_file():
        return ParseFailure(video, "missing", "file not found")
    from avvp.pipeline.core import decode_windows
    from avvp.pipeline.jobs import VideoJob

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    # one probe for the whole file; window k equals decode_job at k*window (windows of window_starts)
    per_window, thumbs, first = [], [], None
    extraction = dataclasses.replace(parser.extraction, start=0.0)
    for k, decoded in enumerate(decode_windows(VideoJob(id=video, path=video), extraction)):
        got = _window_features(parser, video, k * cfg.window, decoded)
        if isinstance(got, ParseFailure):
            return got
        first = first or got
        per_window.append(got[0])
        if cfg.thumbnails:
            thumbs += _thumbnails(got[1], k * cfg.window, float(first[1].duration), cfg.window)
    duration = float(first[1].duration)
    starts = window_starts(duration, cfg.window)
    seconds["extract"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    windows = _predict(parser, per_window, starts)
    ckpt = parser.checkpoint
    gate = cfg.gate or ckpt.gate
    ex = parser.extraction
    meta = {
        "checkpoint": str(cfg.checkpoint), "model": ckpt.model_name, "preset": ckpt.preset, "epoch": ckpt.epoch,
        "features": parser.features, "backbones": list(ex.backbones),
        "backbone_options": {n: dict(o) for n, o in ex.backbone_options},
        "random_weights": parser.random_weights, "weights": ex.weights, "profile": ex.profile,
        "precision": ex.precision, "has_audio": bool(first[1].has_audio),
        "provenance": [p.to_dict() for p in ckpt.provenance],
        "feature_mismatch_accepted": list(parser.accepted),
    }
    timeline = build_timeline(windows, parser.classes, duration,
                              TimelineConfig(threshold=cfg.threshold, gate=gate, window=cfg.window),
                              video=video, meta=meta)
    seconds["model"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    out = Path(cfg.out)
    stem = stem or Path(video).stem
    json_path = timeline.write_json(out / f"{stem}.timeline.json")
    png_path = draw_figure(timeline, out / f"{stem}.png", thumbs)
    html_path = None
    if cfg.html:
        html_path = write_html(timeline, out / f"{stem}.html", video, embed_video=cfg.embed_video,
                               max_embed_bytes=cfg.max_embed_bytes)
    seconds["write"] = time.perf_counter() - t2
    return ParseOutput(video, timeline, json_path, png_path, html_path, seconds)


def parse_videos(videos: Sequence[str], cfg: ParseConfig) -> list[ParseOutput | ParseFailure]:
    """Load the checkpoint once and parse every video; failures are returned, not raised."""
    parser = load_parser(cfg)
    taken: set[str] = set()
    results: list[ParseOutput | ParseFailure] = []
    for video in videos:
        stem = output_stem(str(video), taken)
        try:
            results.append(parse_video(parser, str(video), cfg, stem))
        except (ValueError, RuntimeError, OSError) as err:  # one bad video must not stop the others
            results.append(ParseFailure(str(video), "parse", f"{type(err).__name__}: {err}"))
    return results
