"""Parsing models. Importing this package registers every model in `MODELS` (plain imports: a model
module that fails to import is an error, never silently skipped).

`build_model(name, options, dims)` builds a registered model from its options (a mapping of the model's
`Options` dataclass fields, or that dataclass) and the input dims; every model class takes
`(options, dims)` in its constructor.
"""
from __future__ import annotations

from typing import Any, Mapping

from avvp.models import cvcms, han, leap, link, ma, mmcse, mmpyr  # noqa: F401  (registration side effects)
from avvp.models.base import MODELS, Batch, InputDims, ModelOutput, ParsingModel


def required_inputs(name: str, options: Mapping[str, Any] | Any) -> tuple[str, ...]:
    """Model inputs beyond the label kind that model `name` built with `options` reads from its batches
    (`ParsingModel.required_inputs`; loaded by the trainer for every split)."""
    return tuple(MODELS.get(name).required_inputs(options))


def build_model(name: str, options: Mapping[str, Any] | Any, dims: InputDims) -> ParsingModel:
    return MODELS.get(name)(options, dims)


__all__ = ["MODELS", "Batch", "InputDims", "ModelOutput", "ParsingModel", "build_model", "required_inputs"]
