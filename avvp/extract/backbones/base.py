"""The backbone contract shared by every feature extractor.

A backbone turns decoded videos into named arrays whose names are store paths:

    {"features/clip": (10, 768) float32, "zeroshot/clip": (10, 25) float32}

plus, once per dataset, label-text arrays such as {"text/clip": (25, 768)}. Each backbone lives in its
own file under `avvp/extract/backbones/` and registers itself in `BACKBONES`; adding one is a file and a
`@BACKBONES.register(...)` line (the package imports all its modules).

What a backbone is, is declared on its class, readable without building a network or finding weights:
`Options` (a frozen dataclass of its options), `OUTPUTS` (store path, per-video shape and layout of each
array; `declared_outputs(options)` when a shape depends on the options), `needs_*` (the decoded streams
it reads). `Backbone.__init__` does the set-up every backbone shares (weights mode, options, device,
random-weights notice or weights lookup) and `load_model()` the seeded build + load + placement, through
small hooks a backbone fills in (`configure`, `resolve_weights`, `build_network`, `load_weights`,
`finish_network`).

Weights carry their own preprocessing and metadata (torchvision-style): a `WeightsSpec` says where the
pretrained weights come from, which file name is expected under `--weights-dir`, and the preprocessing
constants; the array attributes written to the store come from it.
"""
from __future__ import annotations

import abc
import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable, Mapping, Protocol, Sequence

import numpy as np

from avvp.data.layouts import check_layout
from avvp.extract.backbones.config import BackboneConfig
from avvp.extract.backbones.weights import (
    InputRecipe,
    ResolvedWeights,
    WeightsSpec,
    WeightsUnavailable,
    announce_random_weights,
    check_weights_mode,
    load_state_dict_file,
    require_network,
    resolve_weights_file,
    seeded_init,
    torch_device,
)
from avvp.registry import Registry

__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "BackboneOptions", "OutputSpec", "VideoInput",
           "WeightsUnavailable", "options_from_pairs"]


class VideoInput(Protocol):
    """What a backbone reads from a decoded video (see avvp.extract.decode.DecodedVideo).

    Optional attributes: `profile` (the input profile the decoder used; a backbone refuses a video of
    another profile) and `segment_frames` ((10, H, W, 3), VALOR's CLIP frames over all N fps frames)."""

    frames: np.ndarray  # (80, H, W, 3) uint8 RGB, the reference 8 fps selection
    audio_16k: np.ndarray  # (n,) float32 mono: window*16000 (clean) | moviepy's int(16000*duration) (reference)
    audio_48k: np.ndarray  # (n,) float32 mono: window*48000 (clean) | librosa.load's whole stream (reference)
    has_audio: bool


@dataclass(frozen=True)
class OutputSpec:
    """One array a backbone produces per video: its store path, shape, layout and storage attributes."""

    path: str  # e.g. "features/clip" or "zeroshot/clip"
    shape: tuple[int, ...]  # per-video shape, e.g. (10, 768)
    layout: str  # what the first axis is: "frames" | "segments" | "tokens" (avvp.data.layouts)
    axes: str = ""  # human-readable axis description, e.g. "segment x dim" (stored as the `axes` attribute)
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)  # fps / sample_rate and the like

    def __post_init__(self) -> None:
        check_layout(self.layout, self.path)


def option_field(default: Any, help: str) -> Any:
    """A backbone option: its default and the one-line description shown in errors and --help."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class BackboneOptions:
    """Options every backbone has. A backbone's `Options` subclasses this (frozen, defaults for all);
    value checks that need no other context go in its `__post_init__` (raising ValueError)."""

    random_seed: int = option_field(0, "seed of the random init with --weights random (default 0)")


TRUE_WORDS, FALSE_WORDS, NONE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off"), ("none", "null")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the option's declared type. Command-line strings are parsed ("false" is False, "none"
    is None where allowed); values given in code are converted as the backbones always did (int(),
    bool(), str())."""
    args = typing.get_args(hint)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)] or [hint]
    kind = kinds[0]
    if value is None or (optional and isinstance(value, str) and value.lower() in NONE_WORDS):
        if optional:
            return None
        raise ValueError(f"{where}: a value is required")
    if kind is bool and isinstance(value, str):
        word = value.lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    try:
        return kind(value) if kind in (int, float, bool, str) else value
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}") from None


def describe_options(options_cls: type) -> str:
    """"name: help; name: help" for every option of `options_cls`, sorted (used in error messages)."""
    return "; ".join(f"{f.name}: {f.metadata.get('help', '')}" for f in sorted(fields(options_cls), key=lambda f: f.name))


def options_from_pairs(options_cls: type, given: Any, backbone: str) -> Any:
    """Build `options_cls` from (name, value) pairs, a mapping or an instance; unknown names raise a
    ValueError that lists the valid ones (a typo must not silently use a default)."""
    if isinstance(given, options_cls):
        return given
    values = dict(given or ())
    known = {f.name for f in fields(options_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{backbone}: unknown option(s) {unknown}; known options: {describe_options(options_cls)}")
    hints = typing.get_type_hints(options_cls)
    typed = {k: _coerce(v, hints[k], f"{backbone}: option {k}") for k, v in values.items()}
    try:
        return options_cls(**typed)
    except ValueError as err:  # a value check of the Options' __post_init__
        raise ValueError(f"{backbone}: {err}") from None


class Backbone(abc.ABC):
    """Base class. A subclass sets the class-level declarations (`name`, `Options`, `OUTPUTS`, `needs_*`,
    `weights_spec`, `recipes`), implements `extract_batch()`, `network_inputs()` and `build_network()`,
    optionally the other hooks, and registers with `@BACKBONES.register(name)`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = BackboneOptions
    # the per-video arrays, as declared for the default options (see declared_outputs)
    OUTPUTS: ClassVar[tuple[OutputSpec, ...]] = ()
    # which decoded streams the backbone reads; the executors decode only what is needed
    needs_frames: ClassVar[bool] = False
    needs_audio_16k: ClassVar[bool] = False
    needs_audio_48k: ClassVar[bool] = False
    # options that change the numbers and that the backbone records as attributes of its arrays: the trainer
    # carries them into the checkpoint's feature provenance, from which a parse rebuilds the backbone
    # (avvp.train.checkpoint)
    inherited_options: ClassVar[tuple[str, ...]] = ()
    weights_spec: ClassVar[WeightsSpec | None] = None  # what resolve_weights looks for by default
    recipes: ClassVar[Mapping[str, InputRecipe]] = {}  # profile -> how the network inputs are made

    def __init__(self, config: BackboneConfig):
        self.config = config
        check_weights_mode(config)
        self.options = self.parse_options(config.options)
        self.configure()
        self.device = torch_device(config)
        # Weights are resolved now (a missing file fails at construction, before any decoding);
        # the network itself is built on first use (load_model).
        self.resolved: ResolvedWeights | None = None
        if self.random_weights:
            self.announce_random_weights()
        elif not self.inputs_only:
            self.resolved = self.resolve_weights()
        self._model = None

    # -- declarations (class level: no network, no weights) -----------------------------------

    @classmethod
    def parse_options(cls, options: Any = None) -> Any:
        """The typed `Options` from (name, value) pairs, a mapping or an instance (None: defaults)."""
        return options_from_pairs(cls.Options, options, cls.name)

    @classmethod
    def declared_outputs(cls, options: Any = None) -> tuple[OutputSpec, ...]:
        """The per-video arrays a backbone built with `options` writes (path, shape, layout; no attrs).
        The default is `OUTPUTS`; a backbone whose shapes depend on its options overrides this."""
        cls.parse_options(options)
        return cls.OUTPUTS

    @classmethod
    def streams(cls) -> tuple[str, ...]:
        """The decoded streams the backbone reads, by `DecodedVideo` attribute name."""
        flags = (("frames", cls.needs_frames), ("audio_16k", cls.needs_audio_16k), ("audio_48k", cls.needs_audio_48k))
        return tuple(stream for stream, needed in flags if needed)

    # -- set-up hooks ----------------------------------------------------------------------------

    def configure(self) -> None:
        """Derive what the options and the config imply (no weights read); raise ValueError for a
        combination the backbone cannot run. Called once, before the weights are looked up."""
        return None

    def resolve_weights(self) -> ResolvedWeights:
        """Find the pretrained weights file (WeightsUnavailable when it is not there)."""
        return resolve_weights_file(self.weights_spec, self.config.weights_dir)

    def announce_random_weights(self) -> None:
        """The stderr notice of a random-weights build."""
        announce_random_weights(self.name)

    @abc.abstractmethod
    def build_network(self) -> Any:
        """The network before any weights are loaded (called under the seeded random init)."""

    def load_weights(self, model: Any, path: Any) -> Any:
        """`model` with the weights of the resolved file `path` (strict: every key must match)."""
        model.load_state_dict(load_state_dict_file(path), strict=True)
        return model

    def finish_network(self, model: Any) -> Any:
        """Changes after loading (e.g. fc = identity, memory format); the default changes nothing."""
        return model

    def load_model(self):
        """The eval-mode network on `self.device`: built (seeded), loaded, finished — once, on first call."""
        if self._model is None:
            require_network(self)
            with seeded_init(self.options.random_seed):
                model = self.build_network()
            if self.resolved is not None:
                model = self.load_weights(model, self.resolved.path)
            model = self.finish_network(model)
            self._model = self.place_network(model)
        return self._model

    def place_network(self, model: Any) -> Any:
        """Eval mode, no gradients, on the backbone's device."""
        return model.eval().requires_grad_(False).to(self.device)

    # -- state -----------------------------------------------------------------------------------

    @property
    def random_weights(self) -> bool:
        return self.config.weights == "random"

    @property
    def inputs_only(self) -> bool:
        """weights == "none": built for `network_inputs` only; no weights are looked up, no network runs."""
        return self.config.weights == "none"

    @property
    def profile(self) -> str:
        return self.config.profile

    def check_profiles(self, videos: Sequence[Any]) -> None:
        """`check_profile` for every video of a batch (before any work on it)."""
        for video in videos:
            self.check_profile(video)

    def check_profile(self, video: Any) -> None:
        """A decoded video must come from the profile this backbone prepares inputs for."""
        got = getattr(video, "profile", None)
        if got is not None and got != self.profile:
            raise ValueError(f"{self.name}: the video was decoded with profile {got!r}, the backbone is built for "
                             f"{self.profile!r}; decode and extract with the same profile")

    # -- the contract ----------------------------------------------------------------------------

    @abc.abstractmethod
    def network_inputs(self, video: VideoInput) -> dict[str, np.ndarray]:
        """The exact arrays the network receives for one video (float32, before any device transfer),
        computed by the same functions `extract_batch` uses. Keys are documented in docs/backbones.md.
        Part of the contract: a backbone that cannot show its inputs cannot be checked against the reference."""

    def input_recipe(self) -> str:
        """One line naming what the active profile reproduces (stored as the `input_recipe` attribute)."""
        recipe = (self.recipes or {}).get(self.profile)
        return recipe.describe() if recipe is not None else ""

    def output_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        """Backbone-specific attributes of one declared output (fps, sample_rate, preprocessing...)."""
        return {}

    def outputs(self) -> list[OutputSpec]:
        """The per-video arrays this backbone writes: its declarations, with their own attributes."""
        return [dataclasses.replace(spec, attrs=dict(self.output_attrs(spec))) for spec in self.declared_outputs(self.options)]

    @abc.abstractmethod
    def extract_batch(self, videos: Sequence[VideoInput]) -> list[dict[str, np.ndarray]]:
        """One dict {store path: array} per input video, in input order."""

    def dataset_arrays(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """Arrays stored once per dataset (e.g. "text/clip"), with their attributes."""
        return {}

    def weights_id(self) -> str:
        """A short string naming the weights, stored as the `weights` attribute: the resolved weights
        file's id, else "random" (or the backbone's name when built for its inputs only)."""
        if self.resolved is not None:
            return self.resolved.weights_id
        return "random" if self.random_weights else self.name

    def provenance_attrs(self) -> dict[str, Any]:
        """How this backbone's arrays were made, carried by every array it writes (per video or per dataset):
        backbone, weights id, random_weights (with the seed of a random build), precision, avvp version."""
        from avvp import __version__

        seed = {"random_seed": self.options.random_seed} if self.random_weights else {}
        return {"backbone": self.name, "weights": self.weights_id(), "random_weights": bool(self.random_weights),
                **seed, "precision": self.config.precision, "avvp_version": __version__}

    def store_attrs(self, spec: OutputSpec) -> dict[str, Any]:
        """Attributes written with each per-video output array in the store."""
        return {**self.provenance_attrs(), "layout": spec.layout, "axes": spec.axes, "profile": self.profile,
                "input_recipe": self.input_recipe(), **spec.attrs}

    def text_array_attrs(self, **own: Any) -> dict[str, Any]:
        """Attributes of a label-text array (dataset-level, one row per class): the provenance every array
        carries, then the backbone's `own` (texts, logit_scale, ...; `own` wins, e.g. CLIP's text tower
        always runs in fp32)."""
        return {**self.provenance_attrs(), "layout": "class x dim", **own}


BACKBONES: Registry[type[Backbone]] = Registry("backbone", providers=("avvp.extract.backbones",))


def rows_per_video(rows: np.ndarray, videos: int) -> list[np.ndarray]:
    """A batch's stacked outputs (the videos' equal row blocks, in order) as one contiguous array per video."""
    return [np.ascontiguousarray(part) for part in np.split(rows, videos)] if videos else []


def backbone_of_output(path: str) -> str:
    """The registered backbone that declares the store path `path` (e.g. "features/clap_tokens" -> "clap");
    KeyError naming the declared paths when none does."""
    owners = [name for name in BACKBONES.names() if any(s.path == path for s in BACKBONES.get(name).OUTPUTS)]
    if not owners:
        declared = sorted(s.path for name in BACKBONES.names() for s in BACKBONES.get(name).OUTPUTS)
        raise KeyError(f"no backbone declares {path!r}; declared: {', '.join(declared)}")
    return owners[0]


def modality_of(backbone: type[Backbone]) -> str:
    """"visual" for a backbone that reads frames, else "audio"."""
    return "visual" if backbone.needs_frames else "audio"


def feature_specs(features: Iterable[str], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{feature name: avvp.data.layouts.FeatureSpec} of store features `features/<name>`, from the
    declarations of the backbones that write them; `options` maps a backbone name to its options
    (pairs, mapping or Options) where a shape depends on them (e.g. the CLIP model's width)."""
    from avvp.data.layouts import FeatureSpec

    options = dict(options or {})
    specs = {}
    for feature in features:
        path = f"features/{feature}"
        name = backbone_of_output(path)
        backbone = BACKBONES.get(name)
        (spec,) = [s for s in backbone.declared_outputs(options.get(name)) if s.path == path]
        specs[feature] = FeatureSpec(modality_of(backbone), tuple(spec.shape), spec.layout)
    return specs


def parse_option_assignment(text: str) -> tuple[str, str, str]:
    """"clip.model=ViT-B-32" -> ("clip", "model", "ViT-B-32"); ValueError naming the valid backbones or
    options when either is unknown."""
    target, sep, value = text.partition("=")
    backbone, dot, key = target.strip().partition(".")
    if not sep or not dot or not backbone or not key:
        raise ValueError(f"backbone option {text!r} must look like BACKBONE.OPTION=VALUE, e.g. clip.model=ViT-B-32")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone option {text!r}: unknown backbone {backbone!r}; known: {', '.join(BACKBONES.names())}")
    known = sorted(f.name for f in fields(BACKBONES.get(backbone).Options))
    if key not in known:
        raise ValueError(f"backbone option {text!r}: {backbone} has no option {key!r}; known: {', '.join(known)}")
    return backbone, key, value


def backbone_options(assignments: Iterable[tuple[str, str, Any]]) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    """(backbone, option, value) triples -> the `backbone_options` of an ExtractionConfig / ParseConfig:
    ((backbone, ((option, typed value), ...)), ...), sorted. Each backbone's values are checked by its
    typed Options (ValueError for a bad value); a later assignment of the same option wins."""
    grouped: dict[str, dict[str, Any]] = {}
    for backbone, key, value in assignments:
        grouped.setdefault(backbone, {})[key] = value
    result = []
    for backbone, values in sorted(grouped.items()):
        typed = BACKBONES.get(backbone).parse_options(values)
        result.append((backbone, tuple((k, getattr(typed, k)) for k in sorted(values))))
    return tuple(result)
