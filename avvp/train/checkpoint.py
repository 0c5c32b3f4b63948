"""The checkpoint: the one artifact that joins training and parsing, with one owner (this module).

A `Checkpoint` holds everything needed to rebuild and use a trained parser without the store it was
trained on: the model (name, options, input dims, state dict), the resolved experiment config, the
classes, the selection (epoch and validation metrics of the kept weights) and, per input role, how its
features were made (`FeatureProvenance`: store array, backbone, weights id, random or pretrained, the
options that change the numbers, input profile, precision, layout, and for imported arrays the release).
`avvp-parse` builds the backbones from that provenance (`extraction_plan`) and stops when what it would
run differs (`feature_differences`). Label-text embeddings a model reads (LEAP, LINK) travel inside it.

Writers and readers: the trainer (best.pt and last.pt, the same shape; last.pt adds `resume`, the
optimiser/RNG/selection state), `avvp-convert-checkpoint`, the MA recipe, `--init-from`, the demo's
standardisation fold (`fold_input_standardization`), `avvp-parse` and `avvp-info`.

File format (`save`/`load`): a torch pickle of plain containers, tensors and numbers only, read with
`torch.load(weights_only=True)` (no code runs on load):

    {"format": "avvp-checkpoint", "version": 2, "avvp_version", "model_name", "model_options", "config",
     "classes", "input_dims", "features" (role -> array name), "provenance" (list of dicts),
     "label_text" (name -> (K, D) tensor), "selection", "origin", "model" (the state dict), "resume"}

Migration of version-1 checkpoints (written before this module; no "provenance"): they still load.
A v1 file may hold numpy scalars/arrays (validation metrics, the numpy RNG state of last.pt); only those
numpy data types are allowed on top of `weights_only`. Its provenance is read from the training store
named in its config (`data.store`) when that file still exists, exactly as the trainer records it now;
otherwise each role's provenance is unknown (`FeatureProvenance.known` is False) and `avvp-parse` stops
on it unless `--accept-feature-mismatch` is given. `origin["migrated_from"]` says which rule applied.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from avvp.data.store import plain_value
from avvp.models.base import InputDims, ParsingModel

FORMAT = "avvp-checkpoint"
VERSION = 2
ROLES = ("audio", "visual", "motion")
# numpy data types a version-1 file may contain (metrics as np.float64, the numpy RNG state)
_V1_NUMPY_GLOBALS = ("numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
                     "numpy.core.multiarray.scalar")


class CheckpointError(ValueError):
    """A file that is not an avvp checkpoint, or one this version cannot read."""


# ------------------------------------------------------------------------------------------ provenance
@dataclass(frozen=True)
class FeatureProvenance:
    """How one input of the model was made, from the store attributes of its array."""

    role: str  # "audio" | "visual" | "motion" | "text"
    array: str  # store path, e.g. "features/clip"
    backbone: str | None = None
    weights: str | None = None  # weights id ("open_clip:ViT-B-32:openai", "random", "released:avvp-feats")
    random_weights: bool | None = None
    options: tuple[tuple[str, Any], ...] = ()  # the backbone options that change the numbers
    profile: str | None = None  # network-input profile (reference | clean)
    precision: str | None = None
    layout: str | None = None
    release: str | None = None  # imported arrays: the release they come from
    standardized: str | None = None  # a transform applied to the stored features (the demo's z-scores)
    known: bool = True  # False: a migrated checkpoint whose training store is gone

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = {k: v for k, v in self.options}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureProvenance":
        d = dict(d)
        d["options"] = tuple(sorted(plain_value(dict(d.get("options") or {})).items()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        """One line: what made this array."""
        if not self.known:
            return f"{self.role}: {self.array} (provenance unknown)"
        parts = [f"{self.role}: {self.array}", f"backbone {self.backbone}", f"weights {self.weights}"]
        if self.release:
            parts.append(f"release {self.release}")
        if self.random_weights:
            parts.append("RANDOM weights")
        parts += [f"profile {self.profile}", f"precision {self.precision}", f"layout {self.layout}"]
        if self.options:
            parts.append("options " + ", ".join(f"{k}={v}" for k, v in self.options))
        if self.standardized:
            parts.append(f"standardized ({self.standardized})")
        return "; ".join(parts)


def number_options(backbone: str | None, random_weights: bool) -> tuple[str, ...]:
    """The option names that change a backbone's numbers: its declared `inherited_options`, plus the seed
    of a random-weights build."""
    keys: tuple[str, ...] = ()
    if backbone:
        from avvp.extract.backbones import BACKBONES

        if backbone in BACKBONES:
            keys = tuple(BACKBONES.get(backbone).inherited_options)
    return keys + (("random_seed",) if random_weights else ())


def provenance_from_attrs(role: str, array: str, attrs: Mapping[str, Any]) -> FeatureProvenance:
    """Provenance from an array's store attributes (what `Backbone.store_attrs` or `avvp-import` wrote).
    The trainer calls it on the store it reads, `avvp-parse` on the attributes its backbones would write:
    one rule, so the two compare field by field."""
    from avvp.data.importer import release_recipe

    attrs = {k: plain_value(v) for k, v in attrs.items()}
    weights = attrs.get("weights")
    release = str(weights).split(":", 1)[1] if isinstance(weights, str) and weights.startswith("released:") else None
    backbone = attrs.get("backbone")
    random_weights = bool(attrs.get("random_weights", False))
    if release is not None:  # the release's own recipe: official weights, default options
        recipe = release_recipe(release)
        return FeatureProvenance(role, array, backbone, weights, False, (), recipe.profile, recipe.precision,
                                 attrs.get("layout"), release, attrs.get("standardized"))
    options = tuple(sorted((k, attrs[k]) for k in number_options(backbone, random_weights) if k in attrs))
    return FeatureProvenance(role, array, backbone, weights, random_weights, options, attrs.get("profile"),
                             attrs.get("precision"), attrs.get("layout"), None, attrs.get("standardized"))


def provenance_from_store(store: Any, features: Mapping[str, str | None],
                          text: Sequence[str] = ()) -> tuple[FeatureProvenance, ...]:
    """Provenance of each role's `features/<name>` and of each `text/<name>` array of an open `Store`."""
    out = []
    for role in ROLES:
        name = features.get(role)
        if name:
            path = f"features/{name}"
            out.append(provenance_from_attrs(role, path, store.attrs(path) if store.has(path) else {}))
    for name in text:
        path = f"text/{name}"
        if store.has(path):
            out.append(provenance_from_attrs("text", path, store.attrs(path)))
    return tuple(out)


# ------------------------------------------------------------------------------------------ checkpoint
@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A trained (or converted) parser and how its inputs were made. Frozen: derive with `replace`."""

    model_name: str
    model_options: Mapping[str, Any]
    config: Mapping[str, Any]  # the resolved ExperimentConfig.to_dict()
    classes: tuple[str, ...]
    input_dims: InputDims
    state_dict: Mapping[str, torch.Tensor]
    provenance: tuple[FeatureProvenance, ...] = ()
    label_text: Mapping[str, torch.Tensor] = field(default_factory=dict)
    selection: Mapping[str, Any] = field(default_factory=dict)  # epoch, val metrics, rule, metric
    origin: Mapping[str, Any] = field(default_factory=dict)  # converted_from, standardization_folded, migrated_from
    resume: Mapping[str, Any] | None = None  # last.pt: optimizer, rng, epoch, best, best_epoch
    avvp_version: str = ""
    version: int = VERSION

    # -- views
    @property
    def features(self) -> dict[str, str | None]:
        """role → feature name (the `features/<name>` array), for audio/visual/motion."""
        by_role = {p.role: p.array.split("/", 1)[1] for p in self.provenance if p.role in ROLES}
        return {role: by_role.get(role) for role in ROLES}

    def provenance_of(self, role: str) -> tuple[FeatureProvenance, ...]:
        return tuple(p for p in self.provenance if p.role == role)

    @property
    def epoch(self) -> int:
        return int(self.selection.get("epoch", 0))

    @property
    def preset(self) -> str | None:
        return self.config.get("preset")

    @property
    def gate(self) -> str:
        return (self.config.get("train") or {}).get("gate", "global")

    def replace(self, **changes: Any) -> "Checkpoint":
        return dataclasses.replace(self, **changes)

    # -- equality (tensors compared by value)
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checkpoint):
            return NotImplemented
        return _canonical(self.to_dict()) == _canonical(other.to_dict())

    __hash__ = None  # type: ignore[assignment]

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": self.version, "avvp_version": self.avvp_version,
            "model_name": self.model_name, "model_options": plain_value(dict(self.model_options)),
            "config": plain_value(dict(self.config)), "classes": list(self.classes),
            "input_dims": plain_value(dataclasses.asdict(self.input_dims)),
            "features": self.features, "provenance": [p.to_dict() for p in self.provenance],
            "label_text": {k: v.detach().cpu() for k, v in self.label_text.items()},
            "selection": plain_value(dict(self.selection)), "origin": plain_value(dict(self.origin)),
            "model": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "resume": None if self.resume is None else dict(self.resume),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Checkpoint":
        if d.get("format") != FORMAT:
            raise CheckpointError(f"not an avvp checkpoint (format {d.get('format')!r})")
        version = int(d.get("version", 1))
        if version > VERSION:
            raise CheckpointError(f"checkpoint version {version} is newer than this avvp reads ({VERSION}); upgrade avvp")
        if version < VERSION:
            return migrate_v1(d)
        return cls(
            model_name=str(d["model_name"]), model_options=dict(d["model_options"]), config=dict(d["config"]),
            classes=tuple(d["classes"]), input_dims=input_dims_from_dict(d["input_dims"]), state_dict=dict(d["model"]),
            provenance=tuple(FeatureProvenance.from_dict(p) for p in d.get("provenance", ())),
            label_text=dict(d.get("label_text") or {}), selection=dict(d.get("selection") or {}),
            origin=dict(d.get("origin") or {}), resume=d.get("resume"), avvp_version=str(d.get("avvp_version", "")),
            version=version,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a temporary name, then a rename: a kill never leaves half a checkpoint)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.to_dict(), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Checkpoint":
        return cls.from_dict(_safe_load(Path(path), device))

    # -- factories
    def build_model(self, device: str | torch.device = "cpu") -> ParsingModel:
        """The model in eval mode on `device`, holding these weights."""
        from avvp.models import build_model

        model = build_model(self.model_name, self.model_options, self.input_dims)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()

    def without_resume(self) -> "Checkpoint":
        return self.replace(resume=None)


def _canonical(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        return ("tensor", str(t.dtype), tuple(t.shape), tuple(t.flatten().tolist()))
    if isinstance(obj, Mapping):
        return tuple(sorted((str(k), _canonical(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(_canonical(v) for v in obj)
    return obj


def _safe_load(path: Path, device: str | torch.device = "cpu") -> Mapping[str, Any]:
    """torch.load with weights_only=True; a version-1 file may also hold numpy data (nothing else)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        others = [g for g in found if g not in _V1_NUMPY_GLOBALS and not g.startswith("numpy.dtypes.")]
        if others:
            raise CheckpointError(f"{path}: not an avvp checkpoint (it needs code to load: {others[:5]})") from None
        # numpy's array/scalar reconstructors and its dtype classes build data only
        allowed = [np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar]
        allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not an avvp checkpoint (a {type(obj).__name__})")
    return obj


def resume_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """What `--resume` needs from last.pt: {"model", "optimizer", "rng", "epoch", "best", "best_epoch"}.
    A version-1 last.pt was a plain dict of exactly these (no "format"); it is read as it is."""
    raw = _safe_load(Path(path), device)
    if raw.get("format") != FORMAT and {"model", "optimizer", "rng", "epoch"} <= set(raw):
        return dict(raw)
    ckpt = Checkpoint.from_dict(raw)
    if ckpt.resume is None:
        raise CheckpointError(f"{path} holds no resume state (a best.pt, not a last.pt)")
    return {**ckpt.resume, "model": dict(ckpt.state_dict)}


def input_dims_from_dict(d: Mapping[str, Any]) -> InputDims:
    return InputDims(
        audio=tuple(d["audio"]), visual=tuple(d["visual"]), motion=tuple(d["motion"]) if d.get("motion") else None,
        num_classes=int(d["num_classes"]), text_dims=tuple((str(k), int(v)) for k, v in d.get("text_dims", ())),
        # checkpoints written before layouts were recorded have none: the length rule applies
        layouts=tuple((str(k), str(v)) for k, v in d.get("layouts", ())),
    )


def migrate_v1(d: Mapping[str, Any]) -> Checkpoint:
    """A version-1 checkpoint (module docstring): provenance from the training store if it still exists."""
    config = dict(d.get("config") or {})
    features = {role: (d.get("features") or {}).get(role) for role in ROLES}
    dims = input_dims_from_dict(d["input_dims"])
    store_path = (config.get("data") or {}).get("store")
    origin = dict(d.get("converted_from") and {"converted_from": d["converted_from"]} or {})
    if d.get("standardization_folded"):
        origin["standardization_folded"] = d["standardization_folded"]
    provenance: tuple[FeatureProvenance, ...] = ()
    if store_path and Path(store_path).is_file():
        from avvp.data.store import Store

        with Store(store_path) as store:
            provenance = provenance_from_store(store, features, [n for n, _ in dims.text_dims])
        origin["migrated_from"] = f"version 1; provenance read from the training store {store_path}"
    elif d.get("converted_from"):
        provenance = released_provenance(features)
        origin["migrated_from"] = "version 1 converted checkpoint; provenance: the released features"
    else:
        provenance = tuple(FeatureProvenance(role, f"features/{name}", known=False)
                           for role, name in features.items() if name)
        origin["migrated_from"] = (f"version 1; provenance unknown (the training store {store_path} is not there)")
    if origin.get("standardization_folded"):
        provenance = tuple(dataclasses.replace(p, standardized=None) for p in provenance)
    selection = {"epoch": int(d.get("epoch") or 0), "val": plain_value(d.get("val"))}
    return Checkpoint(
        model_name=str(d["model_name"]), model_options=plain_value(dict(d["model_options"])), config=plain_value(config),
        classes=tuple(d["classes"]), input_dims=dims, state_dict=dict(d["model"]), provenance=provenance,
        selection=selection, origin=origin, avvp_version=str(d.get("avvp_version", "")), version=VERSION,
    )


def released_provenance(features: Mapping[str, str | None]) -> tuple[FeatureProvenance, ...]:
    """The provenance of the released features an official checkpoint was trained on (the importer's table:
    which release holds each `features/<name>`, and the recipe it was made with)."""
    from avvp.data.importer import released_array

    out = []
    for role in ROLES:
        name = features.get(role)
        if not name:
            continue
        spec = released_array(f"features/{name}")
        attrs = {"backbone": spec.backbone, "weights": f"released:{spec.release}", "layout": spec.layout} if spec \
            else {}
        out.append(provenance_from_attrs(role, f"features/{name}", attrs) if spec
                   else FeatureProvenance(role, f"features/{name}", known=False))
    return tuple(out)


# --------------------------------------------------------------------------------------- model-side helpers
def load_weights_into(model: ParsingModel, model_name: str, path: str | os.PathLike) -> Checkpoint:
    """Fine-tuning start (`--init-from`): copy a checkpoint's weights into `model`; the model name, every key
    and every shape must agree. Returns the source checkpoint."""
    try:
        ckpt = Checkpoint.load(path)
    except CheckpointError as err:
        raise ValueError(f"--init-from {path}: {err}; convert an official checkpoint with avvp-convert-checkpoint "
                         "first") from None
    if ckpt.model_name != model_name:
        raise ValueError(f"--init-from {path}: a {ckpt.model_name!r} checkpoint cannot initialise a {model_name!r} model")
    theirs, ours = ckpt.state_dict, model.state_dict()
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    misshaped = sorted(f"{k} {tuple(theirs[k].shape)} vs {tuple(ours[k].shape)}" for k in set(ours) & set(theirs)
                       if tuple(theirs[k].shape) != tuple(ours[k].shape))
    if missing or unexpected or misshaped:
        raise ValueError(f"--init-from {path} does not fit the configured model (are the features/options the "
                         f"checkpoint's?): missing {missing[:10]}, unexpected {unexpected[:10]}, mis-shaped {misshaped[:10]}")
    model.load_state_dict(dict(theirs))
    return ckpt


def fold_input_standardization(ckpt: Checkpoint, stats: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Checkpoint:
    """A checkpoint trained on per-dimension z-scores (x - μ)/σ of some roles' features, turned into one that
    reads the raw features: the model's input layer of each role absorbs the transform
    (`ParsingModel.fold_input_standardization`). The provenance no longer says "standardized"; the
    statistics are kept in `origin["standardization_folded"]`."""
    model = ckpt.build_model("cpu")
    model.fold_input_standardization(stats)
    provenance = tuple(dataclasses.replace(p, standardized=None) if p.role in stats else p for p in ckpt.provenance)
    origin = {**ckpt.origin, "standardization_folded": {
        role: {"mean": np.asarray(m, np.float64).tolist(), "std": np.asarray(s, np.float64).tolist()}
        for role, (m, s) in stats.items()}}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return ckpt.replace(state_dict=state, provenance=provenance, origin=origin, resume=None)


# --------------------------------------------------------------------------------------- parse-side factory
@dataclass(frozen=True)
class FeaturePlan:
    """What a parse runs to recompute a checkpoint's features: one extraction setting for all backbones."""

    backbones: tuple[str, ...]
    weights: str  # "pretrained" | "random"
    profile: str
    precision: str
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]  # per backbone, sorted


def extraction_plan(ckpt: Checkpoint, *, weights: str | None = None, profile: str | None = None,
                    precision: str | None = None,
                    backbone_options: Sequence[tuple[str, Sequence[tuple[str, Any]]]] = ()) -> FeaturePlan:
    """The backbones, weights mode, profile, precision and options that reproduce the checkpoint's
    audio/visual/motion features; explicit arguments win (and are then compared by `feature_differences`)."""
    from avvp.extract.backbones import backbone_of_output

    provs = [p for p in ckpt.provenance if p.role in ROLES]
    names = tuple(dict.fromkeys(p.backbone or backbone_of_output(p.array) for p in provs))

    def one(values: Sequence[Any], default: Any) -> Any:
        values = [v for v in values if v is not None]
        return values[0] if values else default

    options: dict[str, dict[str, Any]] = {}
    for p in provs:
        name = p.backbone or backbone_of_output(p.array)
        options.setdefault(name, {}).update(dict(p.options))
    for name, opts in backbone_options:
        options.setdefault(name, {}).update(dict(opts))
    known = [p for p in provs if p.known]
    return FeaturePlan(
        backbones=names,
        weights=weights or ("random" if any(p.random_weights for p in known) else "pretrained"),
        profile=profile or one([p.profile for p in known], "reference"),
        precision=precision or one([p.precision for p in known], "fp32"),
        options=tuple((n, tuple(sorted(o.items()))) for n, o in sorted(options.items()) if n in names and o),
    )


def feature_differences(ckpt: Checkpoint, backbones: Sequence[Any]) -> list[str]:
    """Each way the features the built `backbones` would compute differ from the ones the model was trained
    on (weights id, random vs pretrained, profile, an option, precision, a stored transform), as short
    phrases; empty when they are made the same way."""
    by_output = {}
    for b in backbones:
        for spec in b.outputs():
            by_output[spec.path] = (b, spec)
    diffs: list[str] = []
    for p in (q for q in ckpt.provenance if q.role in ROLES):
        where = f"{p.role} ({p.array})"
        if not p.known:
            diffs.append(f"{where}: how the training features were made is unknown (a version-1 checkpoint whose "
                         "training store is gone)")
            continue
        if p.standardized:
            diffs.append(f"{where}: the model was trained on transformed features ({p.standardized}), parse "
                         "computes raw ones (fold the transform into the checkpoint)")
        if p.array not in by_output:
            diffs.append(f"{where}: no backbone of this parse writes it")
            continue
        backbone, spec = by_output[p.array]
        run = provenance_from_attrs(p.role, p.array, backbone.store_attrs(spec))
        if p.release is not None:  # the release's recipe: pretrained official weights, default options
            if run.random_weights:
                diffs.append(f"{where}: weights random, trained on the {p.release} release (pretrained)")
            defaults = type(backbone).parse_options(None)
            for key in number_options(backbone.name, False):
                ours, theirs = getattr(backbone.options, key, None), getattr(defaults, key, None)
                if ours != theirs:
                    diffs.append(f"{where}: option {backbone.name}.{key}={ours!r}, the {p.release} release used {theirs!r}")
        else:
            if bool(run.random_weights) != bool(p.random_weights):
                diffs.append(f"{where}: weights {'random' if run.random_weights else 'pretrained'}, trained on "
                             f"{'random' if p.random_weights else 'pretrained'} ({p.weights})")
            elif run.weights != p.weights:
                diffs.append(f"{where}: weights {run.weights!r}, trained on {p.weights!r}")
            ours, theirs = dict(run.options), dict(p.options)
            for key in sorted(set(ours) | set(theirs)):
                if ours.get(key) != theirs.get(key):
                    trained = repr(theirs[key]) if key in theirs else "(not recorded)"
                    diffs.append(f"{where}: option {backbone.name}.{key}={ours.get(key)!r}, trained with {trained}")
        if run.profile != p.profile:
            diffs.append(f"{where}: profile {run.profile!r}, trained on {p.profile!r}")
        if (run.precision or "fp32") != (p.precision or "fp32"):
            diffs.append(f"{where}: precision {run.precision!r}, trained on {p.precision!r}")
    return diffs


__all__ = ["Checkpoint", "CheckpointError", "FeaturePlan", "FeatureProvenance", "extraction_plan",
           "feature_differences", "fold_input_standardization", "input_dims_from_dict", "load_weights_into",
           "provenance_from_attrs", "provenance_from_store", "released_provenance", "resume_state"]
