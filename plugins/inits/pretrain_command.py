"""`gaia-bench pretrain` (added through ``register_commands``): run an init's pretraining method on
an upstream pool and cache the checkpoint (``--checkpoint-every``: and intermediate ones, for
`gaia-bench watch`). The command knows no method: each init plugin brings its own (``InitSpec.pretrain``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gaia_bench import hookimpl
from gaia_bench.cli.common import DataRootOption, OfflineOption, handle_errors, parse_overrides
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError
from gaia_bench.plugins.inits.lib.pretrain_contract import PretrainMethod

PLUGIN_ORDER = 400


def label_space_table(rows: list, threshold: object) -> Table:
    n_source = sum(len(members) for _, members in rows)
    table = Table("unified class", "<- source:class", "similarity",
                  title=f"{len(rows)} unified classes from {n_source} source classes (threshold {threshold})")
    for name, members in rows:
        table.add_row(name, "\n".join(f"{source}:{cls}" for source, cls, _ in members),
                      "\n".join(f"{sim:.3f}" for _, _, sim in members))
    return table


@handle_errors
def pretrain(
    method: Annotated[str, typer.Option("--method", help="an init with a pretraining method (imagenet, gaia, clip, scratch, …); see `gaia-bench inits`")],
    model: Annotated[str, typer.Option("--model", "-m", help="the backbone to pretrain; see `gaia-bench models`")],
    upstream: Annotated[str, typer.Option("--upstream", help="a suite (its upstream pool) or a pool")] = "mini",
    steps: Annotated[int | None, typer.Option("--steps", help="optimizer steps (the method's default otherwise)")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="passes over the method's training items (instead of --steps)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="seed of the initialization, batches and augmentation")] = None,
    hp: Annotated[list[str], typer.Option("--hp", help="a method hyper-parameter, KEY=VALUE (JSON value); repeat for several")] = [],  # noqa: B006
    data_root: DataRootOption = None,
    force: Annotated[bool, typer.Option("--force", help="pretrain again even when the checkpoint is cached")] = False,
    show_label_space: Annotated[bool, typer.Option("--show-label-space", help="print the method's unified label space "
                                                   "(unified class <- source:class, similarity) and exit")] = False,
    checkpoint_every: Annotated[str | None, typer.Option("--checkpoint-every", help="also write an intermediate "
                                                         "checkpoint every N steps ('50') or epochs ('0.5ep'), and "
                                                         "after the last step, for `gaia-bench watch`")] = None,
    offline: OfflineOption = False,
) -> None:
    """Pretrain a backbone with an init's method on an upstream pool, and cache the checkpoint.

    The cache key hashes method, backbone, pool name and version, hyper-parameters and seed, so a
    second call reuses the checkpoint; `gaia-bench run --init METHOD` uses the same cache."""
    from gaia_bench.manager import get_registries
    from gaia_bench.paths import data_root as resolve_data_root
    from gaia_bench.plugins.inits.lib.pretraining import parse_every, snapshot_dir

    regs = get_registries()
    init = regs.inits.get(method)
    if not isinstance(init.pretrain, PretrainMethod):
        methods = [n for n, s in regs.inits.items() if isinstance(s.pretrain, PretrainMethod)]
        raise UsageError(f"init '{method}' has no pretraining method", f"pretrain one of: {', '.join(methods)}")
    if steps is not None and epochs is not None:
        raise UsageError("--steps and --epochs both given", "give one of them")
    if (steps is not None and steps < 1) or (epochs is not None and epochs <= 0):
        raise UsageError("--steps / --epochs must be positive", "e.g. --steps 300 or --epochs 10")
    overrides = parse_overrides(hp)
    for key, value in (("steps", steps), ("epochs", epochs), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    pool = regs.upstream_pool(upstream)
    root = Path(resolve_data_root(data_root))
    pretraining = init.pretrain
    if show_label_space:
        if pretraining.label_space is None:
            raise UsageError(f"method '{method}' has no label space", "--show-label-space is for methods that unify "
                             "the sources' vocabularies, e.g. --method gaia")
        rows = pretraining.label_space(pool, overrides, root=root)
        console.print(label_space_table(rows, {**pretraining.hyperparams, **overrides}.get("threshold", "-")))
        return
    backbone = regs.backbones.get(model)
    key = pretraining.key(backbone, pool, overrides)
    cached = pretraining.path(backbone, pool, overrides).exists() and not force
    notice(f"{method} / {backbone.name} / {pool.name}: checkpoint {key} "
           + ("is cached: reusing it (--force pretrains again)" if cached else "is not cached: pretraining"))
    if checkpoint_every is not None:
        parse_every(checkpoint_every)  # a bad value fails before any training
    path = pretraining.checkpoint(backbone, pool, overrides, force=force, root=root,
                                  **({"every": checkpoint_every} if checkpoint_every is not None else {}))
    console.print(_summary(path))
    if checkpoint_every is not None:
        _tell_snapshots(snapshot_dir(path), backbone.name, cached)
    if overrides or upstream != "mini":
        pairs = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items()))
        flags = (f" --upstream {upstream}" if upstream != "mini" else "") + (f" --init-hp '{pairs}'" if pairs else "")
        notice(f"runs use this checkpoint with: gaia-bench run --model {model} --init {method}{flags}")


def _tell_snapshots(directory: Path, model: str, cached: bool) -> None:
    found = sorted(directory.glob("*.pt")) if directory.is_dir() else []
    if not found:
        notice("the checkpoint was cached, and the run that wrote it kept no intermediate checkpoints: "
               "add --force to pretrain again and write them")
        return
    notice(f"{len(found)} intermediate checkpoint(s){' (from the run that wrote the cached one)' if cached else ''} "
           f"in {directory}")
    notice(f"evaluate each as it appears with: gaia-bench watch {directory} --model {model}")


def _summary(path: Path) -> Table:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    losses = state.get("losses") or []
    head = sum(losses[:10]) / len(losses[:10]) if losses else float("nan")
    tail = sum(losses[-10:]) / len(losses[-10:]) if losses else float("nan")
    table = Table("method", "backbone", "pool", "steps", "loss (first 10 -> last 10)", "checkpoint", title="pretrained")
    table.add_row(state["method"], state["backbone"], f"{state['pool']} v{state['pool_version']}", str(len(losses)),
                  f"{head:.3f} -> {tail:.3f}" if losses else "- (nothing to train)", str(path))
    return table


@hookimpl
def register_commands(cli):
    cli.command()(pretrain)
