"""A named registry: one per extension axis (tasks, strategies, data readers, model aliases)."""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Generic, TypeVar

from transferlm.errors import RegistryError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class Registry(Generic[T]):
    def __init__(self, kind: str, plugins: str | None = None):
        """``plugins``: a module whose import registers the built-in entries, imported at the first lookup (so a
        lower layer can hold a registry that the layers above it fill)."""
        self.kind = kind
        self._items: dict[str, T] = {}
        self._plugins = plugins

    def _load_plugins(self) -> None:
        if self._plugins is not None:
            plugins, self._plugins = self._plugins, None
            importlib.import_module(plugins)

    def register(self, name: str, item: T) -> T:
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must match {_NAME.pattern}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}.{hint}"
            ) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load_plugins()
        return name in self._items
