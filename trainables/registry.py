"""A tiny name -> builder registry, shared by the model and dataset registries.

Modelled on torchvision's ``_api.py``: a decorator registers a keyword-only builder
under a name, registering a name twice is an error, and unknown names fail with the
list of known ones so a typo in a sweep config is caught before any trial starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries (builders or specs); ``kind`` names them in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register a builder under ``name`` (default: the function's name)."""

        def wrap(fn: T) -> T:
            return self.add(name or fn.__name__, fn)  # type: ignore[attr-defined]

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
