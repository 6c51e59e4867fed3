"""The backbone registry: single specs plus lazy catalogs (whole model zoos)."""

from __future__ import annotations

from gaia_bench.api import BackboneCatalog, BackboneSpec
from gaia_bench.errors import PluginError, UsageError
from gaia_bench.registry import DISABLE_ONE, unknown_name


class BackboneRegistry:
    """Looks a name up in every single spec and every catalog: a name means one backbone whatever
    the plugins' load order or the files on disk. A name several providers share goes to the one
    that declares the highest ``precedence`` (timm's catalog declares itself the default zoo, so
    ``resnet50`` is ``timm:resnet50``); a tie is an error listing ``SOURCE:name`` for each.
    ``SOURCE:name`` always picks one explicitly."""

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
            raise PluginError(f"backbone {'catalog ' if table is self._catalogs else ''}'{key}' is registered twice: "
                              f"by {self._origin[key]} and by {origin}", DISABLE_ONE)
        if not dry_run:
            table[key] = item
            self._origin[key] = origin

    @property
    def catalogs(self) -> list[BackboneCatalog]:
        return list(self._catalogs.values())

    def single_specs(self) -> list[BackboneSpec]:
        return [self._specs[n] for n in sorted(self._specs)]

    def get(self, name: str) -> BackboneSpec:
        source, sep, bare = name.partition(":")
        if sep and source in self._catalogs:
            spec = self._catalogs[source].get(bare)
            if spec is not None:
                return spec
            raise unknown_name(f"{source} backbone", bare, self._catalogs[source].names(), self.list_command)
        if sep and (spec := self._specs.get(bare)) is not None and spec.source == source:
            return spec
        found = self._winners(name)
        if len(found) == 1:
            return found[0][1]
        if found:
            choices = [f"{where}:{name}" for where, _ in found]
            raise UsageError(f"backbone '{name}' is in {len(found)} zoos: {', '.join(choices)}",
                             f"name the one you mean, e.g. --model {choices[0]}")
        raise unknown_name(self.kind, name, self.all_names(), self.list_command)

    def _winners(self, name: str) -> list[tuple[str, BackboneSpec]]:
        """The providers of ``name`` with the highest declared precedence (a single spec's is 0)."""
        found = self.providers(name)
        rank = {where: c.precedence if (c := self._catalogs.get(where)) is not None else 0 for where, _ in found}
        return [(where, spec) for where, spec in found if rank[where] == max(rank.values())]

    def providers(self, name: str) -> list[tuple[str, BackboneSpec]]:
        """(source, spec) of every single spec and catalog that has ``name``, in registration order."""
        found = [(spec.source, spec)] if (spec := self._specs.get(name)) is not None else []
        return found + [(c.source, spec) for c in self._catalogs.values() if (spec := c.get(name)) is not None]

    def all_names(self) -> list[str]:
        return sorted({*self._specs, *(name for catalog in self._catalogs.values() for name in catalog.names())})
