"""MA (Wu & Yang, modality-aware label refinement) as three trainings: stage 1 (HAN with the
label-smoothed audio-visual contrastive term) -> stage 2 (refine the weak labels with the stage-1 model,
written to /labels/refined_*) -> stage 3 (retrain on the refined labels). `avvp-train --model ma` runs it
through the `RUNNERS` registry; the model and its losses live in `avvp.models.ma`."""
from __future__ import annotations

import numpy as np

from avvp.models.ma import MAOptions, pick_partners, refine_labels
from avvp.train.config import RUNNERS

def _stage_config(cfg, stage: int, labels: str, out: str):
    import copy

    c = copy.deepcopy(cfg)
    c.model.options = {**c.model.options, "stage": stage}
    c.data.labels = labels
    c.train.out = out
    return c


def run_stage2(cfg, stage1_dir) -> dict[str, int]:
    """Refine the train labels with the stage-1 model and write them to the store."""
    from pathlib import Path
    import json

    from avvp.data.store import StoreWriter
    from avvp.train.checkpoint import Checkpoint
    from avvp.train.data import TrainingData
    from avvp.train.loop import resolve_device

    device = resolve_device(cfg.train.device)
    model = Checkpoint.load(Path(stage1_dir) / "best.pt").build_model(device)
    c = _stage_config(cfg, 2, "weak", str(Path(cfg.train.out) / "stage2"))
    data = TrainingData(c.data, splits=("train",))
    train = data["train"]
    weak = train.targets.weak.numpy().astype(np.uint8)
    opts = options_from_cfg(cfg)
    partners = pick_partners(weak, opts.partner_seed)
    batches = [b.to(device) for b in train.batches(cfg.data.eval_batch_size)]
    refined_a, refined_v, stats = refine_labels(model, batches, weak, partners, opts.refine_ratio)
    ids = [str(v) for v in train.ids]
    attrs = {"source": "MA stage 2 (modality-aware labels)", "stage1": str(stage1_dir)}
    with StoreWriter(cfg.data.store, classes=data.classes) as writer:
        writer.set_rows("labels/refined_audio", ids, refined_a, attrs)
        writer.set_rows("labels/refined_visual", ids, refined_v, attrs)
    out = Path(c.train.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "refine.json").write_text(json.dumps(stats, indent=1))
    print(f"MA stage 2: {stats['labels']} train labels, removed {stats['removed_audio']} audio and "
          f"{stats['removed_visual']} visual", flush=True)
    return stats


def options_from_cfg(cfg) -> MAOptions:
    from avvp.models.base import options_from_mapping

    return options_from_mapping(MAOptions, cfg.model.options)


def run_ma(cfg, resume: bool = False):
    """`avvp-train --model ma`: stage 0 runs 1 → 2 → 3 (out/stage1, out/stage2, out/stage3); 1/2/3 runs one."""
    from pathlib import Path

    from avvp.train.loop import Trainer

    stage = options_from_cfg(cfg).stage
    root = Path(cfg.train.out)
    result = None
    if stage in (0, 1):
        stage1_done = (root / "stage1" / "metrics_final.json").exists()
        if not (resume and stage1_done):
            result = Trainer(_stage_config(cfg, 1, "weak", str(root / "stage1"))).fit(resume=resume)
    if stage in (0, 2):
        run_stage2(cfg, root / "stage1")
    if stage in (0, 3):
        result = Trainer(_stage_config(cfg, 3, "refined", str(root / "stage3"))).fit(resume=resume)
    return result


RUNNERS.register("ma")(run_ma)
