"""Plugin discovery and loading.

Built-in plugins are ordinary modules of ``@hookimpl`` functions found under ``BUILTIN_PACKAGES``,
loaded in the order each declares with ``PLUGIN_ORDER`` (lower first: the order `gaia-bench
plugins`, the backbone zoos and the plugins' commands are listed in); third-party ones come from
the ``gaia_bench`` entry-point group. Both go through :meth:`PluginHost.add_plugin`, which calls
``PluginManager.register`` and ``check_pending`` (so a typo'd hook name is rejected). A plugin
that fails to import, validate or register is recorded as broken with its error, and everything
else keeps working.

Environment:
  GAIA_BENCH_DISABLE_PLUGINS=a,b   never load these plugins (by entry-point or module name)
  GAIA_BENCH_NO_ENTRYPOINTS=1      load only the built-ins (tests, debugging)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import os
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from gaia_bench import hookspecs
from gaia_bench.api import (AdaptationSpec, BackboneCatalog, BackboneSpec, DatasetSpec, ExecutorSpec, InitSpec,
                            ReporterSpec, SuiteSpec, TaskSpec)
from gaia_bench.backbones import BackboneRegistry
from gaia_bench.errors import GaiaBenchError, PluginError, UsageError
from gaia_bench.registry import Registry

ENTRY_POINT_GROUP = "gaia_bench"

# Built-in plugins: every module of these packages outside a ``lib`` package (a library, which
# registers nothing: tests/test_architecture.py holds the tree to that).
BUILTIN_PACKAGES = ("gaia_bench.plugins", "gaia_bench.tasks")

# hook name -> (kind shown to users, accepted types, Registries attribute)
HOOK_KINDS: dict[str, tuple[str, tuple[type, ...], str]] = {
    "register_backbones": ("backbone", (BackboneSpec, BackboneCatalog), "backbones"),
    "register_inits": ("init", (InitSpec,), "inits"),
    "register_adaptations": ("adaptation", (AdaptationSpec,), "adaptations"),
    "register_tasks": ("task", (TaskSpec,), "tasks"),
    "register_datasets": ("dataset", (DatasetSpec,), "datasets"),
    "register_suites": ("suite", (SuiteSpec,), "suites"),
    "register_executors": ("executor", (ExecutorSpec,), "executors"),
    "register_reporters": ("reporter", (ReporterSpec,), "reporters"),
}


@dataclass
class PluginRecord:
    """One plugin as `gaia-bench plugins` shows it."""

    name: str
    distribution: str
    version: str
    builtin: bool
    error: str | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    commands: list[str] = field(default_factory=list)  # what its register_commands added

    @property
    def provides(self) -> list[tuple[str, str]]:
        """(kind, name) of everything it registered, commands included."""
        return self.registered + [("command", name) for name in self.commands]

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Registries:
    """Everything the plugins registered, by kind."""

    backbones: BackboneRegistry = field(default_factory=BackboneRegistry)
    inits: Registry[InitSpec] = field(default_factory=lambda: Registry("init", "gaia-bench inits"))
    adaptations: Registry[AdaptationSpec] = field(default_factory=lambda: Registry("adaptation", "gaia-bench adaptations"))
    tasks: Registry[TaskSpec] = field(default_factory=lambda: Registry("task", "gaia-bench tasks"))
    datasets: Registry[DatasetSpec] = field(default_factory=lambda: Registry("dataset", "gaia-bench datasets"))
    suites: Registry[SuiteSpec] = field(default_factory=lambda: Registry("suite", "gaia-bench datasets"))
    executors: Registry[ExecutorSpec] = field(default_factory=lambda: Registry("executor", "gaia-bench plugins"))
    reporters: Registry[ReporterSpec] = field(default_factory=lambda: Registry("reporter", "gaia-bench plugins"))

    def upstream_pool(self, name: str) -> DatasetSpec:
        """The upstream pool a name stands for: a suite's declared pool (``mini`` ->
        ``mini-upstream``) or a pool's own dataset name (what pretraining, the VQ-GAN and TSDS read)."""
        if name in self.suites.names():
            suite = self.suites.get(name)
            if not suite.upstream:
                raise UsageError(f"suite '{name}' names no upstream pool",
                                 "pass a pool with --upstream, e.g. --upstream mini")
            name = suite.upstream
        if name in self.datasets.names() and self.datasets.get(name).task == "upstream":
            return self.datasets.get(name)
        suites = ", ".join(n for n, s in self.suites.items() if s.upstream) or "none"
        pools = ", ".join(n for n, d in self.datasets.items() if d.task == "upstream") or "none"
        problem = (f"dataset '{name}' is a {self.datasets.get(name).task} dataset, not an upstream pool"
                   if name in self.datasets.names() else
                   f"'{name}' is neither a suite with an upstream pool nor an upstream pool")
        raise UsageError(problem, f"use a suite ({suites}) or a pool ({pools})")


def short_error(exc: BaseException) -> str:
    """A plugin's failure in one line: a GaiaBenchError's message, else the exception and where it was raised."""
    if isinstance(exc, GaiaBenchError):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


class PluginHost:
    """Owns the pluggy manager and the record of every plugin it tried to load."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}  # in load order (a re-added name keeps its place)

    # ------------------------------------------------------------------ loading
    def add_plugin(self, plugin: object, name: str, distribution: str, version: str, builtin: bool = False) -> PluginRecord:
        """Register one plugin object (module or instance); a failure marks it broken."""
        record = PluginRecord(name, distribution, version, builtin)
        self.records[name] = record
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the host
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            record.error = short_error(exc)
        return record

    def remove_plugin(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.records.pop(name, None)

    def load_builtins(self) -> None:
        from gaia_bench import __version__

        found: list[tuple[float, str, Any]] = []  # (declared order, module name, module or its import error)
        for package in BUILTIN_PACKAGES:
            for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
                name = info.name
                if info.ispkg or "lib" in name.split(".") or name in self.records or self._blocked(name):
                    continue
                try:
                    module = importlib.import_module(name)
                except Exception as exc:  # noqa: BLE001
                    found.append((math.inf, name, exc))
                else:
                    found.append((getattr(module, "PLUGIN_ORDER", math.inf), name, module))
        for _, name, module in sorted(found, key=lambda f: f[0]):
            if isinstance(module, Exception):
                self.records[name] = PluginRecord(name, "gaia-bench", __version__, True, short_error(module))
            else:
                self.add_plugin(module, name, "gaia-bench", __version__, builtin=True)

    def load_entrypoints(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.records or self._blocked(ep.name):
                continue
            dist, version = (ep.dist.metadata["Name"], ep.dist.version) if ep.dist is not None else ("?", "?")
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                self.records[ep.name] = PluginRecord(ep.name, dist, version, False, f"import failed: {short_error(exc)}")
                continue
            self.add_plugin(plugin, ep.name, dist, version)

    @staticmethod
    def _blocked(name: str) -> bool:
        return name in {n.strip() for n in os.environ.get("GAIA_BENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}

    # ------------------------------------------------------------------ registries
    def plugins(self) -> list[PluginRecord]:
        return list(self.records.values())

    def registries(self) -> Registries:
        """Call every plugin's register hooks, one plugin at a time, in load order.

        A plugin whose hook raises, registers a wrong type or a duplicate name is marked broken
        and none of its registrations are kept."""
        registries = Registries()
        for record in self.plugins():
            if not record.ok:
                continue
            plugin = self.pm.get_plugin(record.name)
            collected: list[tuple[str, str, Any]] = []  # (kind, Registries attribute, item)
            try:
                for hook_name, (kind, types, attr) in HOOK_KINDS.items():
                    impl = self.hook_impl(hook_name, plugin)
                    if impl is None:
                        continue
                    impl(register=self._collector(collected, hook_name, kind, types, attr, record.name))
                staged = Registries()
                for _, attr, item in collected:  # check all (within the plugin and against others) first
                    getattr(staged, attr).add(item, record.name)
                    getattr(registries, attr).add(item, record.name, dry_run=True)
                for _, attr, item in collected:
                    getattr(registries, attr).add(item, record.name)
            except Exception as exc:  # noqa: BLE001
                record.error = f"registration failed: {short_error(exc)}"
                record.registered = []
                continue
            record.registered = [(kind, f"{item.source} (catalog)" if isinstance(item, BackboneCatalog) else item.name)
                                 for kind, _, item in collected]
        return registries

    def hook_impl(self, hook_name: str, plugin: object) -> Callable[..., Any] | None:
        """The function with which ``plugin`` implements ``hook_name``, None when it does not."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin is plugin:
                return impl.function
        return None

    @staticmethod
    def _collector(collected: list, hook_name: str, kind: str, types: tuple[type, ...], attr: str, origin: str) -> Callable[[Any], None]:
        def register(item: Any) -> None:
            if not isinstance(item, types):
                expected = " or ".join(t.__name__ for t in types)
                raise PluginError(f"{origin}.{hook_name} registered {type(item).__name__}, expected {expected}")
            collected.append((kind, attr, item))

        return register


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _HOST
    if _HOST is None:
        host = PluginHost()
        host.load_builtins()
        if not os.environ.get("GAIA_BENCH_NO_ENTRYPOINTS"):
            host.load_entrypoints()
        _HOST = host
    return _HOST


def get_registries() -> Registries:
    return get_host().registries()
