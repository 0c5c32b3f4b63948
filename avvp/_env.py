"""Offline-safe and loopback-only environment defaults, applied by the console scripts.

Nothing here runs at `import avvp`: a library must not change the environment of the program that
imports it. The console scripts call `apply_defaults()` first thing in `main()`; the two places that need
a default to be safe apply their part themselves (`ray_defaults()` before the embedded Ray cluster starts,
`offline_defaults()` before laion_clap is imported, which refuses to import when it would stall).

- laion_clap reaches the Hugging Face hub at import; without network it retries for about 11 minutes.
  huggingface_hub reads `HF_HUB_OFFLINE` once, when it is first imported, so the default must be set
  before anything imports it. `AVVP_ONLINE=1` lets the libraries download pretrained weights.
- Ray's embedded cluster listens on loopback only and writes no auth token file unless told otherwise.
"""
from __future__ import annotations

import os

OFFLINE_DEFAULTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
RAY_DEFAULTS = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def online_requested() -> bool:
    return os.environ.get("AVVP_ONLINE", "0") == "1"


def offline_defaults() -> None:
    """Hub libraries offline unless AVVP_ONLINE=1 (values the user set are kept)."""
    if not online_requested():
        for key, value in OFFLINE_DEFAULTS.items():
            os.environ.setdefault(key, value)


def ray_defaults() -> None:
    """Embedded Ray on loopback only, without an auth token file (values the user set are kept)."""
    for key, value in RAY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def apply_defaults() -> None:
    """What every console script does before it imports a heavy library."""
    offline_defaults()
    ray_defaults()
