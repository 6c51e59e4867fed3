"""`gaia-bench track mlflow|wandb`: stored results into an experiment tracker, one run per job,
and a leaderboard folder as an artifact (the logic: :mod:`~gaia_bench.plugins.reporters.lib.tracking`).
Both trackers are optional extras; both work offline (MLflow's local store, W&B's offline mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gaia_bench import hookimpl
from gaia_bench.cli.common import StoreOption, handle_errors, open_store, split_values
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError

PLUGIN_ORDER = 655

Multi = lambda flag, what: Annotated[list[str] | None, typer.Option(flag, help=f"only this {what} (repeat or comma-separate; * wildcards)")]  # noqa: E731
LeaderboardOption = Annotated[Path | None, typer.Option("--leaderboard", help="also log this leaderboard folder "
                                                        "(`gaia-bench leaderboard --out DIR`) as an artifact")]


def _records(store: str | None, **options: list[str] | None) -> list[dict]:
    from gaia_bench.plugins.reporters.lib.tracking import select

    filters = {name: parts for name, values in options.items() if (parts := split_values(values))}
    with open_store(store) as s:
        records = select(s.query(status="done"), filters)
    if not records:
        notice(f"no done results match in {s.path}")
    return records


def _check_leaderboard(leaderboard: Path | None) -> None:
    if leaderboard is not None and not leaderboard.is_dir():
        raise UsageError(f"--leaderboard {leaderboard} is not a folder", "give the --out folder of `gaia-bench leaderboard`")


def _report(tracker: str, where: str, logged: int, there: int) -> None:
    console.print(f"{tracker}: {logged} job(s) logged to {where}" + (f", {there} already there" if there else ""),
                  highlight=False, soft_wrap=True)


def register(cli: typer.Typer) -> None:
    track = typer.Typer(help="Log stored results to an experiment tracker (MLflow, Weights & Biases).",
                        no_args_is_help=True)
    cli.add_typer(track, name="track")

    @track.command("mlflow")
    @handle_errors
    def mlflow_(
        store: StoreOption = None,
        tracking_uri: Annotated[str, typer.Option("--tracking-uri", help="a local folder (MLflow's file store) "
                                                  "or a tracking server's URI")] = "mlruns",
        experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment name")] = "gaia-bench",
        leaderboard: LeaderboardOption = None,
        model: Multi("--model", "model") = None, init: Multi("--init", "init") = None,
        adaptation: Multi("--adapt", "adaptation") = None, dataset: Multi("--dataset", "dataset") = None,
        shots: Multi("--shots", "shots label") = None,
    ) -> None:
        """One MLflow run per done job (config as params; metrics, 95% interval bounds, timings as
        metrics; the record as an artifact); jobs already in the experiment are skipped."""
        from gaia_bench.cli.progress import RichProgress
        from gaia_bench.plugins.reporters.lib.tracking import log_mlflow, require

        _check_leaderboard(leaderboard)
        require("mlflow")
        records = _records(store, model=model, init=init, adaptation=adaptation, dataset=dataset, shots=shots)
        with RichProgress() as progress:
            logged, there = log_mlflow(records, tracking_uri, experiment, leaderboard,
                                       progress.start("logging to MLflow", len(records)))
            progress.finish()
        _report("MLflow", f"{tracking_uri} (experiment {experiment})", logged, there)

    @track.command("wandb")
    @handle_errors
    def wandb_(
        store: StoreOption = None,
        project: Annotated[str, typer.Option("--project", help="W&B project")] = "gaia-bench",
        mode: Annotated[str, typer.Option("--mode", help="offline (write under --dir, `wandb sync` later) or online")] = "offline",
        directory: Annotated[Path, typer.Option("--dir", help="where W&B writes its run folders")] = Path("."),
        leaderboard: LeaderboardOption = None,
        model: Multi("--model", "model") = None, init: Multi("--init", "init") = None,
        adaptation: Multi("--adapt", "adaptation") = None, dataset: Multi("--dataset", "dataset") = None,
        shots: Multi("--shots", "shots label") = None,
    ) -> None:
        """One W&B run per done job, its id the job id (config; metrics, 95% interval bounds and
        timings in the summary; the record as an artifact); runs already under --dir are skipped."""
        from gaia_bench.cli.progress import RichProgress
        from gaia_bench.plugins.reporters.lib.tracking import log_wandb, require

        if mode not in ("offline", "online"):
            raise UsageError(f"--mode {mode}: not a W&B mode", "use --mode offline or --mode online")
        _check_leaderboard(leaderboard)
        require("wandb")
        records = _records(store, model=model, init=init, adaptation=adaptation, dataset=dataset, shots=shots)
        with RichProgress() as progress:
            logged, there = log_wandb(records, project, directory, mode, leaderboard,
                                      progress.start("logging to W&B", len(records)))
            progress.finish()
        _report("W&B", f"{directory / 'wandb'} ({mode}, project {project})", logged, there)


@hookimpl
def register_commands(cli):
    register(cli)
