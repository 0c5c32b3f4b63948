"""The pseudo-label stage as a library call: `run_pseudolabels(PseudoLabelRunConfig(...))`.

Steps, in this order (so test ground truth is read only after thresholds are fixed):
1. per modality, the label source: the VALOR rule on /zeroshot/{clip,clap}, or labels already in the store
   (imported VALOR release labels are never overwritten; then only EIoU is computed);
2. calibration (optional): per-class threshold search on val labels only; then the gain on val and test;
3. write /pseudo/{audio,visual} (computed ones) and /pseudo/eiou (upsert: re-running replaces rows);
   `write_thresholds` uses the calibrated thresholds and writes them to `<store>.valor_thresholds.json`;
4. report (optional): official metric of the pseudo-labels on val and test, per-class table, PNG charts.

`avvp-pseudolabel` (avvp/cli/pseudolabel.py) only maps its arguments onto `PseudoLabelRunConfig`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from avvp.data.store import Store
from avvp.pseudolabels.calibrate import (
    Calibration,
    CalibrationConfig,
    GroundTruthSource,
    calibrate,
    ground_truth_source,
)
from avvp.pseudolabels.eiou import EIOU_DEFINITIONS, EIOU_DESCRIPTIONS, compute_eiou
from avvp.pseudolabels.report import (
    SplitQuality,
    format_class_table,
    format_quality,
    pseudo_label_quality,
    write_class_chart,
)
from avvp.pseudolabels.valor import (
    MODALITIES,
    TEACHERS,
    PseudoLabelError,
    TeacherLabels,
    ThresholdSet,
    default_thresholds,
    label_source,
    parse_thresholds,
    stored_labels,
    teacher_labels,
    write_pseudo_labels,
)

REPORT_SPLITS = ("val", "test")
DEFAULT_EIOU = "leap-code"  # what the released LEAP model was trained with (reference-exact)


@dataclass(frozen=True)
class PseudoLabelRunConfig:
    data: Path
    eiou: str = DEFAULT_EIOU
    calibrate_split: str | None = None
    write_thresholds: bool = False
    clip_thresholds: str | None = None
    clap_thresholds: str | None = None
    report: bool = False
    report_dir: Path | None = None
    annotations: str = "2024"
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    @property
    def thresholds_json(self) -> Path:
        return self.data.with_name(self.data.stem + ".valor_thresholds.json")

    @property
    def resolved_report_dir(self) -> Path:
        return self.report_dir or self.data.with_name(self.data.stem + "_pseudolabel_report")


@dataclass
class PseudoLabelRun:
    """What a run did, for callers and tests."""

    sources: dict[str, str]
    thresholds: dict[str, ThresholdSet]
    computed: dict[str, TeacherLabels]
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    gains: dict[str, tuple[SplitQuality, SplitQuality]] = field(default_factory=dict)  # split -> (before, after)
    quality: dict[str, SplitQuality] = field(default_factory=dict)
    charts: list[Path] = field(default_factory=list)
    thresholds_file: Path | None = None


def _threshold_spec(cfg: PseudoLabelRunConfig, modality: str) -> str | None:
    return {"visual": cfg.clip_thresholds, "audio": cfg.clap_thresholds}[modality]


def _labels_with(store: Store, thresholds: dict[str, ThresholdSet]) -> dict[str, np.ndarray]:
    return {m: teacher_labels(store, TEACHERS.get(m), thresholds[m]).labels for m in MODALITIES}


def _quality_on(store: Store, labels: dict[str, np.ndarray], weak: np.ndarray, gt) -> SplitQuality:
    rows = store.index(gt.ids)
    return pseudo_label_quality(labels["audio"][rows], labels["visual"][rows], weak[rows], gt, store.classes)


def run_pseudolabels(
    cfg: PseudoLabelRunConfig,
    gt_source: GroundTruthSource | None = None,
    echo: Callable[[str], None] = print,
) -> PseudoLabelRun:
    if cfg.write_thresholds and cfg.calibrate_split is None:
        raise PseudoLabelError("--write-thresholds writes calibrated thresholds: it needs --calibrate val")
    EIOU_DEFINITIONS.get(cfg.eiou)  # unknown definition → KeyError listing the known ones, before any work
    gt_source = gt_source or ground_truth_source(cfg.data, cfg.annotations)

    # 1. sources and starting thresholds
    with Store(cfg.data) as store:
        classes = tuple(store.classes)
        ids = store.ids
        splits_present = set(store.video_field("split").tolist()) if len(store) else set()
        sources = {m: label_source(store, TEACHERS.get(m)) for m in MODALITIES}
        start: dict[str, ThresholdSet] = {}
        for m in MODALITIES:
            teacher = TEACHERS.get(m)
            spec = _threshold_spec(cfg, m)
            start[m] = (parse_thresholds(spec, teacher, classes) if spec else default_thresholds(teacher)).for_classes(classes)
            if sources[m] != "logits" and (spec or cfg.calibrate_split):
                why = "holds the imported VALOR release labels" if store.has(teacher.pseudo_path) else "has no logits"
                raise PseudoLabelError(
                    f"thresholds apply to labels computed from /{teacher.zeroshot_path}, but {cfg.data} {why} "
                    f"for the {m} teacher (run `{teacher.extract_command}` into a store without imported labels)"
                )

    run = PseudoLabelRun(sources=sources, thresholds=dict(start), computed={})

    # 2. calibration on val labels only; test GT is loaded after the thresholds are frozen
    if cfg.calibrate_split:
        run.calibrations = calibrate(cfg.data, gt_source, start, cfg.calibration, split=cfg.calibrate_split)
        calibrated = {m: c.thresholds for m, c in run.calibrations.items()}
        for m, cal in run.calibrations.items():
            moved = int(np.sum(cal.thresholds.array() != cal.start.array()))
            ev = cal.evidence
            echo(f"calibration {m} ({TEACHERS.get(m).name}) on {cal.val_videos} {cfg.calibrate_split} videos: "
                 f"{moved}/{len(classes)} thresholds moved; pooled segment F, mean over the {int(ev.sum())} classes "
                 f"in some weak label: {100 * cal.val_f_before[ev].mean() if ev.any() else float('nan'):.2f} -> "
                 f"{100 * cal.val_f_after[ev].mean() if ev.any() else float('nan'):.2f}")
        with Store(cfg.data) as store:
            weak = store.read("labels/weak")
            before, after = _labels_with(store, start), _labels_with(store, calibrated)
            for split in (s for s in REPORT_SPLITS if s in splits_present):
                gt = gt_source.load(split)
                run.gains[split] = (_quality_on(store, before, weak, gt), _quality_on(store, after, weak, gt))
        for split, (b, a) in run.gains.items():
            echo(f"calibration gain on {split} ({b.videos} videos), official segment F: "
                 f"audio {b.result.segment.audio:.2f} -> {a.result.segment.audio:.2f}, "
                 f"visual {b.result.segment.visual:.2f} -> {a.result.segment.visual:.2f}, "
                 f"type@AV {b.result.segment.type:.2f} -> {a.result.segment.type:.2f}; "
                 f"event-level type@AV {b.result.event.type:.2f} -> {a.result.event.type:.2f}")
        if cfg.write_thresholds:
            run.thresholds.update(calibrated)

    # 3. labels, EIoU, write
    with Store(cfg.data) as store:
        labels: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            teacher = TEACHERS.get(m)
            if sources[m] == "logits":
                run.computed[m] = teacher_labels(store, teacher, run.thresholds[m])
                labels[m] = run.computed[m].labels
            else:
                labels[m] = stored_labels(store, teacher)
    eiou = compute_eiou(labels["audio"], labels["visual"], cfg.eiou)
    eiou_attrs = {"definition": cfg.eiou, "formula": EIOU_DESCRIPTIONS[cfg.eiou],
                  "source": "pseudo/audio x pseudo/visual"}
    write_pseudo_labels(cfg.data, ids, list(run.computed.values()), eiou, eiou_attrs, classes)
    if cfg.write_thresholds:
        run.thresholds_file = _write_thresholds_json(cfg, run, classes)

    for m in MODALITIES:
        teacher = TEACHERS.get(m)
        lab = labels[m]
        line = (f"{m:<6} ({teacher.name}) {'computed' if m in run.computed else 'stored (not recomputed)'}: "
                f"{len(ids)} videos, {int(lab.sum())} positive (segment, class) entries "
                f"({100 * lab.mean() if lab.size else 0:.2f}%)")
        if m in run.computed:
            c = run.computed[m]
            line += (f"; thresholds {c.thresholds.origin}{' (calibrated)' if c.thresholds.calibrated else ''}; "
                     f"zeros for {c.without_logits} videos without logits, {c.without_audio} without audio, "
                     f"{c.without_weak} without weak label")
        echo(line)
    echo(f"eiou   ({cfg.eiou}) {eiou.shape} written to /pseudo/eiou; mean {float(eiou.mean()) if eiou.size else 0:.4f}")
    if run.thresholds_file:
        echo(f"calibrated thresholds written to {run.thresholds_file}")

    # 4. report
    if cfg.report:
        with Store(cfg.data) as store:
            weak = store.read("labels/weak")
            final = {m: stored_labels(store, TEACHERS.get(m)) for m in MODALITIES}
            for split in REPORT_SPLITS:
                if split not in splits_present:
                    echo(f"report: the store has no {split} videos, skipped")
                    continue
                q = _quality_on(store, final, weak, gt_source.load(split))
                run.quality[split] = q
                echo(format_quality(q))
                echo(format_class_table(q))
                run.charts.append(write_class_chart(q, cfg.resolved_report_dir / f"pseudolabel_class_f_{split}.png"))
        if run.charts:
            echo(f"charts: {', '.join(map(str, run.charts))}")
    return run


def _write_thresholds_json(cfg: PseudoLabelRunConfig, run: PseudoLabelRun, classes: tuple[str, ...]) -> Path:
    doc = {
        "rule": "valor",
        "calibrated": True,
        "split": cfg.calibrate_split,
        "objective": "per-class segment F pooled over the calibration videos",
        "classes": list(classes),
    }
    for m, cal in run.calibrations.items():
        name = TEACHERS.get(m).name
        doc[name] = [float(v) for v in cal.thresholds.values]
        doc[f"{name}_start"] = [float(v) for v in cal.start.values]
        doc[f"{name}_{cfg.calibrate_split}_pooled_f_before"] = [float(v) for v in cal.val_f_before]
        doc[f"{name}_{cfg.calibrate_split}_pooled_f_after"] = [float(v) for v in cal.val_f_after]
    path = cfg.thresholds_json
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path
