"""avvp: audio-visual video parsing on LLP, from video files to evaluated parsers.

Importing the package changes nothing in the environment; the console scripts apply the offline-safe
defaults of `avvp._env` in their `main()`.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("avvp")  # one place: pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
