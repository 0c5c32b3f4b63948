"""Optional dependencies by pyproject extra, and the one-line error of a command whose extra is missing.

The base install runs avvp-import, avvp-train, avvp-eval, avvp-pseudolabel and avvp-convert-checkpoint.
Extraction (avvp-extract, the feature computing of avvp-parse) needs `avvp[extract]`, the Ray executor
`avvp[ray]`, avvp-download `avvp[download]`. The library checks the extra where the work starts (building backbones, starting Ray), so the
Python API reports it too; the console scripts print the message as one line (`avvp.cli.reports_missing_extras`).
The module names are the import names of the packages that pyproject.toml lists under each extra
(tests/test_extras.py keeps the two in step).
"""
from __future__ import annotations

import importlib.util

# extra -> the top-level modules its packages provide
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "extract": ("torchvision", "open_clip", "laion_clap", "transformers", "decord", "ffmpeg", "soundfile", "soxr",
                "PIL"),
    "ray": ("ray", "pyarrow"),
    "download": ("yt_dlp",),
}
EXTRA_MODULES["parse"] = EXTRA_MODULES["extract"]  # avvp-parse computes features: nothing else beyond the base


class MissingExtra(ImportError):
    """A pyproject extra that the asked-for work needs is not installed; the message names the pip command."""


def missing_modules(extra: str) -> list[str]:
    missing = []
    for module in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked package counts as missing
            found = False
        if not found:
            missing.append(module)
    return missing


def require_extra(extras: str | tuple[str, ...], what: str, hint: str = "") -> None:
    """Raise MissingExtra (one line: what needs it, the pip command, the missing modules) unless every
    package of `extras` is importable. Looks the modules up without importing them (cheap)."""
    extras = (extras,) if isinstance(extras, str) else tuple(extras)
    missing = {extra: missing_modules(extra) for extra in extras}
    lacking = [extra for extra in extras if missing[extra]]
    if lacking:
        names = ",".join(lacking)
        modules = ", ".join(m for extra in lacking for m in missing[extra])
        raise MissingExtra(f"{what} needs the '{names}' extra{'s' if len(lacking) > 1 else ''}: "
                           f"pip install 'avvp[{names}]'{hint} (missing: {modules})")
