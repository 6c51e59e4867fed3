"""`gaia-bench run`: plan the grid, skip what the store has, run the rest, show the results."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gaia_bench.cli import app
from gaia_bench.cli.common import DataRootOption, StoreOption, handle_errors, open_store
from gaia_bench.console import RichProgress, console, err_console, notice
from gaia_bench.errors import UsageError
from gaia_bench.shots import SHOTS_HELP
from gaia_bench.summary import summary_row


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise UsageError(f"unknown --device '{device}'", "use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device} but no CUDA device is available here", "use --device cpu (or auto)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UsageError(f"--device {device} but only {torch.cuda.device_count()} CUDA device(s) exist",
                         f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps but MPS is not available here", "use --device cpu (or auto)")
    return device


def results_table(records: list[dict]) -> Table:
    table = Table("model", "init", "adaptation", "dataset", "shots", "seed", "metric", "n_train", "wall s",
                  title="results")
    for record in records:
        row = summary_row(record)
        if record["status"] == "done":
            metric = f"{row['metric']} = {row['value']:.2f}"
        else:
            metric = f"[red]failed[/]: {record.get('error', '')[:80]}"
        wall = "-" if row["wall_s"] is None else f"{row['wall_s']:.1f}"
        table.add_row(row["model"], row["init"], row["adaptation"], row["dataset"], row["shots"], str(row["seed"]),
                      metric, str(row["n_train"] if row["n_train"] is not None else "-"), wall)
    return table


@app.command()
@handle_errors
def run(
    model: Annotated[list[str], typer.Option("--model", "-m", help="backbone(s): repeat or comma-separate; see `gaia-bench models`")],
    shots: Annotated[list[str], typer.Option("--shots", "-s", help=SHOTS_HELP)] = ["10%"],  # noqa: B006
    init: Annotated[list[str], typer.Option("--init", help="initialization(s) (default: the backbone's own); see `gaia-bench inits`")] = [],  # noqa: B006
    adapt: Annotated[list[str], typer.Option("--adapt", help="adaptation(s); see `gaia-bench adaptations`")] = ["linear-probe"],  # noqa: B006
    seed: Annotated[list[int], typer.Option("--seed", help="seed(s) of the subset and the training: repeat for several")] = [0],  # noqa: B006
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", help="dataset(s); see `gaia-bench datasets`")] = [],  # noqa: B006
    suite: Annotated[str | None, typer.Option("--suite", help="a named suite of datasets (default: mini)")] = None,
    store: StoreOption = None,
    data_root: DataRootOption = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per forward pass")] = 64,
    workers: Annotated[int, typer.Option("--workers", help="data-loading worker processes (0 = in process)")] = 0,
    image_size: Annotated[int | None, typer.Option("--image-size", help="input size in pixels (default: the backbone's)")] = None,
    executor: Annotated[str, typer.Option("--executor", help="how jobs run; see `gaia-bench plugins`")] = "local",
    force: Annotated[bool, typer.Option("--force", help="rerun jobs already finished in the store")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write the feature cache")] = False,
    hp: Annotated[list[str], typer.Option("--hp", help="override an adaptation hyper-parameter, KEY=VALUE (JSON value); "
                                          "repeat for several; see `gaia-bench adaptations`")] = [],  # noqa: B006
) -> None:
    """Run model × init × adaptation × dataset × shots × seed and store one result per job."""
    from gaia_bench.jobs import dataset_names_for, parse_overrides, plan
    from gaia_bench.paths import data_root as resolve_data_root
    from gaia_bench.paths import feature_cache_dir
    from gaia_bench.manager import get_host
    from gaia_bench.shots import parse_shots

    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size} is out of range", "use 1 or more")
    if workers < 0:
        raise UsageError(f"--workers {workers} is out of range", "use 0 or more")
    shot_specs = parse_shots(shots)
    resolved_device = resolve_device(device)
    host = get_host()
    regs = host.registries()
    executor_spec = regs.executors.get(executor)
    datasets, from_suite = dataset_names_for(regs, dataset, suite)
    jobs = plan(regs, models=model, inits=init, adaptations=adapt, datasets=datasets, shots=shot_specs,
                seeds=seed, image_size=image_size, skip_unsupported=from_suite, notice=notice,
                overrides=parse_overrides(hp))
    if not jobs:
        raise UsageError(f"nothing to run: no dataset of suite '{suite or 'mini'}' has a task that "
                         f"{', '.join(adapt)} supports", "choose --adapt or --dataset; see `gaia-bench adaptations`")

    from gaia_bench.features import FeatureCache
    from gaia_bench.runner import Session, run_job

    with open_store(store) as results:
        done = set() if force else results.finished_ids(j.job_id for j in jobs)
        todo = [j for j in jobs if j.job_id not in done]
        notice(f"{len(jobs)} job(s) planned; {len(done)} already finished in {results.path} "
               f"(skipped{'' if not done else '; --force reruns them'}); {len(todo)} to run on {resolved_device}")
        plugin_versions = {r.name: f"{r.distribution}=={r.version}" for r in host.plugins() if r.ok}
        failed = 0
        interrupted = False
        with RichProgress() as progress:
            session = Session(data_root=resolve_data_root(data_root), device=resolved_device, batch_size=batch_size,
                              workers=workers, feature_cache=None if no_cache else FeatureCache(feature_cache_dir()),
                              plugin_versions=plugin_versions, progress=progress)
            progress.start_jobs(len(todo))

            def run_one(job):
                c = job.config
                progress.job_started(f"{c.model} / {c.init} / {c.adaptation} / {c.dataset} / {c.shots} / seed {c.seed}")
                return run_job(job, session)

            try:
                for record in executor_spec.execute(todo, run_one):
                    results.put(record)
                    progress.job_finished()
                    if record["status"] != "done":
                        failed += 1
                        progress.log(f"[red]job {record['job_id']} failed:[/] {record.get('error')}")
            except KeyboardInterrupt:
                interrupted = True
        records = [r for j in jobs if (r := results.get(j.job_id)) is not None]
        if records:
            console.print(results_table(records))
        if interrupted:
            n_done = sum(r["status"] == "done" for r in records)
            err_console.print(f"[yellow]interrupted:[/] {n_done} finished job(s) are saved in {results.path}; "
                              "run the same command again to resume")
            raise typer.Exit(130)
        if failed:
            err_console.print(f"[red]{failed} job(s) failed[/] (recorded in the store; rerunning retries them)")
            raise typer.Exit(1)
