"""Feature backbones, one file each, registered in BACKBONES (see base.py for the contract).

Importing this package registers every backbone; heavy libraries (torchvision, open_clip, laion_clap)
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
from avvp.extract.backbones import clap, clip, r2plus1d, resnet152, vggish  # noqa: F401,E402  (registration)

__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "BackboneOptions", "OutputSpec", "WeightsUnavailable",
           "backbone_of_output", "backbone_options", "feature_specs", "parse_option_assignment"]
