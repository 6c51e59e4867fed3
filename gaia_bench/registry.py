"""Name -> thing registries with loud duplicates and "did you mean" errors."""

from __future__ import annotations

import difflib
from typing import Generic, Iterable, TypeVar

from gaia_bench.errors import PluginError, UnknownNameError

T = TypeVar("T")
DISABLE_ONE = "uninstall or disable one of the two plugins (GAIA_BENCH_DISABLE_PLUGINS=name)"  # the fix for a duplicate


def unknown_name(kind: str, name: str, candidates: Iterable[str], list_command: str) -> UnknownNameError:
    """The error for a name nobody registered: the closest registered names (case-insensitive), else
    every name when there are few, else the command that lists them."""
    candidates = list(candidates)
    pool = {c.lower(): c for c in candidates}
    if close := [pool[m] for m in difflib.get_close_matches(name.lower(), list(pool), n=3, cutoff=0.6)]:
        hint = "did you mean " + " or ".join(f"'{c}'" for c in close) + f"? See `{list_command}`"
    elif len(candidates) <= 12:
        hint = "valid: " + ", ".join(sorted(candidates))
    else:
        hint = f"see `{list_command}`"
    return UnknownNameError(f"unknown {kind} '{name}'", hint)


class Registry(Generic[T]):
    """Registered specs of one kind, each remembering the plugin that registered it."""

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def add(self, item: T, origin: str, dry_run: bool = False) -> None:
        """Add ``item`` under its ``name``; with ``dry_run`` only check that it could be added."""
        name = getattr(item, "name", None)
        if not name or not isinstance(name, str):
            raise PluginError(f"{origin} registered a {self.kind} without a name")
        if name in self._items:
            raise PluginError(f"{self.kind} '{name}' is registered twice: by {self._origin[name]} and by {origin}",
                              DISABLE_ONE)
        if not dry_run:
            self._items[name] = item
            self._origin[name] = origin

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._items, self.list_command) from None

    def origin(self, name: str) -> str:
        return self._origin[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]
