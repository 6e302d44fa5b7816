"""A catalog of named plug-ins (training methods, regularisers): one registration line each.

A second plug-in under a taken name is a programming error (ValueError, naming the holder); an
unknown name is a user error (ConfigError listing the known ones).
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from core.errors import ConfigError


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Catalog(Generic[T]):
    def __init__(self, noun: str) -> None:
        self.noun = noun  # "method", "regulariser": how messages name an entry
        self._entries: dict[str, T] = {}

    def add(self, entry: T) -> T:
        held = self._entries.get(entry.name)
        if held is not None:
            raise ValueError(
                f"{self.noun} name {entry.name!r} is already registered by {type(held).__qualname__}"
            )
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.noun} {name!r}; choose one of {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[T]:
        return [self._entries[n] for n in self.names()]
