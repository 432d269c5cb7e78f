"""A small explicit registry: `register` / `get` with close-match suggestions / `names`."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from metarl_cli.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-case ids (and optional aliases) to entries.

    Args:
        kind: what the entries are, used in error messages ("environment", "baseline").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        """Adds `entry` under `name` and its `aliases`; a duplicate name is a programming error."""
        name, aliases = name.lower(), tuple(a.lower() for a in aliases)
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def unregister(self, name: str) -> T:
        """Removes the entry `name` and its aliases (a plugin's or a test's own entry); an
        unknown name raises `UnknownNameError`."""
        key = self.resolve(name)
        for alias in [a for a, target in self._aliases.items() if target == key]:
            del self._aliases[alias]
        return self._entries.pop(key)

    def resolve(self, name: str) -> str:
        """Returns the canonical id of `name` (an id or an alias), or raises with suggestions."""
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        candidates = [*self._entries, *self._aliases]
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(self.names())}"
        raise UnknownNameError(f"unknown {self.kind} {name!r}; {hint}")

    def get(self, name: str) -> T:
        """Returns the entry for an id or alias; unknown names raise `UnknownNameError`."""
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        """Canonical ids, sorted."""
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        """Alias -> canonical id."""
        return dict(self._aliases)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
