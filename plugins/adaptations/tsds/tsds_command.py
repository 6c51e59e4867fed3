"""`gaia-bench tsds select` (added through ``register_commands``): which upstream classes GAIA's
task-specific data selection matches to a dataset's classes, and how many images it takes, without
training anything.

The command plans the one job `gaia-bench run --adapt tsds` would run (same hyper-parameters, same
subset, same features) and asks the registered ``tsds`` adaptation for its ``preview`` (a plugin
that replaces the built-in ``tsds`` adaptation keeps the command working if it has one).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gaia_bench import hookimpl
from gaia_bench.cli.common import (DataRootOption, OfflineOption, feature_cache_dir, handle_errors, parse_overrides,
                                   parse_shots)
from gaia_bench.cli.progress import RichProgress
from gaia_bench.console import console, notice
from gaia_bench.errors import PluginError, UsageError

PLUGIN_ORDER = 420

ADAPTATION = "tsds"

tsds_app = typer.Typer(help="GAIA task-specific data selection: show what `--adapt tsds` selects upstream.")


def _upstream_name(regs, name: str) -> str:
    """A suite name stands for its upstream pool (``mini`` -> ``mini-upstream``)."""
    return regs.upstream_pool(name).name


def selection_table(summary: dict) -> Table:
    """One row per matched (downstream class, upstream class) pair."""
    table = Table("downstream class", "images in subset", "upstream class", "cosine", "images selected",
                  title=f"TSDS {summary['mode']} on {summary['dataset']} ({summary['shots']}) from {summary['upstream']}")
    by_class: dict[str, list[dict]] = {}
    for match in summary["matches"]:
        by_class.setdefault(match["downstream"], []).append(match)
    for row in summary["per_downstream_class"]:
        matches = by_class.get(row["class"], [])
        if not matches:
            table.add_row(row["class"], str(row["n_downstream"]), "-", "-", "0")
        for i, m in enumerate(matches):
            table.add_row(row["class"] if i == 0 else "", str(row["n_downstream"]) if i == 0 else "",
                          m["upstream"], f"{m['similarity']:.3f}", str(m["n_selected"]))
    return table


@tsds_app.command("select")
@handle_errors
def select_command(
    model: Annotated[str, typer.Option("--model", "-m", help="backbone whose features represent the classes")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="downstream classification dataset")],
    init: Annotated[str | None, typer.Option("--init", help="initialization (default: the backbone's own)")] = None,
    shots: Annotated[str, typer.Option("--shots", "-s", help="the downstream subset: '10%', '2/class', …")] = "10%",
    seed: Annotated[int, typer.Option("--seed", help="seed of the subset")] = 0,
    upstream: Annotated[str | None, typer.Option("--upstream", help="upstream pool: a dataset, or a suite standing for its pool (mini)")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="top-k (per downstream class) or pairs (most similar class pairs)")] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="upstream images selected at most")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="upstream classes matched per downstream class (mode top-k)")] = None,
    hp: Annotated[list[str], typer.Option("--hp", help="any other tsds hyper-parameter, KEY=VALUE")] = [],  # noqa: B006
    show: Annotated[bool, typer.Option("--show", help="print the class matching as a table")] = False,
    image_size: Annotated[int | None, typer.Option("--image-size", help="input size in pixels (default: the backbone's)")] = None,
    data_root: DataRootOption = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per forward pass")] = 64,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write the feature cache")] = False,
    offline: OfflineOption = False,
) -> None:
    """Match the dataset's classes to the upstream pool's and count the images selected (what
    `gaia-bench run --adapt tsds` trains on besides the subset)."""
    from gaia_bench.api import InitContext
    from gaia_bench.devices import resolve_device
    from gaia_bench.features import FeatureCache
    from gaia_bench.init_context import upstream_pool
    from gaia_bench.api import Progress
    from gaia_bench.jobs import plan
    from gaia_bench.runner import SessionJobContext
    from gaia_bench.manager import get_host
    from gaia_bench.paths import data_root as resolve_data_root
    from gaia_bench.runner import Session

    host = get_host()
    regs = host.registries()
    spec = regs.adaptations.get(ADAPTATION)
    preview = getattr(spec, "preview", None)
    if preview is None:
        raise PluginError(f"adaptation '{ADAPTATION}' (from {regs.adaptations.origin(ADAPTATION)}) cannot show a selection",
                          "use the built-in tsds plugin, or one whose AdaptationSpec has a `preview` callable")
    overrides = parse_overrides(hp)
    for key, value in (("upstream", upstream and _upstream_name(regs, upstream)), ("mode", mode), ("budget", budget),
                       ("top_k", top_k)):
        if value is not None:
            overrides[key] = value
    shot_specs = parse_shots([shots])
    if len(shot_specs) != 1:
        raise UsageError(f"--shots {shots} names {len(shot_specs)} subsets", "give one, e.g. --shots 10%")
    init_context = InitContext(upstream=upstream_pool(regs, None, None), data_root=resolve_data_root(data_root),
                               offline=offline)
    jobs = plan(regs, models=[model], inits=[init] if init else [], adaptations=[ADAPTATION], datasets=[dataset],
                shots=shot_specs, seeds=[seed], image_size=image_size, notice=notice, overrides=overrides,
                init_context=init_context)
    job = jobs[0]
    plugin_versions = {r.name: f"{r.distribution}=={r.version}" for r in host.plugins() if r.ok}
    with RichProgress() as progress:
        session = Session(data_root=resolve_data_root(data_root), device=resolve_device(device), batch_size=batch_size,
                          workers=0, feature_cache=None if no_cache else FeatureCache(feature_cache_dir()),
                          plugin_versions=plugin_versions, progress=Progress(progress.start, progress.finish))
        summary = preview(SessionJobContext(job=job, session=session, progress=session.progress))
    if show:
        console.print(selection_table(summary))
    n_classes = sum(1 for row in summary["per_downstream_class"] if row["n_selected"])
    console.print(f"selected {summary['n_selected']} of {summary['n_pool']} upstream images "
                  f"({summary['n_upstream_classes']} classes in {summary['upstream']}) for "
                  f"{n_classes} of {len(summary['per_downstream_class'])} classes of {summary['dataset']} "
                  f"(mode {summary['mode']}, budget {summary['budget']}"
                  + (f", top-k {summary['top_k']}" if summary["mode"] == "top-k" else "") + ")",
                  highlight=False, soft_wrap=True)


@hookimpl
def register_commands(cli):
    cli.add_typer(tsds_app, name="tsds")
