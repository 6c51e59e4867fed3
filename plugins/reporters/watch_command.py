"""`gaia-bench watch CKPT_DIR`: evaluate every checkpoint of a pretraining run as it appears, and
plot transfer against pretraining step.

Each checkpoint is an ordinary cell: ``--init checkpoint --init-hp path=FILE``
(:mod:`~gaia_bench.plugins.inits.checkpoint_init`), whose weights id carries the file's sha256, so
a checkpoint the store already has is skipped, and each evaluation is `gaia-bench run` itself
(the store, the feature cache, Ctrl-C keeping finished results). The report
(:mod:`~gaia_bench.plugins.reporters.lib.checkpoint_curves`) is rewritten after each checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gaia_bench import hookimpl
from gaia_bench.cli.common import DataRootOption, StoreOption, handle_errors, open_store, parse_seeds, parse_shots
from gaia_bench.console import console, err_console, notice
from gaia_bench.errors import DataError, UsageError

PLUGIN_ORDER = 670

REPORT = "transfer"  # transfer.png, transfer.md, transfer.csv


class Watcher:
    """The grid of one watch: which cells each checkpoint needs, what the store has of them, and
    how a checkpoint is evaluated (`gaia-bench run` with the same options)."""

    def __init__(self, directory: Path, options: dict) -> None:
        from gaia_bench.cli.run import dataset_names_for
        from gaia_bench.manager import get_registries
        from gaia_bench.paths import data_root

        self.directory = directory
        self.options = options
        self.registries = get_registries()
        self.root = Path(data_root(options["data_root"]))
        names, self.from_suite = dataset_names_for(self.registries, options["dataset"], options["suite"])
        self.datasets = [n for n in names if not self.from_suite or self._present(n)]
        self.shots = parse_shots(options["shots"])
        self.seeds = parse_seeds(options["seed"])
        self.jobs: dict[str, list[str]] = {}  # sha256 -> job ids
        self.model: str | None = options["model"]
        self.told: set[tuple] = set()  # unreadable files already reported
        self.summary: list[tuple[str, str, str, str]] = []  # the terminal's rows of the last report
        self.metrics: list[str] = []

    def _present(self, name: str) -> bool:
        """As `run` does for a suite: a dataset no plugin can make and that is not on disk is left out."""
        from gaia_bench.jobs import data_dir

        spec = self.registries.datasets.get(name) if name in self.registries.datasets else None
        return spec is not None and (spec.prepare is not None or data_dir(self.root, spec).exists())

    def snapshots(self) -> list:
        from gaia_bench.plugins.inits.lib.checkpoint_files import pretraining_snapshots

        found = pretraining_snapshots(self.directory, self._unreadable)
        backbones = sorted({f.backbone for f in found})
        if len(backbones) > 1:
            raise UsageError(f"{self.directory} holds checkpoints of several backbones ({', '.join(backbones)})",
                             "give the folder of one pretraining run")
        if self.model is None and backbones:
            self.model = backbones[0]
        return found

    def _unreadable(self, path: Path, error: DataError) -> None:
        stat = path.stat()
        if (path, stat.st_size, stat.st_mtime_ns) not in self.told:  # once per state of the file
            self.told.add((path, stat.st_size, stat.st_mtime_ns))
            notice(f"skipping {path.name} while it does not read ({error.message}); read again when it changes")

    def job_ids(self, snapshot) -> list[str]:
        """The cells of one checkpoint (planned once: its weights id is its file's hash)."""
        from gaia_bench.api import InitContext
        from gaia_bench.cli.common import parse_overrides
        from gaia_bench.jobs import plan

        if snapshot.sha256 not in self.jobs:
            first = not self.jobs
            jobs = plan(self.registries, models=[self.model], inits=["checkpoint"], adaptations=self.options["adapt"],
                        datasets=self.datasets, shots=self.shots, seeds=self.seeds,
                        image_size=self.options["image_size"], skip_unsupported=self.from_suite,
                        notice=notice if first else (lambda message: None),
                        overrides=parse_overrides(self.options["hp"]), init_overrides={"path": str(snapshot.path)},
                        init_context=InitContext(data_root=self.root))
            self.jobs[snapshot.sha256] = [j.job_id for j in jobs]
        return self.jobs[snapshot.sha256]

    def evaluate(self, snapshot) -> int:
        """Run the checkpoint's cells that the store lacks; the exit code of `gaia-bench run`."""
        from gaia_bench.cli.run import run

        o = self.options
        try:
            path = json.dumps(str(snapshot.path))  # a JSON string: --init-hp keeps the commas inside it
            run(model=[self.model], init=["checkpoint"], init_hp=[f"path={path}"], adapt=o["adapt"],
                dataset=o["dataset"], suite=o["suite"], shots=o["shots"], seed=o["seed"], store=o["store"],
                data_root=o["data_root"], device=o["device"], batch_size=o["batch_size"],
                image_size=o["image_size"], hp=o["hp"])
        except typer.Exit as exc:
            return exc.exit_code
        return 0

    def report(self, snapshots: list, out: Path) -> str | None:
        """Write the plot and both tables of what the store has for these checkpoints; the markdown."""
        from gaia_bench.plugins.reporters.lib.checkpoint_curves import (Checkpoint, build_curves, csv_table,
                                                                        markdown_table, plot, summary_rows)
        from gaia_bench.plugins.reporters.lib.resampling import StoredDraws

        with open_store(self.options["store"]) as results:
            evaluated = [(Checkpoint(s.step, s.path.name), [r for i in self.job_ids(s) if (r := results.get(i))])
                         for s in snapshots]
            draws = StoredDraws({r["job_id"]: str(results.path) for _, records in evaluated for r in records})
            curves = build_curves(evaluated, draws)
        if not curves:
            return None
        first = snapshots[0]
        title = f"{self.model}: {first.method} pretraining on {first.pool}, transfer against step"
        out.mkdir(parents=True, exist_ok=True)
        markdown = markdown_table(curves, title)
        (out / f"{REPORT}.md").write_text(markdown)
        (out / f"{REPORT}.csv").write_text(csv_table(curves))
        self.summary, self.metrics = summary_rows(curves), sorted({c.metric for c in curves})
        image = plot(curves, title)
        if image is not None:
            (out / f"{REPORT}.png").write_bytes(image)
        return markdown


@handle_errors
def watch(
    ckpt_dir: Annotated[Path, typer.Argument(help="the folder of a pretraining run's checkpoints (`gaia-bench pretrain "
                                             "--checkpoint-every N` prints it)", show_default=False)],
    model: Annotated[str | None, typer.Option("--model", "-m", help="the backbone (default: the checkpoints' own)")] = None,
    adapt: Annotated[list[str], typer.Option("--adapt", help="adaptation(s), repeat or comma-separate; see "
                                             "`gaia-bench adaptations`")] = ["knn"],  # noqa: B006
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", help="dataset(s) (default: the suite's)")] = [],  # noqa: B006
    suite: Annotated[str | None, typer.Option("--suite", help="a named suite of datasets (default: mini)")] = None,
    shots: Annotated[list[str], typer.Option("--shots", "-s", help="shots, e.g. 10% (repeat or comma-separate)")] = ["10%"],  # noqa: B006
    seed: Annotated[list[str], typer.Option("--seed", help="seed(s): '0,1,2' or repeated")] = ["0"],  # noqa: B006
    once: Annotated[bool, typer.Option("--once", help="evaluate the checkpoints there now, then exit")] = False,
    interval: Annotated[float, typer.Option("--interval", help="seconds between looks for new checkpoints")] = 60.0,
    out: Annotated[Path | None, typer.Option("--out", help="where the plot and tables go (default: CKPT_DIR/watch)")] = None,
    store: StoreOption = None,
    data_root: DataRootOption = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per forward pass")] = 64,
    image_size: Annotated[int | None, typer.Option("--image-size", help="input size in pixels (default: the backbone's)")] = None,
    hp: Annotated[list[str], typer.Option("--hp", help="an adaptation hyper-parameter, KEY=VALUE")] = [],  # noqa: B006
) -> None:
    """Evaluate every checkpoint of a pretraining run as it appears, and plot transfer against step.

    Each checkpoint is its own cell (`--init checkpoint`, named by the file's sha256): those the
    store has are skipped. Without --once it looks every --interval seconds and stops after the
    run's last checkpoint; Ctrl-C keeps every finished result. Writes transfer.png, .md, .csv."""
    directory = ckpt_dir.expanduser().resolve()
    if not directory.is_dir():
        raise UsageError(f"{ckpt_dir} is not a folder", "give the folder that `gaia-bench pretrain --checkpoint-every N` "
                         "printed (<cache>/pretrained/METHOD/MODEL-KEY.steps)")
    if interval <= 0:
        raise UsageError(f"--interval {interval:g} is not positive", "e.g. --interval 60")
    out = (out or directory / "watch").expanduser()
    options = dict(model=model, adapt=adapt, dataset=dataset, suite=suite, shots=shots, seed=seed, store=store,
                   data_root=data_root, device=device, batch_size=batch_size, image_size=image_size, hp=hp)
    watcher = Watcher(directory, options)
    handled: set[str] = set()
    markdown: str | None = None
    snapshots: list = []
    waiting = False
    try:
        while True:
            snapshots = watcher.snapshots()
            if once and not snapshots:
                raise UsageError(f"no pretraining checkpoints in {directory}",
                                 "write some with `gaia-bench pretrain --checkpoint-every N`")
            new = [s for s in snapshots if s.sha256 not in handled]
            for snapshot in new:
                handled.add(snapshot.sha256)
                if _evaluate(watcher, snapshot) and not once and snapshot is not new[-1]:
                    markdown = watcher.report(snapshots, out) or markdown  # current while a long pass goes on
            if new:
                markdown = watcher.report(snapshots, out) or markdown
            last = next((s for s in snapshots if s.step == s.total_steps), None)
            if once or last is not None:
                if not once:
                    notice(f"the run's last checkpoint (step {last.step}) is evaluated")
                break
            if new or not waiting:
                notice(f"waiting for new checkpoints in {directory} (every {interval:g} s; Ctrl-C stops, "
                       "keeping every finished result)")
                waiting = True
            time.sleep(interval)
    except KeyboardInterrupt:
        if snapshots:
            watcher.report(snapshots, out)
        err_console.print(f"[yellow]interrupted:[/] finished results are in the store; the report is in {out}; "
                          "run the same command again to go on")
        raise typer.Exit(130) from None
    if markdown is None:
        notice("no finished result for these checkpoints yet: no report written")
        return
    console.print(_summary(watcher.summary, watcher.metrics))
    notice(f"transfer against step: {out / REPORT}.png, .md (a row per step), .csv")


def _summary(rows: list[tuple[str, str, str, str]], metrics: list[str]):
    from rich import box
    from rich.table import Table

    metric = f"{metrics[0]}, " if len(metrics) == 1 else ""
    table = Table("dataset / adaptation", "first", "last", "best", box=box.SIMPLE_HEAD,
                  title=f"transfer against step ({metric}mean ± half its 95% CI @ step)")
    for row in rows:
        table.add_row(*row)
    return table


def _evaluate(watcher: Watcher, snapshot) -> bool:
    """Evaluate the checkpoint's cells the store lacks; whether there were any."""
    with open_store(watcher.options["store"]) as results:
        ids = watcher.job_ids(snapshot)
        stored = results.statuses(ids)
    pending = len(ids) - len(stored)
    where = f"step {snapshot.step}/{snapshot.total_steps} ({snapshot.path.name})"
    if not pending:
        failed = sum(s == "failed" for s in stored.values())
        notice(f"{where}: its {len(ids)} cell(s) are in the store" + (f" ({failed} failed)" if failed else ""))
        return False
    notice(f"{where}: evaluating {pending} of its {len(ids)} cell(s)")
    code = watcher.evaluate(snapshot)
    if code == 130:
        raise KeyboardInterrupt
    if code == 1:
        notice(f"{where}: some cells failed (recorded; `gaia-bench status` shows why)")
    elif code:
        raise typer.Exit(code)
    return True


@hookimpl
def register_commands(cli):
    cli.command()(watch)
