"""Feature backbones, one file each, registered in BACKBONES (see base.py for the contract).

Importing this package imports every module in it, so a new backbone file registers itself with its
`@BACKBONES.register(...)` line and nothing else; heavy libraries (torchvision, open_clip, laion_clap)
are imported only when a backbone is built. What each backbone writes (store paths, per-video shapes,
layouts) and reads (streams) is declared on its class; `feature_specs` turns those declarations into
the `avvp.data.layouts.FeatureSpec` mapping that data-side code (the synthetic generator) takes.
"""
from avvp.extract.backbones.base import (
    BACKBONES,
    Backbone,
    BackboneConfig,
    BackboneOptions,
    OutputSpec,
    WeightsUnavailable,
    backbone_of_output,
    backbone_options,
    feature_specs,
    parse_option_assignment,
)


def _import_all_modules() -> None:
    """Import every module of this package (registration runs on import)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all_modules()

__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "BackboneOptions", "OutputSpec", "WeightsUnavailable",
           "backbone_of_output", "backbone_options", "feature_specs", "parse_option_assignment"]
