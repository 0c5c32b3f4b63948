"""Feature backbones, one file each, registered in BACKBONES (see base.py for the contract).

Importing this package registers every backbone; heavy libraries (torchvision, open_clip, laion_clap)
are imported only when a backbone is built.
"""
from avvp.extract.backbones.base import BACKBONES, Backbone, BackboneConfig, OutputSpec, WeightsUnavailable
from avvp.extract.backbones import clap, clip, r2plus1d, resnet152, vggish  # noqa: F401,E402  (registration)

__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "OutputSpec", "WeightsUnavailable"]
