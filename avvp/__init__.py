"""avvp: audio-visual video parsing on LLP, from video files to evaluated parsers.

Importing the package applies offline-safe environment defaults (see `avvp._env`).
"""
from avvp import _env as _env  # noqa: F401  (side effect: environment defaults)

__version__ = "0.1.0"
