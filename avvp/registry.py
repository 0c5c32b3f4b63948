"""A registry per kind of thing (backbones, decoders, models, presets), in the style of timm/torchvision.

    BACKBONES = Registry("backbone")

    @BACKBONES.register("clip")
    class ClipBackbone: ...

    BACKBONES.get("clip")      # the class
    BACKBONES.names()          # sorted names

Lookups of unknown names raise a KeyError that lists what exists, so a typo on the command line gives
a useful message.

Entries registered in other modules than the registry's own are named by those modules, `providers`:

    PRESETS = Registry("preset", providers=("avvp.train.presets",))

Every lookup (`get`, `names`, `in`, iteration) first imports the providers (once), so whoever asks sees
every entry, however the caller got to the registry; nobody imports a module for its side effect.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, providers: tuple[str, ...] = ()):
        self.kind = kind
        self.providers = tuple(providers)  # modules that register entries here, imported on first lookup
        self._entries: dict[str, T] = {}
        self._provided = not self.providers

    def _provide(self) -> None:
        if self._provided:
            return
        self._provided = True  # set first: a provider may look the registry up while it is imported
        try:
            for module in self.providers:
                importlib.import_module(module)
        except BaseException:
            self._provided = False  # a failed import is reported again on the next lookup, never hidden
            raise

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        self._provide()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        self._provide()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._provide()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
