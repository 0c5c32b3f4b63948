"""Typed training configuration, named paper presets and command-line overrides.

An `ExperimentConfig` = DataConfig + ModelConfig + OptimConfig + TrainConfig. A preset is a function
returning a full ExperimentConfig with a paper's settings (reference-methods §1d, §2, §3); presets live
in the `PRESETS` registry and are all defined in `avvp.train.presets`. The command line
starts from a preset, then applies `--set section.key=value` overrides (values parsed as YAML:
`--set optim.betas=[0.5,0.999]`, `--set model.options.layers=2`, `--set data.motion=null`). The
resolved config is written to `<out>/config.yaml` and reloaded with `load_config`.

Model selection (`train.select`): ">=" keeps the latest epoch among ties of val segment-level Type@AV
(official HAN, MM-Pyramid, LEAP), ">" keeps the earliest (VALOR, MM-CSE), "last" keeps the final epoch
(MA stages 1 and 3 save the last model, no validation selection). Test numbers are never used.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from avvp.registry import Registry

SELECTION_RULES = (">=", ">", "last")


@dataclass
class DataConfig:
    store: str = ""
    audio: str = "vggish"  # /features/<audio>
    visual: str = "resnet152"  # /features/<visual>
    motion: str | None = "r2plus1d"  # /features/<motion>, or None for no 3D stream
    labels: str = "weak"  # weak | pseudo (/pseudo/*) | refined (/labels/refined_*)
    # read batches from the HDF5 file (true) or load the features into memory (false); null = auto: memory
    # unless the features would not fit in the memory available (avvp.train.data.choose_reader); the
    # resolved choice is what the run's config.yaml records
    mmap: bool | None = None
    annotations: str = "2024"  # LLP eval CSV version when the store has no /gt (real LLP stores)
    eval_batch_size: int = 256  # inference only; does not change results


@dataclass
class ModelConfig:
    name: str = "han"
    options: dict[str, Any] = field(default_factory=dict)  # the model's Options dataclass fields


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | adamw
    lr: float = 3e-4  # lr_max for warmup_cosine
    lr_min: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "steplr"  # steplr | warmup_cosine | constant
    step: int = 10
    gamma: float = 0.1
    warmup: int = 10
    grad_clip: float | None = None  # max total grad norm
    epochs: int = 40
    batch_size: int = 16


@dataclass
class TrainConfig:
    seed: int = 1
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str = ""
    gate: str = "global"  # video-level gate of the metric: global | modality | ...
    select: str = ">="  # see module docstring
    threads: int = 0  # torch intra-op threads; 0 = torch default
    progress: bool = True  # tqdm bar per epoch
    init_from: str = ""  # avvp checkpoint (trained or converted) whose weights initialise the model (fine-tuning)
    logger: str = "none"  # per-epoch logger beside metrics.jsonl and curves.png: none | tensorboard


@dataclass
class ExperimentConfig:
    preset: str = "han"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Check every name and option that can be checked without data, so that a typo fails before any
        store is opened: label kind, model, model options, selection rule, logger, optimiser sizes."""
        from avvp.models import MODELS
        from avvp.models.base import options_from_mapping
        from avvp.train.labels import LABEL_KINDS

        if self.data.mmap == "auto":
            self.data.mmap = None
        if self.data.mmap not in (None, True, False):
            raise ValueError(f"data.mmap must be true, false or null (auto), got {self.data.mmap!r}")
        if self.data.labels not in LABEL_KINDS:
            raise ValueError(f"data.labels must be one of {LABEL_KINDS.names()}, got {self.data.labels!r}")
        if self.model.name not in MODELS:
            raise ValueError(f"unknown model {self.model.name!r}; known: {', '.join(MODELS.names())}")
        options_from_mapping(MODELS.get(self.model.name).Options, self.model.options)  # unknown keys, bad values
        if self.train.select not in SELECTION_RULES:
            raise ValueError(f"train.select must be one of {SELECTION_RULES}, got {self.train.select!r}")
        from avvp.train.curves import LOGGERS, tensorboard_writer_class

        if self.train.logger not in LOGGERS:
            raise ValueError(f"train.logger must be one of {LOGGERS.names()}, got {self.train.logger!r}")
        if self.train.logger == "tensorboard":
            tensorboard_writer_class()  # fails now, before any data is read, when tensorboard is missing
        if self.optim.epochs < 1 or self.optim.batch_size < 1:
            raise ValueError("optim.epochs and optim.batch_size must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        unknown = set(d) - {"preset", "data", "model", "optim", "train"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}")
        sections = {}
        for name, sub in (("data", DataConfig), ("model", ModelConfig), ("optim", OptimConfig), ("train", TrainConfig)):
            values = dict(d.get(name) or {})
            known = {f.name for f in dataclasses.fields(sub)}
            bad = set(values) - known
            if bad:
                raise ValueError(f"unknown {name} keys {sorted(bad)}; known: {sorted(known)}")
            if name == "optim" and "betas" in values:
                values["betas"] = tuple(float(b) for b in values["betas"])
            sections[name] = sub(**values)
        return cls(preset=str(d.get("preset", "")), **sections)


# --------------------------------------------------------------------------------------- overrides
def _coerce(current: Any, value: Any, key: str) -> Any:
    """Give a parsed YAML value the type of the field it replaces (1 → 1.0 for floats, list → tuple)."""
    if value is None:
        return value
    if current is None:  # optional fields (grad_clip, motion): numbers from "1e-4"-style strings too
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} expects true/false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            raise ValueError(f"{key} expects a number, got {value!r}") from None
    if isinstance(current, tuple):
        return tuple(_coerce(c, v, key) for c, v in zip(current, value)) if len(value) == len(current) else tuple(value)
    if isinstance(current, int) and isinstance(value, int):
        return value
    if isinstance(current, str):
        return str(value)
    if not isinstance(value, type(current)):
        raise ValueError(f"{key} expects {type(current).__name__}, got {value!r}")
    return value


def apply_override(cfg: ExperimentConfig, assignment: str) -> ExperimentConfig:
    """Return a copy of `cfg` with `section.key=value` (or `model.options.key=value`) applied."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} must look like section.key=value")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    parts = key.strip().split(".")
    cfg = copy.deepcopy(cfg)
    if parts[:2] == ["model", "options"] and len(parts) == 3:
        cfg.model.options[parts[2]] = value
        return cfg
    if len(parts) != 2 or parts[0] not in ("data", "model", "optim", "train"):
        raise ValueError(f"unknown config key {key!r}; use data.X, model.X, model.options.X, optim.X or train.X")
    section = getattr(cfg, parts[0])
    names = {f.name for f in dataclasses.fields(section)}
    if parts[1] not in names:
        raise ValueError(f"unknown key {key!r}; {parts[0]} has {sorted(names)}")
    if parts[1] == "options":
        if not isinstance(value, dict):
            raise ValueError("model.options expects a mapping")
        section.options = dict(value)
    else:
        setattr(section, parts[1], _coerce(getattr(section, parts[1]), value, key))
    return cfg


def dump_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def load_config(path: str | Path) -> ExperimentConfig:
    return ExperimentConfig.from_dict(yaml.safe_load(Path(path).read_text()))


# ----------------------------------------------------------------------------------------- presets
PresetFn = Callable[[], ExperimentConfig]
PRESETS: Registry[PresetFn] = Registry("preset", providers=("avvp.train.presets",))
"""name -> function returning the paper's ExperimentConfig."""

# Runs that are more than one training (MA's three stages): model name -> fn(cfg, store_path) -> int
RUNNERS: Registry[Callable[..., Any]] = Registry("multi-stage runner", providers=("avvp.train.recipes",))


def preset(name: str) -> ExperimentConfig:
    return PRESETS.get(name)()
