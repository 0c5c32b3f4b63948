"""Training: typed configs (`config`), the paper presets (`presets`), multi-stage recipes (`recipes`), store-backed data (`data`), targets (`labels`),
the trainer loop (`loop`). `train(cfg, resume=False)` runs a preset end to end (multi-stage methods such as
MA through their registered runner)."""
from __future__ import annotations

from avvp.train.config import PRESETS, RUNNERS, ExperimentConfig, apply_override, load_config, preset


def train(cfg: ExperimentConfig, resume: bool = False):
    """Run one experiment; returns the FitResult of its final stage."""
    from avvp.train.loop import Trainer

    if cfg.model.name in RUNNERS:
        return RUNNERS.get(cfg.model.name)(cfg, resume)
    return Trainer(cfg).fit(resume=resume)


__all__ = ["PRESETS", "RUNNERS", "ExperimentConfig", "apply_override", "load_config", "preset", "train"]
