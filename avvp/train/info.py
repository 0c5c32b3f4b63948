"""`avvp-info PATH`: what a store or a checkpoint holds and how it was made, without writing h5py or torch code.

`describe(path)` recognises the file (HDF5 → store, anything else → checkpoint) and returns a plain
dict; `format_description` turns it into the lines the command prints.

- a store: schema and avvp version, videos per split, classes, every array with its shape, dtype, rows
  holding data and its attributes (backbone, weights, random_weights, profile, precision, layout, the
  options that change the numbers, the release of imported arrays), failures per stage, a leftover journal;
- a checkpoint: format version, model and preset, input dims, selection (epoch, val metrics), parameter
  count, each input's provenance (`FeatureProvenance`), label-text arrays, origin (conversion, folded
  standardisation, migration) and whether it holds resume state (last.pt).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from avvp.data.store import plain_value  # attribute values as Python builtins


# attributes shown first for every array (the ones a consumer compares), in this order
KEY_ATTRS = ("backbone", "weights", "random_weights", "random_seed", "profile", "precision", "layout", "source")
MAX_ATTR_CHARS = 80


def describe(path: str | Path) -> dict[str, Any]:
    """A description of the store or checkpoint at `path` (FileNotFoundError / ValueError otherwise)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if h5py.is_hdf5(path):
        return describe_store(path)
    return describe_checkpoint(path)


def describe_store(path: str | Path) -> dict[str, Any]:
    from avvp.data.store import Store

    path = Path(path)
    with Store(path) as store:
        f = store._f  # noqa: SLF001 - the file-level attributes and raw shapes are what is described
        splits = Counter(str(s) for s in store.video_field("split")) if len(store) else Counter()
        arrays = []
        for name in store.arrays():
            ds = f[name]
            arrays.append({
                "path": name, "shape": list(ds.shape), "dtype": str(ds.dtype),
                "rows": int(store.mask(name).sum()) if store.per_video(name) else None,
                "attrs": {k: plain_value(v) for k, v in store.attrs(name).items()},
            })
        failures = store.failures()
        return {
            "kind": "store", "path": str(path), "schema": plain_value(f.attrs.get("schema")),
            "avvp_version": plain_value(f.attrs.get("avvp_version")), "videos": len(store),
            "splits": dict(sorted(splits.items())), "classes": len(store.classes), "arrays": arrays,
            "failures": {"total": len(failures), "by_stage": dict(Counter(x.stage for x in failures)),
                         "first": [f"{x.id}: {x.stage}: {x.message}" for x in failures[:5]]},
            "journal": Path(str(path) + ".journal").is_dir(),
        }


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    from avvp.train.checkpoint import Checkpoint

    ckpt = Checkpoint.load(path)
    dims = ckpt.input_dims
    val = (ckpt.selection or {}).get("val") or {}
    return {
        "kind": "checkpoint", "path": str(path), "version": ckpt.version, "avvp_version": ckpt.avvp_version,
        "model": ckpt.model_name, "preset": ckpt.preset, "model_options": dict(ckpt.model_options),
        "classes": len(ckpt.classes),
        "input_dims": {"audio": list(dims.audio), "visual": list(dims.visual),
                       "motion": list(dims.motion) if dims.motion else None, "layouts": dict(dims.layouts),
                       "text": dict(dims.text_dims)},
        "parameters": int(sum(v.numel() for k, v in ckpt.state_dict.items() if v.is_floating_point())),
        "selection": {"epoch": ckpt.epoch, "rule": ckpt.selection.get("rule"),
                      "val_segment_type": (val.get("segment") or {}).get("type")},
        "features": ckpt.features, "provenance": [p.to_dict() for p in ckpt.provenance],
        "provenance_lines": [p.describe() for p in ckpt.provenance],
        "label_text": sorted(ckpt.label_text), "origin": dict(ckpt.origin), "resume": ckpt.resume is not None,
        "store": (ckpt.config.get("data") or {}).get("store"), "gate": ckpt.gate,
    }


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= MAX_ATTR_CHARS else text[: MAX_ATTR_CHARS - 3] + "..."


def format_description(d: dict[str, Any]) -> str:
    """The lines `avvp-info` prints."""
    lines: list[str] = []
    if d["kind"] == "store":
        lines.append(f"{d['path']}: avvp store (schema {d['schema']}, written by avvp {d['avvp_version']})")
        splits = ", ".join(f"{k or '(none)'} {v}" for k, v in d["splits"].items())
        lines.append(f"  videos: {d['videos']} ({splits}); classes: {d['classes']}")
        lines.append("  arrays:")
        for a in d["arrays"]:
            rows = "" if a["rows"] is None else f", {a['rows']}/{d['videos']} rows"
            lines.append(f"    /{a['path']}  {tuple(a['shape'])} {a['dtype']}{rows}")
            attrs = a["attrs"]
            keys = [k for k in KEY_ATTRS if k in attrs] + sorted(k for k in attrs if k not in KEY_ATTRS)
            if keys:
                lines.append("      " + "; ".join(f"{k}={_short(attrs[k])}" for k in keys))
        fails = d["failures"]
        lines.append(f"  failures: {fails['total']}" + (" (" + ", ".join(f"{s} {n}" for s, n in fails["by_stage"].items())
                                                        + ")" if fails["total"] else ""))
        lines += [f"    {x}" for x in fails["first"]]
        if d["journal"]:
            lines.append("  journal: unmerged shards exist (the next writer merges them)")
        return "\n".join(lines)
    sel = d["selection"]
    score = "" if sel["val_segment_type"] is None else f", val segment Type@AV {sel['val_segment_type']:.2f}"
    lines.append(f"{d['path']}: avvp checkpoint (version {d['version']}, written by avvp {d['avvp_version'] or '?'})")
    lines.append(f"  model: {d['model']} (preset {d['preset']}), {d['parameters']:,} parameters, {d['classes']} classes, "
                 f"gate {d['gate']}")
    lines.append("  options: " + ", ".join(f"{k}={_short(v)}" for k, v in sorted(d["model_options"].items())))
    dims = d["input_dims"]
    lines.append(f"  inputs: audio {tuple(dims['audio'])}, visual {tuple(dims['visual'])}, motion "
                 f"{tuple(dims['motion']) if dims['motion'] else None}; layouts {dims['layouts'] or '(length rule)'}"
                 + (f"; label text {dims['text']}" if dims["text"] else ""))
    lines.append(f"  selected: epoch {sel['epoch']}" + (f" (rule {sel['rule']!r})" if sel["rule"] else "") + score)
    lines.append("  features (how each input was made):")
    lines += [f"    {line}" for line in d["provenance_lines"]] or ["    (none recorded)"]
    if d["label_text"]:
        lines.append(f"  label text carried: {', '.join(d['label_text'])}")
    for key, value in d["origin"].items():
        lines.append(f"  {key}: {_short(value) if key != 'converted_from' else value.get('source')}"
                     + (f" ({value.get('repository')}, sha256 {value.get('sha256', '')[:12]})" if key == "converted_from" else ""))
    lines.append(f"  trained on store: {d['store']}")
    if d["resume"]:
        lines.append("  resume state: yes (optimiser, RNG; avvp-train --resume continues from it)")
    return "\n".join(lines)
