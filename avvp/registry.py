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

A registry whose entries live in modules that import the registry's own module at load time (the decoder
backends) may instead take `load=`, a function that imports them. Every lookup (`get`, `names`, `in`,
iteration) first imports the providers and runs `load` (once, under a lock: a lookup from another thread
waits for them), so whoever asks sees every entry, however the caller got to the registry; nobody imports
a module for its side effect. A failed import is raised as it is and retried on the next lookup.
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, providers: tuple[str, ...] = (), *, load: Callable[[], None] | None = None):
        self.kind = kind
        self.providers = tuple(providers)  # modules that register entries here, imported on first lookup
        self._load = load
        self._entries: dict[str, T] = {}
        self._done = not self.providers and load is None
        self._lock = threading.RLock()
        self._loading_thread: int | None = None

    def _provide(self) -> None:
        if self._done:
            return
        with self._lock:
            # a provider may look the registry up while it is imported: same thread, let it through
            if self._done or self._loading_thread == threading.get_ident():
                return
            self._loading_thread = threading.get_ident()
            try:
                for module in self.providers:
                    importlib.import_module(module)
                if self._load is not None:
                    self._load()
                self._done = True
            finally:
                self._loading_thread = None

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        self._provide()  # outside the try: a KeyError raised while loading is not "unknown"
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
