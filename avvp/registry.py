"""A registry per kind of thing (backbones, decoders, models, presets), in the style of timm/torchvision.

    BACKBONES = Registry("backbone")

    @BACKBONES.register("clip")
    class ClipBackbone: ...

    BACKBONES.get("clip")      # the class
    BACKBONES.names()          # sorted names

Lookups of unknown names raise a KeyError that lists what exists, so a typo on the command line gives
a useful message.

A registry whose entries live in modules that import the registry's own module (the decoder backends)
takes `load=`: a function that imports them, run once before the first lookup, so neither side has to
import the other at module level.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, *, load: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._load = load  # None once it has run
        self._load_lock = threading.RLock()  # a lookup from another thread waits for the load to finish

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            with self._load_lock:
                if self._load is not None:
                    self._load()
                    self._load = None
        return self._entries

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        entries = self._loaded()  # outside the try: a KeyError raised while loading is not "unknown"
        try:
            return entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
