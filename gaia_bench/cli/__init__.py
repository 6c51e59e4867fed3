"""The ``gaia-bench`` command line: the core's commands, plus those plugins add through the
``register_commands`` hook. Listing commands never import torch."""

from __future__ import annotations

import os
from collections import Counter
from fnmatch import fnmatch
from typing import Annotated, Any, Collection

import click

# Before torch loads OpenMP: threads that wait for each other sleep instead of spinning. On a shared
# or loaded machine spinning made 2-thread forward passes ~10x slower (18-32 against 200-270
# images/s, measured on the project's 2-core machine); the numbers are the same either way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import typer
from rich.table import Table
from typer.core import TyperGroup

from gaia_bench.cli.common import follow_columns, handle_errors
from gaia_bench.console import console
from gaia_bench.errors import GaiaBenchError


def plugin_commands(host: Any, reserved: Collection[str] = ()) -> dict[str, click.Command]:
    """Call every loaded plugin's ``register_commands`` with a :class:`typer.Typer` of its own
    and return the (click) commands they add, by name, in load order.

    A plugin whose hook raises, or that adds a name in ``reserved`` (the core's commands) or
    one an earlier plugin added, is marked broken and none of its commands is kept."""
    from typer.main import get_group

    from gaia_bench.errors import PluginError
    from gaia_bench.manager import short_error
    from gaia_bench.registry import DISABLE_ONE

    found: dict[str, click.Command] = {}
    owner: dict[str, str] = {}
    for record in host.plugins():
        if not record.ok:
            continue
        impl = host.hook_impl("register_commands", host.pm.get_plugin(record.name))
        if impl is None:
            continue
        try:
            cli = typer.Typer()
            impl(cli=cli)
            added = dict(get_group(cli).commands) if cli.registered_commands or cli.registered_groups else {}
            for name in added:
                if name in reserved or name in owner:
                    raise PluginError(f"command '{name}' is registered twice: by "
                                      f"{owner.get(name, 'gaia-bench itself')} and by {record.name}",
                                      DISABLE_ONE)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            record.error = f"command registration failed: {short_error(exc)}"
            record.commands = []
            continue
        record.commands = sorted(added)
        found.update(added)
        owner.update((name, record.name) for name in added)
    return found


class CommandGroup(TyperGroup):
    """The top-level command: the core's commands first, then every loaded plugin's
    ``register_commands`` (collected when the command line is built, so a plugin registered
    later, or a broken one, is seen as it is now)."""

    _plugin_commands: dict[str, click.Command] | None = None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        follow_columns()
        return super().main(*args, **kwargs)

    def plugin_commands(self) -> dict[str, click.Command]:
        if self._plugin_commands is None:
            from gaia_bench.manager import get_host

            self._plugin_commands = plugin_commands(get_host(), reserved=set(self.commands))
        return self._plugin_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.plugin_commands()]

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        plugins = self.plugin_commands()  # first: a broken plugin is marked so before any command runs
        return super().get_command(ctx, cmd_name) or plugins.get(cmd_name)


app = typer.Typer(
    cls=CommandGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Benchmark vision backbones under percentage-shot protocols. Start with `gaia-bench run --model test_resnet --shots 10%`.",
)


def _registries():
    from gaia_bench.manager import get_registries

    return get_registries()


@app.command()
@handle_errors
def plugins(
    third_party: Annotated[bool, typer.Option("--third-party", help="only plugins from other distributions")] = False,
) -> None:
    """List plugins: what each registers, its distribution and version, and whether it loaded."""
    from gaia_bench.manager import get_host

    host = get_host()  # its register_commands hooks ran when this command was looked up (CommandGroup)
    host.registries()  # runs every register hook, so registration errors show up here
    table = Table("plugin", "distribution", "version", "status", "kinds", "registers")
    broken = []
    for record in host.plugins():
        if record.builtin and third_party:
            continue
        kinds = ", ".join(sorted({k for k, _ in record.provides})) or "-"
        names = ", ".join(n for _, n in record.provides) or "-"
        status = "[green]ok[/]" if record.ok else "[red]broken[/]"
        if not record.ok:
            broken.append(record)
        table.add_row(record.name, record.distribution, record.version, status, kinds, names)
    console.print(table)
    for record in broken:
        console.print(f"[red]broken plugin {record.name}[/] ({record.distribution} {record.version}): {record.error}",
                      highlight=False, soft_wrap=True)


@app.command("list")
@handle_errors
def list_all() -> None:
    """List every registered name by kind (backbone zoos are summarized; see `gaia-bench models`)."""
    regs = _registries()
    table = Table("kind", "names")
    catalogs = ", ".join(f"{c.source} (catalog)" for c in regs.backbones.catalogs)
    singles = ", ".join(s.name for s in regs.backbones.single_specs())
    table.add_row("backbones", ", ".join(x for x in (singles, catalogs) if x))
    for kind in ("inits", "adaptations", "tasks", "datasets", "suites", "executors", "reporters"):
        table.add_row(kind, ", ".join(getattr(regs, kind).names()))
    console.print(table)


def _resolves_to(backbones, name: str) -> str | None:
    """The source an unqualified ``name`` resolves to, or None (unknown or ambiguous)."""
    try:
        return backbones.get(name).source
    except GaiaBenchError:
        return None


@app.command()
@handle_errors
def models(
    pattern: Annotated[str | None, typer.Argument(help="fnmatch pattern or substring, e.g. 'resnet*'")] = None,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="only backbones with published ImageNet weights")] = False,
    source: Annotated[str | None, typer.Option("--source", help="only this zoo: timm, torchvision, …")] = None,
) -> None:
    """List backbones (all of timm and torchvision's classification models, plus plugins')."""
    backbones = _registries().backbones
    names = {c.source: list(c.names()) for c in backbones.catalogs}
    rows = [(s.source, s.name, bool(s.published_weights)) for s in backbones.single_specs()]
    for catalog in backbones.catalogs:
        if source in (None, catalog.source):
            with_weights = set(catalog.pretrained_names())
            rows += [(catalog.source, name, name in with_weights) for name in names[catalog.source]]
    rows = [(where, name, has_weights) for where, name, has_weights in rows
            if source in (None, where) and (has_weights or not pretrained)
            and (pattern is None or fnmatch(name, pattern) or fnmatch(name, f"*{pattern}*"))]
    # A name several providers have is shown as it must be written for each: ``SOURCE:name``,
    # except for the one it resolves to.
    counts = Counter([*(s.name for s in backbones.single_specs()), *(n for ns in names.values() for n in set(ns))])
    table = Table("backbone", "source", "imagenet weights", title=f"{len(rows)} backbones")
    for where, name, has_weights in rows:
        shown = name if counts[name] == 1 or _resolves_to(backbones, name) == where else f"{where}:{name}"
        table.add_row(shown, where, "published" if has_weights else "-")
    console.print(table)


@app.command()
@handle_errors
def inits() -> None:
    """List initializations (pretraining methods), the backbones each can initialize, where the
    weights come from, and the pretraining method's hyper-parameters (`gaia-bench pretrain`)."""
    regs = _registries()
    table = Table("init", "description", "backbones", "weights from", "pretraining (defaults)")
    for _, spec in regs.inits.items():
        backbones = spec.applies_to
        published = [b.name for b in regs.backbones.single_specs() if spec.name in b.published_weights]
        if published:
            backbones += f"\npublished for: {', '.join(published[:8])}{' …' if len(published) > 8 else ''}"
        pretraining = "-"
        if spec.pretrain is not None:  # a method that trains, or only --init-hp parameters (e.g. a file)
            command = f"gaia-bench pretrain --method {spec.name}" if hasattr(spec.pretrain, "checkpoint") else "--init-hp"
            pretraining = f"{command}\n" + ", ".join(f"{k}={v}" for k, v in spec.pretrain.hyperparams.items())
        table.add_row(spec.name, spec.description, backbones, spec.weights_source, pretraining)
    console.print(table)


@app.command()
@handle_errors
def adaptations() -> None:
    """List adaptation methods, the task types they support and their hyper-parameters."""
    table = Table("adaptation", "tasks", "hyper-parameters (defaults)", "description")
    for _, spec in _registries().adaptations.items():
        hps = ", ".join(f"{k}={v}" for k, v in spec.hyperparams.items())
        for task, extra in spec.task_hyperparams.items():
            hps += f"\n{task}: " + ", ".join(f"{k}={v}" for k, v in extra.items())
        table.add_row(spec.name, ", ".join(spec.task_types), hps, spec.description)
    console.print(table)


@app.command()
@handle_errors
def tasks() -> None:
    """List task types and their metrics (primary first; direction shown)."""
    table = Table("task", "primary metric", "metrics", "description")
    for _, spec in _registries().tasks.items():
        metrics = ", ".join(f"{m.name} ({'↑' if m.higher_is_better else '↓'})" for m in spec.metrics)
        if spec.extra_metrics:  # computed from stored predictions by `results rescore --metric NAME`
            metrics += f"; on request: {', '.join(spec.extra_metrics)}"
        table.add_row(spec.name, spec.primary_metric, metrics, spec.description)
    console.print(table)


from gaia_bench.cli import datasets as _datasets  # noqa: E402,F401  (registers the `datasets` group)
from gaia_bench.cli import results as _results  # noqa: E402,F401  (registers the `results` group)
from gaia_bench.cli import run as _run  # noqa: E402,F401  (registers `run`)
from gaia_bench.cli import splits as _splits  # noqa: E402,F401  (registers the `splits` group)
from gaia_bench.cli import status as _status  # noqa: E402,F401  (registers `status` and `executors`)


def main() -> None:
    app()
