"""The plugin contract of gaia-bench.

Every hook receives a ``register`` callable owned by the core (the pattern of simonw/llm's
``register_models``): a plugin adds things by calling it, never by returning containers. Built-in
plugins and third-party plugins found in the ``gaia_bench`` entry-point group implement the same
hooks and go through the same ``PluginManager.register`` call.

Hook implementations are namespaced by the pluggy project name ``gaia_bench`` (the marker
attribute is ``gaia_bench_impl``), so they cannot clash with other pluggy hosts such as pytest.
An implementation whose name matches no hook below is rejected when the plugin is loaded.

Example third-party plugin module::

    import gaia_bench

    @gaia_bench.hookimpl
    def register_backbones(register):
        register(gaia_bench.BackboneSpec(name="my_net", build=build_my_net, source="my-pkg"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import typer

    from gaia_bench.api import (AdaptationSpec, BackboneCatalog, BackboneSpec, DatasetSpec, ExecutorSpec, InitSpec,
                                ReporterSpec, SuiteSpec, TaskSpec)

PROJECT = "gaia_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backbones(register: Callable[[BackboneSpec | BackboneCatalog], None]) -> None:
    """Register backbones: a single :class:`BackboneSpec`, or a lazy :class:`BackboneCatalog`
    that names a whole model zoo (timm, torchvision) without importing it.

    :param register: call ``register(spec_or_catalog)`` once per backbone or catalog."""


@hookspec
def register_inits(register: Callable[[InitSpec], None]) -> None:
    """Register initializations (pretraining methods): ``random``, ``imagenet``, ``gaia``, ...

    :param register: call ``register(InitSpec(...))``."""


@hookspec
def register_adaptations(register: Callable[[AdaptationSpec], None]) -> None:
    """Register adaptation methods (``linear-probe``, ``finetune``, ...).

    :param register: call ``register(AdaptationSpec(...))``."""


@hookspec
def register_tasks(register: Callable[[TaskSpec], None]) -> None:
    """Register task types (``classification``, ``detection``, ...): their metrics and direction,
    ``evaluate`` (the official scoring, one signature for every task) and the head hooks that
    adaptations call instead of knowing the task. A dataset names its task type.

    :param register: call ``register(TaskSpec(...))``."""


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets: task type, splits, a reader of the official on-disk layout,
    ``prepare`` and ``verify``.

    :param register: call ``register(DatasetSpec(...))``."""


@hookspec
def register_suites(register: Callable[[SuiteSpec], None]) -> None:
    """Register named suites (lists of datasets run together, e.g. ``mini``, ``gvb``).

    :param register: call ``register(SuiteSpec(...))``."""


@hookspec
def register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    """Register executors that run planned jobs (``local``, ``submitit``, ...).

    :param register: call ``register(ExecutorSpec(...))``."""


@hookspec
def register_reporters(register: Callable[[ReporterSpec], None]) -> None:
    """Register output formats for stored results (markdown, csv, json, ...): ``render`` serves
    ``gaia-bench results --format NAME``, ``write_leaderboard`` serves ``gaia-bench leaderboard``.

    :param register: call ``register(ReporterSpec(...))``."""


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``gaia-bench`` command line (the pattern of simonw/llm's
    ``register_commands(cli)``): ``cli.command()(fn)`` for a command, ``cli.add_typer(group,
    name=...)`` for a group of subcommands. ``cli`` is a :class:`typer.Typer` of the plugin's own;
    the core adds what it holds to the top-level command.

    Called for every loaded plugin whenever the command line is built, so keep it cheap: import
    heavy modules (torch) inside the command functions, never here. A plugin whose hook raises, or
    adds a name the core or another plugin already uses, is shown as broken by ``gaia-bench
    plugins``, none of its commands is added, and every other command keeps working.

    :param cli: the :class:`typer.Typer` to add commands to."""
