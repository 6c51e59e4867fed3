"""The backbone registry: single specs plus lazy catalogs (whole model zoos)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from gaia_bench.api import BackboneCatalog, BackboneSpec
from gaia_bench.errors import PluginError
from gaia_bench.registry import unknown_name


@dataclass(frozen=True)
class BackboneRow:
    name: str
    source: str
    pretrained: bool


class BackboneRegistry:
    """Looks names up in single specs first, then in catalogs in registration order.

    ``SOURCE:name`` (e.g. ``torchvision:resnet50``) picks a catalog when two zoos share a name.
    """

    kind = "backbone"
    list_command = "gaia-bench models"

    def __init__(self) -> None:
        self._specs: dict[str, BackboneSpec] = {}
        self._catalogs: dict[str, BackboneCatalog] = {}
        self._origin: dict[str, str] = {}

    def add(self, item: BackboneSpec | BackboneCatalog, origin: str, dry_run: bool = False) -> None:
        table: dict = self._catalogs if isinstance(item, BackboneCatalog) else self._specs
        key = item.source if isinstance(item, BackboneCatalog) else item.name
        if key in table:
            raise PluginError(
                f"backbone {'catalog ' if table is self._catalogs else ''}'{key}' is registered twice: "
                f"by {self._origin[key]} and by {origin}",
                "uninstall or disable one of the two plugins (GAIA_BENCH_DISABLE_PLUGINS=name)",
            )
        if not dry_run:
            table[key] = item
            self._origin[key] = origin

    @property
    def catalogs(self) -> list[BackboneCatalog]:
        return list(self._catalogs.values())

    def single_specs(self) -> list[BackboneSpec]:
        return [self._specs[n] for n in sorted(self._specs)]

    def origin(self, key: str) -> str:
        return self._origin[key]

    def get(self, name: str) -> BackboneSpec:
        if name in self._specs:
            return self._specs[name]
        source, sep, bare = name.partition(":")
        if sep and source in self._catalogs:
            spec = self._catalogs[source].get(bare)
            if spec is not None:
                return spec
            raise unknown_name(f"{source} backbone", bare, self._catalogs[source].names(), self.list_command)
        for catalog in self._catalogs.values():
            spec = catalog.get(name)
            if spec is not None:
                return spec
        raise unknown_name(self.kind, name, self.all_names(), self.list_command)

    def all_names(self) -> list[str]:
        names = set(self._specs)
        for catalog in self._catalogs.values():
            names.update(catalog.names())
        return sorted(names)

    def rows(self, pattern: str | None = None, pretrained: bool = False, source: str | None = None) -> list[BackboneRow]:
        """Every listed backbone, the first provider of a name first (later ones qualified)."""
        rows: list[BackboneRow] = []
        seen: set[str] = set()

        def keep(name: str) -> bool:
            return pattern is None or fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, f"*{pattern}*")

        for spec in self.single_specs():
            has_weights = bool(spec.published_weights)
            if keep(spec.name) and (source in (None, spec.source)) and (has_weights or not pretrained):
                rows.append(BackboneRow(spec.name, spec.source, has_weights))
            seen.add(spec.name)
        for catalog in self._catalogs.values():
            wanted = source in (None, catalog.source)
            with_weights = set(catalog.pretrained_names()) if wanted else set()
            for name in catalog.names():
                shown = name if name not in seen else f"{catalog.source}:{name}"
                seen.add(name)
                if wanted and keep(name) and (name in with_weights or not pretrained):
                    rows.append(BackboneRow(shown, catalog.source, name in with_weights))
        return rows
