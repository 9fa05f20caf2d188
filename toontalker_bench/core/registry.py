"""One registry shape for methods, detectors, metric backends and assets: ``name -> factory``.

Entries are registered with the :meth:`Registry.register` decorator at import time of the module that defines them.
A registry may also name an entry-point group, so third-party packages add entries without touching this code.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named factories of one kind. ``modules`` are imported lazily on first lookup so built-ins register themselves."""

    def __init__(self, kind: str, modules: tuple[str, ...] = (), entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._modules = modules
        self._group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name].factory is not factory:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            doc = summary or (factory.__doc__ or "").strip().splitlines()[0] if (summary or factory.__doc__) else ""
            self._entries[name] = Entry(name, factory, doc, dict(meta))
            return factory

        return deco

    def unregister(self, name: str) -> None:
        """Remove an entry registered at runtime (a test's toy entry)."""
        self._load()
        if name not in self._entries:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        del self._entries[name]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._modules:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as e:
                if e.name != mod:  # a dependency of the module is missing: that is a real error
                    raise
                log.warning("%s module %s is not part of this build", self.kind, mod)
        if self._group:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self._group):
                obj = ep.load()
                if ep.name not in self._entries:
                    self.register(ep.name)(obj)

    def get(self, name: str) -> Entry[T]:
        self._load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UserError(f"unknown {self.kind} {name!r}", hint=f"known: {known}")
        return self._entries[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name).factory(*args, **kwargs)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries
